"""The daemon's status page (actors/gateway/status_page.html) in a real headless Chromium.

    status_page_test.py PYVISOR SCENARIO

restart: the page shows both workers of pool `default` with their pids; one is killed
  (SIGKILL); the page marks it restarted with its new pid and lists its exit among the events.
auth_and_outage: with tokens, the page asks for one, shows the status once it is given; the
  daemon stops: the page says it is unreachable; a new daemon on the same port: it recovers.

Every scenario also checks that the page reported no JavaScript exception or console error, that
the daemon exits 0 on SIGTERM and that no process it or Chromium started is left. Exit status:
0 passed, 1 failed, 77 skipped (no /usr/bin/chromium).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp_browser import CHROMIUM, Browser  # noqa: E402

SKIP = 77
TOKEN = "page-test-token-0123456789abcdef"


def write_config(workdir, listen, tokens=False):
    lines = ["[runtime]", f'http_listen = "{listen}"', 'shutdown_grace = "5s"', "",
             "[gateway]"]
    if tokens:
        tokens_file = os.path.join(workdir, "tokens")
        with open(tokens_file, "w") as f:
            f.write(f"{TOKEN} *\n")
        lines.append(f'tokens_file = "{tokens_file}"')
    lines += ["", "[tenants.default]", 'python = "/usr/bin/python3"', "",
              "[pools.default]", 'tenant = "default"', "size = 2", "",
              "[supervisors.app]", 'children = ["default"]', ""]
    path = os.path.join(workdir, "pyvisor.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


class Daemon:
    """`pyvisor serve CONFIG`: its ready line read from stdout, stderr kept in a file."""

    def __init__(self, exe, config, workdir, name):
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([exe, "serve", config], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err)
        self._lines, self._cond = [], threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.url = None
        self.worker_pids = set()

    def _read_stdout(self):
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)
            self._cond.notify_all()

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines:
                    if line is None:
                        raise AssertionError(f"daemon exited before ready (status {self.proc.wait()})")
                    m = re.match(r"pyvisor: ready on (http://\S+)", line)
                    if m:
                        self.url = m.group(1)
                        return self.url
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ready line within {timeout} s")
                self._cond.wait(left)

    def get(self, path, token=None):
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)

    def workers(self, token=None):
        """{id: pid} of pool `default`, from /v1/status."""
        doc = self.get("/v1/status", token)
        pool = next(p for p in doc["pools"] if p["name"] == "default")
        found = {w["id"]: w["pid"] for w in pool["per_worker"]}
        self.worker_pids.update(p for p in found.values() if p)
        return found

    def stop(self, timeout=40.0):
        """SIGTERM; its exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def stderr_tail(self, lines=80):
        try:
            with open(self.stderr_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


# The worker rows of pool `default` as the page shows them.
WORKER_ROWS = """[...document.querySelectorAll('table.workers tr[data-worker^="default/"]')].map(r => ({
  worker: r.dataset.worker, pid: r.dataset.pid, restarts: r.dataset.restarts,
  restarted: r.classList.contains('restarted'), text: r.textContent}))"""
EVENT_ROWS = """[...document.querySelectorAll('#events tr[data-kind]')].map(r => ({
  seq: Number(r.dataset.seq), kind: r.dataset.kind, pid: r.dataset.pid, worker: r.dataset.worker || '', text: r.textContent}))"""


def scenario_restart(exe, workdir, state):
    # The config's path is shown on the page: markup in it must stay text.
    confdir = os.path.join(workdir, "conf <b id=injected>x")
    os.mkdir(confdir)
    daemon = state["daemon"] = Daemon(exe, write_config(confdir, "127.0.0.1:0"), workdir, "daemon")
    url = daemon.wait_ready()
    for _ in range(3):
        assert daemon.post("/v1/pools/default/eval", {"code": "return 6 * 7"}) == {"value": 42}
    pids = daemon.workers()
    assert len(pids) == 2 and all(pids.values()), f"pool default: {pids}"

    browser = state["browser"] = Browser(workdir)
    browser.open_page(url + "/")
    # Both workers, with the pids /v1/status gives, shown as text too.
    expected = json.dumps({f"default/{w}": str(p) for w, p in pids.items()})
    browser.wait_for(f"""(() => {{ const want = {expected};
      const rows = {WORKER_ROWS};
      return rows.length === 2 && rows.every(r => want[r.worker] === r.pid && r.text.includes(r.pid)
        && r.restarts === '0' && !r.restarted); }})()""", 15, "both workers with their pids")
    browser.wait_for("""(() => { const s = document.querySelector('section[data-pool="default"]');
      const kv = s ? Object.fromEntries([...s.querySelectorAll('dl.kv > div')].map(
        d => [d.firstChild.textContent, d.lastChild.textContent])) : {};
      return kv['workers ready'] === '2/2' && Number(kv['served']) >= 3
        && /ms \\/ .* ms/.test(kv['latency p50 / p99']); })()""",
                     10, "pool default: 2/2 ready, 3 served, latency")
    assert browser.evaluate("document.getElementById('banner').hidden"), "a banner is shown"
    assert browser.evaluate("""document.getElementById('injected') === null
      && document.getElementById('overview').textContent.includes('conf <b id=injected>x')"""), \
        "the config path was not shown as text"

    victim = sorted(pids)[0]
    old_pid = pids[victim]
    os.kill(old_pid, signal.SIGKILL)
    row = browser.wait_for(f"""(() => {{
      const r = {WORKER_ROWS}.find(r => r.worker === 'default/{victim}');
      return r && r.restarted && Number(r.restarts) >= 1 && r.pid !== '0' && r.pid !== '{old_pid}'
        && r.text.includes('restarted ' + r.restarts + '×') && r.text.includes(r.pid) && r; }})()""",
                           20, f"worker {victim} marked restarted with a new pid")
    new_pid = int(row["pid"])
    assert daemon.workers()[victim] == new_pid, "the page's new pid is not /v1/status's"
    browser.wait_for(f"""{EVENT_ROWS}.some(e => e.kind === 'worker_exited' && e.pid === '{old_pid}'
      && e.worker === 'default/{victim}')""", 10, f"the exit of pid {old_pid} in the events")
    seqs = [e["seq"] for e in browser.evaluate(EVENT_ROWS)]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), \
        f"events not newest first: {seqs}"
    other = [w for w in pids if w != victim][0]
    assert browser.evaluate(f"""{WORKER_ROWS}.find(r => r.worker === 'default/{other}').restarted""") is False
    print(f"ok: worker {victim} pid {old_pid} killed, shown restarted as pid {new_pid}")


def scenario_auth_and_outage(exe, workdir, state):
    config = write_config(workdir, "127.0.0.1:0", tokens=True)
    daemon = state["daemon"] = Daemon(exe, config, workdir, "daemon")
    url = daemon.wait_ready()
    pids = daemon.workers(TOKEN)
    browser = state["browser"] = Browser(workdir)
    browser.open_page(url + "/")
    browser.wait_for("""!document.getElementById('auth-section').hidden
      && document.getElementById('banner').className.includes('auth')""", 15, "the token form")
    assert browser.evaluate("document.querySelectorAll('tr[data-worker]').length") == 0
    browser.evaluate(f"""(() => {{ document.getElementById('token').value = {json.dumps(TOKEN)};
      document.getElementById('auth').requestSubmit(); return true; }})()""")
    browser.wait_for(f"""document.getElementById('auth-section').hidden
      && document.getElementById('banner').hidden
      && document.querySelectorAll('table.workers tr[data-worker^="default/"]').length === 2
      && sessionStorage.getItem('pyvisor.token') === {json.dumps(TOKEN)}""",
                     15, "the status once the token is given")

    status = daemon.stop()
    assert status == 0, f"daemon exit status {status}"
    left = wait_gone(daemon.worker_pids)
    assert not left, f"workers left after the daemon stopped: {left}"
    browser.wait_for("""(() => { const b = document.getElementById('banner');
      return !b.hidden && b.className.includes('down') && b.textContent.includes('daemon unreachable')
        && document.body.classList.contains('stale'); })()""", 15, "the unreachable banner")

    # A new daemon on the same port: the page recovers, still with the tab's token.
    port = re.search(r":(\d+)$", url).group(1)
    write_config(workdir, f"127.0.0.1:{port}", tokens=True)
    daemon = state["daemon"] = Daemon(exe, config, workdir, "daemon2")
    assert daemon.wait_ready() == url, f"the new daemon is on {daemon.url}, not {url}"
    new_pids = daemon.workers(TOKEN)
    want = json.dumps({f"default/{w}": str(p) for w, p in new_pids.items()})
    browser.wait_for(f"""(() => {{ const want = {want};
      const rows = {WORKER_ROWS};
      return document.getElementById('banner').hidden && !document.body.classList.contains('stale')
        && rows.length === 2 && rows.every(r => want[r.worker] === r.pid); }})()""",
                     20, "the page back, with the new daemon's workers")
    assert set(new_pids.values()).isdisjoint(pids.values())
    print(f"ok: token form, status, unreachable banner, recovered on {url}")


SCENARIOS = {"restart": scenario_restart, "auth_and_outage": scenario_auth_and_outage}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} PYVISOR {{{'|'.join(SCENARIOS)}}}", file=sys.stderr)
        return 2
    exe, name = sys.argv[1], sys.argv[2]
    if not os.access(CHROMIUM, os.X_OK):
        print(f"skipped: {CHROMIUM} is absent")
        return SKIP
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="pyvisor-page-")
    state, failed = {}, False
    try:
        SCENARIOS[name](exe, workdir, state)
        browser = state["browser"]
        problems = browser.console_problems(allow_network=(name == "auth_and_outage"))
        assert not problems, "console problems:\n  " + "\n  ".join(problems)
    except Exception:
        failed = True
        traceback.print_exc()
        if "browser" in state:
            print("---- console problems ----\n" + "\n".join(state["browser"].console_problems()))
            print("---- DOM ----\n" + state["browser"].dom_dump())
            print("---- chromium log (tail) ----\n" + state["browser"].log_tail())
    finally:
        if "browser" in state:
            left = state["browser"].close()
            if left:
                failed = True
                print(f"FAIL: Chromium processes left: {left}")
        if "daemon" in state:
            daemon = state["daemon"]
            if daemon.proc.poll() is None or failed:
                status = daemon.stop()
                if status != 0:
                    failed = True
                    print(f"FAIL: daemon exit status {status}")
                left = wait_gone(daemon.worker_pids)
                if left:
                    failed = True
                    print(f"FAIL: workers left after the daemon stopped: {left}")
            if failed:
                print("---- daemon stderr (tail) ----\n" + daemon.stderr_tail())
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'FAILED' if failed else 'passed'} in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
