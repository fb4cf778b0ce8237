"""What a callback language is: everything the sandbox does differently for
one language, behind one interface.

Every worker, whatever its language, speaks the same line protocol:

    host -> worker, one JSON object a line on stdin:
        {"op": "config", "token": T, "channel_fd": N, "frame_limit": B, ...spec.config}
        {"op": "load", "source": ..., "filename": ...}
        {"op": "call", "nonce": ..., "request": {...}}      (repeated until stdin closes)
        {"op": "batch", "nonce": ..., "common": {"id", "stage", "task"},
         "items": [[node row, result], ...], "group_s": G}   (languages with `batches`;
         with batch_encoding "marshal", "items_marshal": N in place of "items",
         and the items, marshalled, as the N bytes after the line)
    worker -> host, one answer a line:
        b"\\x1e" + T + b" " + NONCE + b" " + JSON + b"\\n"
    answering "ready" to the config ({"ok": true, "layers": {...}}), "load" to
    the load ({"ok": true} or {"ok": false, "kind": ..., "error": ...}), and
    each call's nonce ({"ok": true, "result", "truthy", "metadata"} or a failure);
    a batch is answered in order, in groups: one frame per group named NONCE.FIRST
    (the index of its first answer) holding {"answers": [...]}, a success as
    [result, truthy, metadata or null when unchanged], a failure as its object;
    a group is sent when the batch ends, before a call once its oldest answer is
    G seconds old, and before it would pass the frame cap.  A node row is
    sandbox/models.py:node_row's list; an item's result is an object, null, a
    string holding the result's JSON, or a delivered file's [source, destination,
    ...] (status SUCCESS, no error, destination the first), which the worker reads
    only when the callback asks for the result (a batch's requests also share one task object).  The
    host gives each call its own deadline plus G; after a timeout it runs the
    unanswered calls again with G 0 (one answer per frame), which names the call
    that hangs.

Answers go to the inherited fd `channel_fd` when the launch spec asks for a
separate channel, otherwise to stdout, shared with the callback's output
(see sandbox/channel.py). Failure kinds are sandbox.models.ErrorKind values.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Generic, TypeVar

from storeflow.sandbox import isolation
from storeflow.sandbox.isolation import Layer
from storeflow.sandbox.process import LaunchSpec
from storeflow.sandbox.settings import LanguageSettings, SandboxSettings

SettingsT = TypeVar("SettingsT", bound=LanguageSettings)


class CallbackLanguage(ABC, Generic[SettingsT]):
    """One language's strategy. Subclasses set the attributes and `worker_spec`.

    The `settings` every method receives already carry this language's limit
    overrides (SandboxSettings.for_language); `section` gives its own options.
    """

    #: `--lang`, CallbackDefinition.language, and the policy's section key.
    name: str
    #: As messages name it ("refusing to run Python callbacks").
    title: str
    #: File suffixes of its callbacks in its hook directory, with the dot.
    suffixes: tuple[str, ...]
    #: Its section of the policy (SandboxSettings.languages[name]).
    settings_model: type[SettingsT]
    #: Layers the host must offer before one of its workers may start.
    required_layers: frozenset[Layer] = frozenset()
    #: Layers its worker applies to itself and reports in its "ready" answer.
    worker_layers: frozenset[Layer] = frozenset()
    #: Its worker understands {"op": "batch"}; otherwise the host sends a batch's
    #: requests one call at a time.
    batches: bool = False
    #: How its worker reads a batch's items (a key of sandbox/worker.py's
    #: BATCH_ENCODERS): "json" inside the batch line, or "marshal" (Python's own
    #: format, loaded three times as fast) as the bytes that follow it.
    batch_encoding: str = "json"

    def section(self, settings: SandboxSettings) -> SettingsT:
        section = settings.language_settings(self.name)
        if not isinstance(section, self.settings_model):
            raise TypeError(f"the {self.name} settings are not {self.settings_model.__name__}")
        return section

    def require_isolation(self, settings: SandboxSettings) -> None:
        """Refuse (IsolationUnavailable) before any file is touched when a layer is missing."""
        isolation.require(settings, self.title, self.required_layers)

    @abstractmethod
    def worker_spec(self, settings: SandboxSettings) -> LaunchSpec:
        """How to start a warm worker: loaded once, it answers calls until stdin closes."""

    def one_shot_spec(self, settings: SandboxSettings) -> LaunchSpec:
        """How to start a worker for a single call (`storeflow callback run`).

        The protocol is the same, so by default it is the warm worker's command.
        """
        return self.worker_spec(settings)

    def check_ready(self, settings: SandboxSettings, ready: Mapping[str, object]) -> None:
        """Refuse a worker whose "ready" answer lacks a layer it should have applied."""
        reported = ready.get("layers")
        isolation.refuse_unapplied(
            settings,
            self.title,
            self.worker_layers,
            reported if isinstance(reported, Mapping) else {},
        )

    def __repr__(self) -> str:
        return f"<callback language {self.name}>"
