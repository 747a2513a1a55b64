"""A headless Chromium driven over the DevTools protocol through a pipe (no websocket, no driver download).

`chromium --remote-debugging-pipe` reads protocol commands (JSON, NUL-terminated) on its fd 3 and writes
answers and events on its fd 4. `Browser.render(url, width)` emulates a viewport of that width (a phone
below 600 px: mobile layout, as a real phone lays out a page), loads the page, runs a JavaScript check in it
and takes a screenshot. The browser is the system's (Debian's `chromium`); tests skip without it unless
CI=true.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
PHONE_BELOW_PX = 600


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@dataclass
class Rendering:
    check: Any  # what the page's check script returned
    png: bytes  # the viewport's screenshot


class Browser:
    def __init__(self, executable: str) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="cleanroom-chromium-")
        to_child, self._send_fd = os.pipe()
        self._read_fd, from_child = os.pipe()

        def wire_fds() -> None:  # the child's fd 3 reads commands, fd 4 writes answers
            read_end = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,
        )
        os.close(to_child)
        os.close(from_child)
        self._reader = os.fdopen(self._read_fd, "rb")
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, EOFError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.close()
        os.close(self._send_fd)
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _message(self) -> dict[str, Any]:
        data = bytearray()
        while (byte := self._reader.read(1)) != b"\0":
            if not byte:
                raise EOFError("chromium closed the DevTools pipe")
            data += byte
        return dict(json.loads(data))

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._message()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(index)
            self._events.append(self._message())

    def render(self, url: str, width: int, height: int, check_js: str) -> Rendering:
        """Load `url` in a fresh tab `width` CSS pixels wide, return `check_js`'s value and a screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self.call("Page.enable", session=session)
            metrics = {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < PHONE_BELOW_PX,
            }
            self.call("Emulation.setDeviceMetricsOverride", metrics, session)
            self.call("Page.navigate", {"url": url}, session)
            self.wait_event("Page.loadEventFired", session)
            evaluated = self.call(
                "Runtime.evaluate",
                {"expression": check_js, "returnByValue": True, "awaitPromise": True},
                session,
            )
            if "exceptionDetails" in evaluated:
                raise RuntimeError(f"check script failed: {evaluated['exceptionDetails']}")
            shot = self.call("Page.captureScreenshot", {"format": "png"}, session)
            return Rendering(evaluated["result"].get("value"), base64.b64decode(shot["data"]))
        finally:
            self.call("Target.closeTarget", {"targetId": target})


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
