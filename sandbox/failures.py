"""The exception the host-side worker code raises for a failed call."""

from storeflow.sandbox.models import CallbackFailure, ErrorKind


class WorkerFailure(Exception):
    """A call failed; `replace` says whether the worker is no longer usable."""

    def __init__(self, kind: ErrorKind, message: str, *, replace: bool = True) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.replace = replace

    def to_failure(self) -> CallbackFailure:
        return CallbackFailure(kind=self.kind, message=self.message)
