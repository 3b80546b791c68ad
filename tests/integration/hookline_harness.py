"""Shared helpers for hookline's integration tests (standard library only).

A HooklineServer writes a config JSON into a fresh temp dir, starts
`$HOOKLINE_BIN serve -c CONFIG` on 127.0.0.1 with port 0, learns the bound port
from the "listening" log line on stderr, and talks to it over http.client. All
waits are bounded; cleanup() always kills the process and removes the temp dir.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time

HOOKLINE_BIN = os.environ.get("HOOKLINE_BIN", "/work/main/build/hookline")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0


def tmp_root():
    root = os.environ.get("HOOKLINE_TEST_TMP") or "/tmp"
    os.makedirs(root, exist_ok=True)
    return root


def make_tmpdir(prefix="hookline-it-"):
    return tempfile.mkdtemp(prefix=prefix, dir=tmp_root())


def base_env(extra=None):
    """A minimal environment for the binary: no inherited secrets."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC"}
    if extra:
        env.update(extra)
    return env


def write_config(tmpdir, config, name="hookline.json"):
    path = os.path.join(tmpdir, name)
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(config, (bytes, str)):
            f.write(config if isinstance(config, str) else config.decode())
        else:
            json.dump(config, f, indent=2)
            f.write("\n")
    return path


def run_cli(args, env=None, timeout=CLI_TIMEOUT_S, cwd=None):
    """Runs `hookline ARGS...`; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([HOOKLINE_BIN] + list(args), env=base_env(env), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def parse_json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---------- signing helpers (what senders compute) ----------

def whsec_key(secret):
    assert secret.startswith("whsec_")
    return base64.b64decode(secret[len("whsec_"):])


def sw_signature(secret, msg_id, timestamp, body):
    """Standard Webhooks v1 signature (base64, without the 'v1,' tag)."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return base64.b64encode(hmac.new(whsec_key(secret), content, hashlib.sha256).digest()).decode()


def sw_headers(secret, msg_id, body, timestamp=None, prefix="webhook"):
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(ts),
        f"{prefix}-signature": "v1," + sw_signature(secret, msg_id, ts, body),
        "Content-Type": "application/json",
    }


def hmac_b64(key, content, alg=hashlib.sha256):
    return base64.b64encode(hmac.new(key.encode(), content, alg).digest()).decode()


def hmac_hex(key, content, alg=hashlib.sha256):
    return hmac.new(key.encode(), content, alg).hexdigest()


class HttpResult:
    """(status, headers, body) plus conveniences; unpacks as a 3-tuple."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage: case-insensitive .get()
        self.body = body

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"HttpResult({self.status}, {self.body[:300]!r})"


class HooklineServer:
    """One `hookline serve` process with its own temp dir, config and database."""

    def __init__(self, config, env=None, tmpdir=None, db_name="events.db"):
        self.tmpdir = tmpdir or make_tmpdir()
        self._own_tmpdir = tmpdir is None
        self.config = json.loads(json.dumps(config))
        self.config.setdefault("listen", {})
        self.config["listen"]["host"] = "127.0.0.1"
        self.config["listen"]["port"] = 0
        self.config.setdefault("store", {}).setdefault("url", "sqlite:" + db_name)
        self.env = dict(env or {})
        self.config_path = write_config(self.tmpdir, self.config)
        url = self.config["store"]["url"]
        assert url.startswith("sqlite:")
        p = url[len("sqlite:"):]
        self.db_path = p if os.path.isabs(p) else os.path.join(self.tmpdir, p)
        self.proc = None
        self.port = None
        self.stderr_lines = []       # every stderr line of every run, in order
        self.responses = []          # every HTTP response body received
        self._lock = threading.Lock()
        self._reader = None

    # ----- process lifetime -----

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        first_line = len(self.stderr_lines)
        self.port = None
        self.proc = subprocess.Popen([HOOKLINE_BIN, "serve", "-c", self.config_path],
                                     env=base_env(self.env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        listening = threading.Event()
        proc = self.proc

        def reader():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lock:
                    self.stderr_lines.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("msg") == "listening" and "port" in obj:
                    self.port = int(obj["port"])
                    listening.set()
            proc.stderr.close()
            listening.set()

        self._reader = threading.Thread(target=reader, daemon=True)
        self._reader.start()
        listening.wait(START_TIMEOUT_S)
        if self.port is None:
            rc = self.proc.poll()
            self.kill()
            raise RuntimeError("hookline did not start (rc=%r); stderr:\n%s"
                               % (rc, "\n".join(self.stderr_lines[first_line:])))
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def thread_names(self):
        """The names of the process's threads, as `top -H` and `ps -L` show them."""
        task_dir = "/proc/%d/task" % self.proc.pid
        names = set()
        for tid in os.listdir(task_dir):
            try:
                with open(os.path.join(task_dir, tid, "comm")) as f:
                    names.add(f.read().strip())
            except FileNotFoundError:  # a thread that just ended
                pass
        return names

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait (bounded); returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._join_reader()
        return self.proc.returncode

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._join_reader()

    def _join_reader(self):
        if self._reader is not None:
            self._reader.join(5)

    def cleanup(self):
        self.kill()
        if self._own_tmpdir and not os.environ.get("HOOKLINE_KEEP_TMP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log_text(self):
        with self._lock:
            return "\n".join(self.stderr_lines)

    def log_records(self):
        out = []
        with self._lock:
            lines = list(self.stderr_lines)
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    # ----- HTTP -----

    def connection(self, timeout=15):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=15, **kw):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {}, **kw)
            resp = conn.getresponse()
            data = resp.read()
            result = HttpResult(resp.status, resp.headers, data)
        finally:
            conn.close()
        with self._lock:
            self.responses.append(data)
        return result

    def post(self, source, body, headers=None, query="", **kw):
        return self.request("POST", "/hooks/" + source + query, body, headers, **kw)

    def get(self, path):
        return self.request("GET", path, None)

    def host_header(self):
        return "127.0.0.1:%d" % self.port

    # ----- CLI and database -----

    def cli(self, *args, timeout=CLI_TIMEOUT_S):
        return run_cli(args, env=self.env, timeout=timeout)

    def audit(self, *filters):
        r = self.cli("audit", "-c", self.config_path, "--format", "json", *filters)
        if r.returncode != 0:
            raise AssertionError("hookline audit failed (%d): %s" % (r.returncode, r.stderr))
        return parse_json_lines(r.stdout), r

    def wait_audit(self, predicate, *filters, timeout=10.0):
        """Polls the audit trail until predicate(records) holds; returns the records."""
        deadline = time.monotonic() + timeout
        records = []
        while time.monotonic() < deadline:
            records, _ = self.audit(*filters)
            if predicate(records):
                return records
            time.sleep(0.1)
        return records

    def db(self):
        """A read-only sqlite3 connection to the server's database."""
        return sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)

    def query(self, sql, params=()):
        conn = self.db()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def count_events(self, source, event_id=None):
        if event_id is None:
            return self.query("SELECT count(*) FROM events WHERE source = ?", (source,))[0][0]
        return self.query("SELECT count(*) FROM events WHERE source = ? AND event_id = ?",
                          (source, event_id))[0][0]


def start_server(testcase, config, env=None, **kw):
    """Starts a server whose cleanup is registered on testcase (works in setUpClass too)."""
    srv = HooklineServer(config, env=env, **kw)
    if isinstance(testcase, type):
        testcase.addClassCleanup(srv.cleanup)
    else:
        testcase.addCleanup(srv.cleanup)
    srv.start()
    return srv
