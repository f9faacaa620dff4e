"""A headless Chromium driven over the DevTools protocol on a pipe (Python standard library only).

Chromium started with --remote-debugging-pipe reads protocol messages on fd 3 and writes them on
fd 4, each a JSON object terminated by a NUL byte. One page target is attached in flat mode; the
console problems it reports (exceptions, console.error, Log entries of level error) are kept.
"""

import fcntl
import json
import os
import signal
import subprocess
import threading
import time

CHROMIUM = "/usr/bin/chromium"


class ProtocolError(Exception):
    pass


class Browser:
    def __init__(self, workdir, exe=CHROMIUM):
        # Everything of the browser goes under one directory of its own: profile, crash handler
        # database, caches (not into $HOME); its processes are those that name it.
        self._base = os.path.join(workdir, "chromium") + os.sep
        self.log_path = os.path.join(self._base, "chromium.log")
        profile = os.path.join(self._base, "profile")
        os.makedirs(profile)
        home = os.path.join(self._base, "home")
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"),
                   XDG_DATA_HOME=os.path.join(home, ".local", "share"))
        to_child_r, self._wfd = os.pipe()
        self._rfd, from_child_w = os.pipe()
        # Move the child's ends to fds >= 10, so the dup2 onto 3 and 4 cannot clobber them.
        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire_pipe():  # in the child, before exec: only fds 0-4 are inheritable then
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [exe, "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
                "--user-data-dir=" + profile, "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--mute-audio", "--password-store=basic", "--use-mock-keychain",
                "about:blank"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, close_fds=False, preexec_fn=wire_pipe,
                                         start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._cond = threading.Condition()
        self._responses = {}
        self._events = []
        self._closed = False
        self._next_id = 0
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session = None

    # --- the protocol ---

    def _read_loop(self):
        buf = b""
        try:
            while True:
                chunk = os.read(self._rfd, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    with self._cond:
                        if "id" in msg:
                            self._responses[msg["id"]] = msg
                        else:
                            self._events.append(msg)
                        self._cond.notify_all()
        except OSError:
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def call(self, method, params=None, session=None, timeout=15.0):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._wfd, data):]
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._responses:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise ProtocolError(f"{method}: no answer ({'pipe closed' if self._closed else 'timeout'})")
                self._cond.wait(left)
            reply = self._responses.pop(mid)
        if "error" in reply:
            raise ProtocolError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open_page(self, url):
        """Opens a page target, attaches to it, enables the domains that report problems."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(domain + ".enable", session=self.session)
        nav = self.call("Page.navigate", {"url": url}, session=self.session)
        if nav.get("errorText"):
            raise ProtocolError(f"navigating to {url}: {nav['errorText']}")
        # Page.navigate answers once the navigation is committed, not loaded.
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                      15, f"{url} loaded")

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session=self.session)
        if "exceptionDetails" in r:
            raise ProtocolError(f"evaluate: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout, what):
        """Evaluates `expression` until it is truthy; at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except ProtocolError as e:  # e.g. an element not there yet: not yet, but say so
                value = e
            if value and not isinstance(value, ProtocolError):
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")

    def console_problems(self, allow_network=False):
        """Exceptions, console.error/assert calls and Log entries of level error so far.

        allow_network: ignore the browser's own "Failed to load resource" entries (source
        "network"), which a fetch answered 401 or refused produces by design."""
        problems = []
        with self._cond:
            events = list(self._events)
        for e in events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                problems.append("exception: " + str(d.get("exception", {}).get("description")
                                                    or d.get("text")))
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = [a.get("value", a.get("description")) for a in p.get("args", [])]
                problems.append(f"console.{p['type']}: {args}")
            elif method == "Log.entryAdded":
                entry = p.get("entry", {})
                if entry.get("level") != "error":
                    continue
                if allow_network and entry.get("source") == "network":
                    continue
                problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return problems

    def dom_dump(self, limit=20000):
        try:
            html = self.evaluate("document.documentElement.outerHTML")
        except Exception as e:  # the dump is for diagnosis: never mask the first failure
            return f"(no DOM: {e})"
        return html if len(html) <= limit else html[:limit] + "\n... (truncated)"

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    # --- shutdown ---

    def _group_alive(self):
        """Live processes of the browser: its process group (it leads its own session) and those
        that left it but name its directory (crash handlers: their --database is there)."""
        pgid, alive = self.proc.pid, []
        mark = self._base.encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if fields[0] != "Z" and (int(fields[2]) == pgid or mark in cmdline):
                alive.append(int(entry))
        return alive

    def close(self, timeout=10.0):
        """Browser.close, then SIGTERM and SIGKILL to its group if needed. Returns the pids that
        were still alive at the end (empty on success)."""
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (ProtocolError, OSError):
                pass
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    try:
                        os.killpg(self.proc.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        deadline = time.monotonic() + timeout
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self._group_alive()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for fd in (self._wfd, self._rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        return left
