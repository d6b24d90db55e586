"""Open a report in headless Chromium and see what a reader's browser sees.

Used by the browser tests and to refresh ``docs/example-report.png``::

    python -m reports.browser runs/demo/report.html docs/example-report.png 2400

It talks to Chromium over the DevTools protocol (``websocket-client``, no Selenium), so it
sees every network request, console message, JavaScript exception and alert dialog.
Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install websocket-client``.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0"]

# What the page looks like once drawn: SVG charts with a real size and marks inside them.
_PROBE = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')];
  const drawn = charts.filter(s => { const r = s.getBoundingClientRect();
    return r.width > 100 && r.height > 50 && s.querySelectorAll('circle,rect,path,polygon,polyline').length > 0; });
  return {charts: charts.length, drawn: drawn.length, text: document.body.innerText,
          scripts: document.querySelectorAll('script').length, title: document.title,
          width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight};
})()"""


@dataclass
class PageCheck:
    """What happened when the page was opened."""

    requests: list[str] = field(default_factory=list)  # every URL the page asked for, the page itself included
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    charts: int = 0
    charts_drawn: int = 0
    scripts: int = 0
    text: str = ""
    title: str = ""
    page_width: int = 0
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        return self.exceptions + [t for level, t in self.console if level in ("error", "assert")]

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    def __init__(self, url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        self.ws.settimeout(60)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def pump(self, seconds: float, until: str | None = None) -> None:
        """Read events for up to ``seconds`` (or until event ``until`` arrives)."""
        import websocket

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ws.settimeout(max(0.05, end - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                return
            self._event(msg)
            if until and msg.get("method") == until:
                return

    def _event(self, msg: dict) -> None:
        if "method" not in msg:
            return
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":  # never leave the page blocked on an alert
            self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}))

    def close(self) -> None:
        self.ws.close()


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 30) -> int:
    marker = profile / "DevToolsActivePort"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker.exists():
            lines = marker.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port in time")


def check_report(path: str | Path, *, screenshot: str | Path | None = None, width: int = 1280,
                 height: int = 900, full_page: bool = True, max_height: int = 16000,
                 chromium: str | None = None) -> PageCheck:
    """Open ``path`` in a fresh headless Chromium profile and report what the page did."""
    import urllib.request

    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found; apt-get install chromium")
    page_url = Path(path).resolve().as_uri()
    result = PageCheck()
    with tempfile.TemporaryDirectory(prefix="advise-chromium-") as profile:
        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                                 "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tools = None
        try:
            port = _devtools_port(Path(profile), proc)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            target = next(t for t in targets if t.get("type") == "page")
            tools = _DevTools(target["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.call(f"{domain}.enable")
            tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=width < 700)
            tools.call("Page.navigate", url=page_url)
            tools.pump(30, until="Page.loadEventFired")
            tools.pump(0.5)  # late console messages or requests
            probe = tools.call("Runtime.evaluate", expression=_PROBE, returnByValue=True)["result"]["value"]
            result.charts, result.charts_drawn = probe["charts"], probe["drawn"]
            result.text, result.title, result.scripts = probe["text"], probe["title"], probe["scripts"]
            result.page_width = probe["width"]
            if screenshot is not None:
                shot_height = min(int(probe["height"]), max_height) if full_page else height
                result.screenshot = _screenshot(tools, Path(screenshot), width, shot_height)
            tools.pump(0.2)
            _collect_events(tools.events, result)
        finally:
            if tools is not None:
                try:
                    tools.call("Browser.close")
                except Exception:  # the browser may already be gone
                    pass
                tools.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
    return result


@contextlib.contextmanager
def browser(*, width: int = 1280, height: int = 900, chromium: str | None = None):
    """A fresh headless Chromium; yields ``open_page(url) -> _DevTools`` (a new tab each call).

    For pages that are driven, not just looked at (the service's browser test)."""
    import urllib.request

    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found; apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="advise-chromium-") as profile:
        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                                 "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tabs: list[_DevTools] = []
        try:
            port = _devtools_port(Path(profile), proc)

            def open_page(url: str) -> _DevTools:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
                with urllib.request.urlopen(req, timeout=10) as r:
                    target = json.load(r)
                tools = _DevTools(target["webSocketDebuggerUrl"])
                tabs.append(tools)
                for domain in ("Page", "Runtime", "Log", "Network", "DOM"):
                    tools.call(f"{domain}.enable")
                tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                           mobile=width < 700)
                tools.call("Page.navigate", url=url)
                tools.pump(30, until="Page.loadEventFired")
                return tools

            yield open_page
        finally:
            for tools in tabs:
                tools.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


def _screenshot(tools, out: Path, width: int, height: int) -> Path:
    tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
               mobile=width < 700)
    data = tools.call("Page.captureScreenshot", format="png",
                      clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                      captureBeyondViewport=True)["data"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(data))
    return out


def _collect_events(events: list[dict], result: PageCheck) -> None:
    """Requests, console messages, exceptions and dialogs from the DevTools events."""
    for ev in events:
        method, p = ev["method"], ev.get("params", {})
        if method == "Network.requestWillBeSent":
            result.requests.append(p["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.console.append((p.get("type", "log"), text))
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            result.console.append((entry.get("level", "info"), entry.get("text", "")))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            result.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif method == "Page.javascriptDialogOpening":
            result.dialogs.append(p.get("message", ""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m reports.browser REPORT.html [SCREENSHOT.png [MAX_HEIGHT_PX]]", file=sys.stderr)
        return 2
    page = check_report(argv[0], screenshot=argv[1] if len(argv) > 1 else None,
                        max_height=int(argv[2]) if len(argv) > 2 else 16000)
    print(f"charts drawn: {page.charts_drawn}/{page.charts}; errors: {page.errors or 'none'}; "
          f"external requests: {page.external_requests or 'none'}; dialogs: {page.dialogs or 'none'}")
    if page.screenshot:
        print(f"screenshot: {page.screenshot} ({os.path.getsize(page.screenshot):,} bytes)")
    return 1 if (page.errors or page.external_requests or page.dialogs) else 0


if __name__ == "__main__":
    sys.exit(main())
