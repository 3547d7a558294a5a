"""Open the built site in headless Chromium, offline, and look at what a reader sees.

Used by ``tests/docs/test_browser.py``, and by hand to take screenshots::

    python docs/scripts/headless.py SITE_DIR methods/drop-block/ shot.png [--selector CSS]

The site is served on 127.0.0.1 only, on a port of its own. Chromium is driven through the
DevTools protocol over a pipe (``--remote-debugging-pipe``: no port, no extra package), every
request it makes is recorded, and its host resolver maps every name but 127.0.0.1 to "not
found", so nothing leaves the machine even where a network is there.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
    "--disable-default-apps",
    "--mute-audio",
    # Offline by construction: no name resolves except the loopback address the site is on.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
]


TRAMPOLINE = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def find_chromium() -> str | None:
    """The Chromium executable ($DROPKIT_CHROMIUM or one on PATH), or None."""
    chosen = os.environ.get("DROPKIT_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class SiteServer:
    """The built site over HTTP on 127.0.0.1, in a thread; a context manager."""

    def __init__(self, site: Path):
        handler = functools.partial(_Quiet, directory=str(site))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class BrowserError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium with one tab, driven over the DevTools protocol on a pipe."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900, timeout: float = 60):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="dropkit-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The protocol's pipe is Chromium's fd 3 (commands in) and fd 4 (replies out). A small
        # Python trampoline moves the two ends there and execs Chromium (no preexec_fn, which is
        # unsafe with threads); they are first copied above fd 10, so neither is already 3 or 4.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", TRAMPOLINE, str(high_r), str(high_w), executable, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(high_r, high_w),
            )
        finally:
            os.close(high_r)
            os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            self.call("Page.enable", session=True)
            self.call("Network.enable", session=True)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                session=True,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    # The protocol: one JSON message per NUL-terminated chunk, each way.
    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError("Chromium exited: " + self._stderr_tail())
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, since: int) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for message in self.events[since:]:
                if message["method"] == event:
                    return message
            since = len(self.events)
            self.events.append(self._receive(deadline))

    def open(self, url: str) -> list[dict]:
        """Load a page (until its load event); return the requests it made (url, status)."""
        since = len(self.events)
        result = self.call("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self.wait_for("Page.loadEventFired", since)
        return self.requests(since)

    def requests(self, since: int = 0) -> list[dict]:
        seen: dict[str, dict] = {}
        for message in self.events[since:]:
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                seen[params["requestId"]] = {"url": params["request"]["url"], "status": None}
            elif message["method"] == "Network.responseReceived" and params["requestId"] in seen:
                seen[params["requestId"]]["status"] = params["response"]["status"]
            elif message["method"] == "Network.loadingFailed" and params["requestId"] in seen:
                seen[params["requestId"]]["failed"] = params.get("errorText", "failed")
        return list(seen.values())

    def evaluate(self, expression: str):
        """Run JavaScript in the page (a promise is awaited); return its JSON value."""
        result = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, selector: str | None = None, margin: int = 24) -> Path:
        """A PNG of the viewport, or of the first element matching ``selector`` (with a margin)."""
        params: dict = {"format": "png"}
        if selector:
            box = self.evaluate(
                f"""(() => {{
                    const el = document.querySelector({json.dumps(selector)});
                    if (!el) return null;
                    el.scrollIntoView({{block: "center"}});
                    const r = el.getBoundingClientRect();
                    return {{x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}};
                }})()"""
            )
            if box is None:
                raise BrowserError(f"no element matches {selector!r}")
            x, y = max(0, box["x"] - margin), max(0, box["y"] - margin)
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": x,
                "y": y,
                "width": box["w"] + 2 * margin,
                "height": box["h"] + 2 * margin,
                "scale": 1,
            }
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"id": 0, "method": "Browser.close", "params": {}})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# What a page shows: evaluated in the page once it has loaded.
INSPECT = r"""
(async () => {
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
  await document.fonts.ready;
  const imgs = [...document.images];
  await Promise.all(imgs.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done);
    img.addEventListener("error", done);
  })));
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return [r.left, r.top, r.width, r.height];
  };
  const maths = [...document.querySelectorAll("math")].map((m) => {
    const fracs = [...m.querySelectorAll("mfrac")].map((f) => {
      const [num, den] = f.children;
      return {num: box(num), den: box(den)};
    });
    return {
      tex: (m.querySelector("annotation") || {}).textContent || "",
      display: getComputedStyle(m).display,
      box: box(m),
      fracs,
    };
  });
  const article = document.querySelector("article") || document.body;
  // The words a reader sees outside code and formulas: no TeX may be left there.
  const prose = article.cloneNode(true);
  prose.querySelectorAll("pre, code, math, script, style").forEach((e) => e.remove());
  const text = prose.textContent;
  const raw = [...text.matchAll(/\\(frac|mathrm|mathcal|text|sim|alpha|gamma|begin|end|[()\[\]])/g)]
    .map((m) => text.slice(Math.max(0, m.index - 30), m.index + 30));
  // Every table and code block: either it fits its column, or a box around it scrolls sideways.
  const scrolls = (el) => {
    for (let e = el; e && e !== article; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if ((o === "auto" || o === "scroll") && e.scrollWidth > e.clientWidth) return true;
    }
    return false;
  };
  const column = article.getBoundingClientRect();
  const page = document.documentElement;
  const wide = [...article.querySelectorAll("table, pre > code, div.arithmatex")].map((el) => {
    // Fits: shows all its content inside its own box, and the box is inside the window.
    const fits = el.scrollWidth <= el.clientWidth + 1
      && el.getBoundingClientRect().right <= page.clientWidth + 1;
    return {tag: el.tagName.toLowerCase(), width: el.scrollWidth, column: column.width,
            fits, scrolls: fits ? false : scrolls(el)};
  });
  return {
    title: document.title,
    images: imgs.map((img) => ({
      src: img.currentSrc || img.src, width: img.naturalWidth, height: img.naturalHeight,
    })),
    maths, raw, wide,
    page: {width: page.scrollWidth, window: page.clientWidth},
  };
})()
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build -d SITE)")
    parser.add_argument("page", help="a page's path in the site, e.g. methods/drop-block/")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--selector", help="screenshot only the first element matching this CSS")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    executable = find_chromium()
    if executable is None:
        print("no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    with SiteServer(args.site) as server, Chromium(executable, args.width, args.height) as tab:
        requests = tab.open(server.base + args.page)
        report = tab.evaluate(INSPECT)
        tab.screenshot(args.png, args.selector)
    print(json.dumps({"requests": requests, **report}, indent=1, ensure_ascii=False)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
