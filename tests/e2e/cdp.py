"""A headless Debian chromium driven over the DevTools protocol (websockets), enough for
page-content assertions and screenshots: open a page, read its text, evaluate, save a PNG.

Chromium runs with --headless --no-sandbox --disable-gpu --disable-background-networking
on 127.0.0.1, in its own process group, and is stopped by PID."""

import base64
import itertools
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect
from websockets.sync.connection import Connection

from tests.e2e.server import free_port, started


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed (scripts/debian-packages.txt lists it)")
    return found


class Page:
    """One browser tab."""

    def __init__(self, socket: Connection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for_text(self, *needles: str, seconds: float = 90) -> str:
        """The page's text once it holds every needle (the UI renders asynchronously)."""
        deadline = time.monotonic() + seconds
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(needle in text for needle in needles):
                return text
            time.sleep(0.5)
        raise AssertionError(f"page never showed {needles}; it shows:\n{text[:3000]}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def browser(work: Path) -> Iterator[Page]:
    port = free_port()
    cmd = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--remote-debugging-address=127.0.0.1",
        f"--remote-debugging-port={port}",
        f"--user-data-dir={work / 'chromium-profile'}",
        "--window-size=1400,1000",
        "about:blank",
    ]
    with started(cmd, {"HOME": str(work)}, work / "chromium.log", work):
        deadline = time.monotonic() + 60
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    targets = [t for t in json.loads(r.read()) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        if not targets:
            raise RuntimeError(
                f"chromium did not open a page:\n{(work / 'chromium.log').read_text()}"
            )
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=2**26) as socket:
            page = Page(socket)
            page.call("Page.enable")
            yield page
