"""Open a local HTML page in headless Chromium and drive it over the DevTools protocol (CDP).

A tiny CDP client (``websocket-client``) for checking report pages in a real browser: console errors and
uncaught exceptions, JavaScript evaluation, real mouse clicks and screenshots. Needs ``chromium`` (Debian:
``apt-get install chromium``) and ``pip install websocket-client``; playwright is not used (it downloads
its own browser).

    python scripts/headless_chromium.py demo_out/report/report.html --screenshot docs/img/gallery.png \
        --scroll-to '#gallery'
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> Page:
        import websocket

        exe = find_chromium()
        if exe is None:
            raise RuntimeError("chromium not found (Debian: apt-get install chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="kdbench-chromium-", ignore_cleanup_errors=True)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
             f"--window-size={self.width},{self.height}", "--autoplay-policy=no-user-gesture-required",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        targets = []
        while not targets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if time.monotonic() > deadline:
                raise RuntimeError("no page target in chromium")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                              suppress_origin=True)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for _ in range(20):  # child processes may still be writing the profile for a moment
            self._profile.cleanup()
            if not Path(self._profile.name).exists():
                break
            time.sleep(0.1)

    # -- protocol ------------------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return its result; events received meanwhile go to :attr:`events`."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        self.ws.settimeout(timeout or self.timeout)
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if "method" in msg:
                    self.events.append(msg)
                    if msg["method"] == method:
                        return msg
        finally:
            self.ws.settimeout(self.timeout)

    def goto(self, path_or_url: str | Path) -> None:
        url = str(path_or_url)
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str, await_promise: bool = False) -> Any:
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS exception: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the first element matching ``selector``."""
        box = self.eval(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                        "e.scrollIntoView({block:'center'});var r=e.getBoundingClientRect();"
                        "return [r.left+r.width/2, r.top+r.height/2];})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", help="HTML file (or URL)")
    ap.add_argument("--screenshot", metavar="PNG", help="write a screenshot of the viewport")
    ap.add_argument("--scroll-to", metavar="SELECTOR", help="scroll this element to the top first")
    ap.add_argument("--click", metavar="SELECTOR", action="append", default=[], help="click (repeatable)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    with Page(args.width, args.height) as page:
        page.goto(args.page)
        for sel in args.click:
            page.click(sel)
        if args.scroll_to:
            page.eval(f"document.querySelector({json.dumps(args.scroll_to)}).scrollIntoView()")
        page.eval("new Promise(function(r){setTimeout(r, 800);})", await_promise=True)
        if args.screenshot:
            print(page.screenshot(args.screenshot))
        errors = page.errors()
        for e in errors:
            print("error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
