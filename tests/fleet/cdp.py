"""Headless Chromium driven over the DevTools protocol on a pipe (no TCP port), for HTML tests.

    with Browser(workdir) as browser:
        page = browser.open("file:///tmp/x/fleet.html")
        page.evaluate("document.title")
        png = page.screenshot(full_page=True)
        errors = page.errors()            # console errors, uncaught exceptions, failed loads

Chromium (Debian's package) runs with --remote-debugging-pipe: it reads commands on fd 3 and
writes replies and events on fd 4, NUL-terminated JSON (what Puppeteer's pipe transport does;
https://chromedevtools.github.io/devtools-protocol/). It runs inside a new, empty network
namespace (`unshare --net`: only a loopback that is down), with a fresh profile and HOME in a
temporary directory, so it cannot send a packet anywhere, and only file:// URLs are opened.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-breakpad",
    "--disable-crash-reporter", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--remote-debugging-pipe",
]
_READ_FD, _WRITE_FD = 3, 4  # the child's ends of the pipes, as chromium expects them


def chromium_binary() -> Optional[str]:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, workdir: Path, timeout: float = 60.0) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen] = None
        self._next_id = 0
        self._buffer = b""
        self.events: List[Dict[str, Any]] = []
        self.stderr_path = workdir / "chromium.stderr"

    def __enter__(self) -> "Browser":
        binary = chromium_binary()
        if binary is None:
            raise CdpError("chromium is not installed (Debian package chromium)")
        profile = self.workdir / "profile"
        home = self.workdir / "home"
        profile.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Park the child's ends above 4 so the dup2s in the child cannot clobber each other.
        high_r, high_w = os.dup(to_child_r), os.dup(from_child_w)
        while high_r <= _WRITE_FD or high_w <= _WRITE_FD:
            high_r, high_w = os.dup(high_r), os.dup(high_w)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire() -> None:  # runs in the child before exec
            os.dup2(high_r, _READ_FD)
            os.dup2(high_w, _WRITE_FD)

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"), "LANG": "C.UTF-8"}
        argv = ["unshare", "--net", "--", binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "about:blank"]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                         preexec_fn=wire, start_new_session=True,
                                         # fds 3 and 4 are made by wire(); Python's own fds are
                                         # non-inheritable (PEP 446), so nothing else leaks.
                                         close_fds=False)
        os.close(high_r)
        os.close(high_w)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc = None

    # ------------------------------------------------------------------ protocol

    def send(self, method: str, params: Optional[Dict[str, Any]] = None, session: Optional[str] = None,
             timeout: Optional[float] = None) -> Dict[str, Any]:
        self._next_id += 1
        message: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise CdpError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def wait_event(self, method: str, session: Optional[str] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event
            seen = len(self.events)
            self.events.extend(self._read(deadline))

    def _read(self, deadline: float) -> List[Dict[str, Any]]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"no answer from chromium; stderr:\n{self.stderr_tail()}")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise CdpError(f"chromium closed the pipe; stderr:\n{self.stderr_tail()}")
                self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ pages

    def open(self, url: str, width: int = 1400, height: int = 1000) -> "Page":
        if not url.startswith("file://"):
            raise ValueError("only file:// URLs are opened in tests")
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        page.mark = len(self.events)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session=session)
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.mark = 0

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   session=self.session)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> List[str]:
        """Console errors and warnings, uncaught exceptions, and browser log errors (failed loads,
        blocked resources) of this page since it was opened."""
        out = []
        for event in self.browser.events[self.mark:]:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{params['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                  for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                entry = params["entry"]
                out.append(f"log {entry.get('source')}/{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")
        return out

    def requested_urls(self) -> List[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events[self.mark:]
                if e.get("sessionId") == self.session and e.get("method") == "Network.requestWillBeSent"]

    def emulate_media(self, media: str) -> None:
        self.browser.send("Emulation.setEmulatedMedia", {"media": media}, session=self.session)

    def screenshot(self, full_page: bool = True) -> bytes:
        params: Dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                                "scale": 1})
        data = self.browser.send("Page.captureScreenshot", params, session=self.session)["data"]
        return base64.b64decode(data)

    def pdf(self) -> bytes:
        data = self.browser.send("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True},
                                 session=self.session, timeout=120)["data"]
        return base64.b64decode(data)
