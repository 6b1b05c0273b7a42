"""Open the generated report in headless Chromium and check what a reader would see.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON): standard library only, no port, no websocket package.
Checks: every image decodes (naturalWidth > 0), no console error, no uncaught exception, no
request other than file:// and data:, no horizontal scrolling at laptop width, and a screenshot.
Without Chromium the test is skipped and says why; a Chromium that is there but fails is a failure.
Set CNNBENCH_SCREENSHOT=/some/dir to keep the screenshots.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from synthetic_results import named_inputs, write_synthetic_results

pytestmark = pytest.mark.browser

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]
WIDTH, HEIGHT = 1280, 2000
# A4 (210 mm) less Chromium's default print margins (0.4 in either side), in CSS pixels (96/in)
A4_INCHES = (8.27, 11.69)
A4_PRINTABLE_WIDTH = round((A4_INCHES[0] - 2 * 0.4) * 96)
TIMEOUT_S = 60.0

CHECKS_JS = """(() => {
  const images = Array.from(document.images).map((img, i) => ({
    i, alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    scheme: img.currentSrc.split(':')[0],
  }));
  const resources = performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => !n.startsWith('data:') && !n.startsWith('file:'));
  return {
    title: document.title,
    images,
    resources,
    sections: Array.from(document.querySelectorAll('main section[id]')).map(s => s.id),
    tocTargetsMissing: Array.from(document.querySelectorAll('nav a[href^="#"]'))
      .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)),
    scrollWidth: document.documentElement.scrollWidth,
    clipped: Array.from(document.querySelectorAll('.scroll'))
      .filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => (e.querySelector('table[id]') || {}).id || e.innerText.slice(0, 40)),
    // on paper nothing scrolls: any box whose content is wider than the box is cut off
    cutOnPaper: Array.from(document.querySelectorAll('main *'))
      .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible'
        || e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
      .map(e => e.id || (e.querySelector('[id]') || {}).id
        || e.tagName.toLowerCase() + '.' + e.className + ': ' + e.innerText.slice(0, 30)),
    innerWidth: window.innerWidth,
    firstVerdict: (document.querySelector('.card') || {}).innerText || '',
  };
})()"""


def find_chromium() -> str | None:
    explicit = os.environ.get("CNNBENCH_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, executable: str, profile: Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # park the child's ends above 9 so the dup2 onto 3 and 4 below cannot clobber them
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def plumb():  # in the child, before exec: Chromium reads fd 3, writes fd 4
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=plumb,
            close_fds=False,
        )
        os.close(high_r)
        os.close(high_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: queue.Queue[dict] = queue.Queue()
        self._lock = threading.Condition()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(
            target=lambda: self._stderr.extend(self.process.stderr), daemon=True
        ).start()

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        self._replies[message["id"]] = message
                        self._lock.notify_all()
                else:
                    self.events.put(message)
        with self._lock:
            self._lock.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        with self._lock:
            while ident not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise RuntimeError(
                        f"no reply to {method} from Chromium; stderr:\n{self.stderr()}"
                    )
                self._lock.wait(min(remaining, 0.5))
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str, seen: list[dict]) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(event)
            if event.get("method") == method:
                return event
        raise RuntimeError(f"Chromium sent no {method} within {TIMEOUT_S:.0f} s")

    def drain(self, seen: list[dict]) -> None:
        while True:
            try:
                seen.append(self.events.get_nowait())
            except queue.Empty:
                return

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-3000:]

    def close(self):
        with contextlib.suppress(RuntimeError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)


def problems_in(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and any request leaving the disk."""
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in (
            "error",
            "assert",
            "warning",
        ):
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            problems.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description", "")
            problems.append(f"exception: {details.get('text')} {description}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in (
            "error",
            "warning",
        ):
            entry = params["entry"]
            problems.append(
                f"log {entry.get('level')} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:")):
                problems.append(f"network request: {url}")
        elif method == "Network.loadingFailed":
            problems.append(f"loading failed: {params.get('errorText')}")
    return problems


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
    return struct.unpack(">II", data[16:24])


def open_in_chromium(
    report: Path, profile: Path, width: int = WIDTH, media: str = "screen"
) -> tuple[dict, list[str], bytes, bytes]:
    """Load ``report`` at ``width`` CSS pixels with ``media`` (screen or print) emulated; the
    checks, the problems seen, a screenshot and a half-scale full-page screenshot (screen) or
    the page printed to an A4 PDF (print)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "Chromium not found (Debian: apt-get install -y chromium, or set CNNBENCH_CHROMIUM); "
            "the browser check did not run"
        )
    browser = DevTools(executable, profile)
    events: list[dict] = []
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Emulation.setEmulatedMedia", {"media": media}, session=session)
        browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", events)
        checks = browser.send(
            "Runtime.evaluate",
            {"expression": CHECKS_JS, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in checks:
            raise RuntimeError(f"the check script failed: {checks['exceptionDetails']}")
        shot = base64.b64decode(
            browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        )
        if media == "print":
            paper_width, paper_height = A4_INCHES
            full = base64.b64decode(
                browser.send(
                    "Page.printToPDF",
                    {"paperWidth": paper_width, "paperHeight": paper_height},
                    session=session,
                )["data"]
            )
        else:
            metrics = browser.send("Page.getLayoutMetrics", session=session)
            height = int(metrics["cssContentSize"]["height"])
            full = base64.b64decode(
                browser.send(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {
                            "x": 0,
                            "y": 0,
                            "width": WIDTH,
                            "height": min(height, 16000),
                            "scale": 0.5,
                        },
                    },
                    session=session,
                )["data"]
            )
        time.sleep(0.2)  # let late console events arrive
        browser.drain(events)
    finally:
        browser.close()
    return checks["result"]["value"], problems_in(events), shot, full


def test_report_opens_cleanly_in_chromium(tmp_path):
    write_synthetic_results(tmp_path)
    from cnnbench.report import build_report

    report = build_report(*named_inputs(tmp_path), tmp_path / "results" / "report.html")
    checks, problems, shot, full = open_in_chromium(report, tmp_path / "profile")

    keep = os.environ.get("CNNBENCH_SCREENSHOT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "report-top.png").write_bytes(shot)
        (Path(keep) / "report-full.png").write_bytes(full)
    (tmp_path / "report-top.png").write_bytes(shot)

    assert problems == []
    assert checks["title"] == "cnnbench report — MNIST"
    assert checks["sections"] == [
        "summary",
        "training",
        "timing",
        "where",
        "agreement",
        "gradients",
        "worked-example",
        "provenance",
    ]
    assert checks["tocTargetsMissing"] == []
    assert len(checks["images"]) >= 18
    broken = [
        img
        for img in checks["images"]
        if not (img["complete"] and img["width"] > 0 and img["height"] > 0)
    ]
    assert broken == []
    assert {img["scheme"] for img in checks["images"]} == {"data"}
    assert checks["resources"] == []
    assert checks["scrollWidth"] <= checks["innerWidth"], (
        "the page scrolls sideways at laptop width"
    )
    assert checks["clipped"] == [], "tables wider than the page at laptop width"
    assert checks["firstVerdict"].startswith("Same answers as PyTorch?")
    assert png_size(shot) == (WIDTH, HEIGHT)
    assert png_size(full)[0] == WIDTH // 2 and len(full) > 10_000


def test_report_prints_to_a4_without_cutting_anything(tmp_path):
    """Printed from Chromium on A4, tables and the config block wrap inside the page: no box
    clips its content (paper cannot scroll) and nothing reaches past the right margin."""
    write_synthetic_results(tmp_path)
    from cnnbench.report import build_report

    report = build_report(*named_inputs(tmp_path), tmp_path / "results" / "report.html")
    checks, problems, _, pdf = open_in_chromium(
        report, tmp_path / "profile", width=A4_PRINTABLE_WIDTH, media="print"
    )
    assert problems == []
    assert checks["innerWidth"] == A4_PRINTABLE_WIDTH
    assert checks["cutOnPaper"] == [], "\n".join(dict.fromkeys(checks["cutOnPaper"]))
    assert checks["scrollWidth"] <= checks["innerWidth"]
    assert pdf.startswith(b"%PDF-") and len(pdf) > 100_000


def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The checks above must be able to fail: a page with every fault they look for."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body><main>"
        '<img src="data:image/png;base64,AAAA" alt="undecodable">'
        '<img src="https://example.invalid/x.png" alt="external">'
        '<div class="scroll" style="width:100px;overflow-x:auto"><table id="wide" style="width:900px">'
        "<tr><td>x</td></tr></table></div>"
        '<script>console.error("boom"); missingFunction();</script></main></body></html>'
    )
    checks, problems, _, _ = open_in_chromium(page, tmp_path / "profile")
    assert [img["alt"] for img in checks["images"] if img["width"] == 0] == [
        "undecodable",
        "external",
    ]
    assert checks["resources"] == ["https://example.invalid/x.png"]
    assert checks["clipped"] == ["wide"]
    assert "wide" in checks["cutOnPaper"]
    assert "console.error: boom" in problems
    assert any(p.startswith("exception: Uncaught") and "missingFunction" in p for p in problems)
    assert "network request: https://example.invalid/x.png" in problems
