"""Helpers for running hookline against didww-sim (standard library only).

- SimServer: one `didww-sim` process on 127.0.0.1, port 0 (the port is read from the
  {"msg":"listening","port":"N"} line on stdout), with its own temp dir holding the
  state file and the request log. stop() ends it by its PID (SIGTERM, then SIGKILL).
- make_state(): a state file in the simulator's format with many DIDs.
- delivery_server(): a HooklineServer (hookline_harness) configured against a SimServer,
  with a small Lua rule written next to its config, its cleanup registered on the test.
- Small polling helpers with deadlines and a Prometheus text parser.

The simulator binary is $DIDWW_SIM_BIN, else didww-sim beside $HOOKLINE_BIN.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import hookline_harness
from hookline_harness import HOOKLINE_BIN, HooklineServer, make_tmpdir

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
SIM_BIN = os.environ.get("DIDWW_SIM_BIN") or os.path.join(os.path.dirname(HOOKLINE_BIN),
                                                           "didww-sim")
EXAMPLE_STATE = os.path.join(SOURCE_DIR, "tools", "didww_sim", "example_state.json")
SIM_START_TIMEOUT_S = 10.0
JSONAPI = "application/vnd.api+json"

# Ids of tools/didww_sim/example_state.json.
DID_A = "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"      # 4371234567, on trunk ON_CALL
DID_A_NUMBER = "4371234567"
DID_B = "1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5"      # 4371234568, on group SUPPORT
DID_B_NUMBER = "4371234568"
DID_VIP = "3505b18a-3019-47bc-95d1-0f9ec7766fd5"    # 14155550100, on group VIP
DID_UK = "46e129f1-deaa-44db-8915-2646de4d4c70"     # 442071838750, unrouted
TRUNK_OFFICE = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"
TRUNK_SUP_A = "ca7da6d0-aa0b-447d-8fc0-1bc58b51298c"
TRUNK_SUP_B = "e9c1b7e9-253b-46c8-b7e9-5a930ab594c5"
TRUNK_VIP = "87133f4d-4a88-436b-b74b-b63e79318426"
TRUNK_ON_CALL = "b7a9d1ce-6a89-4071-bc0d-486ee223787d"
GROUP_SUPPORT = "714e8148-0aea-4cb6-8680-bd1d06453418"
GROUP_VIP = "c07815fc-bf9e-4cbf-a3fc-9c99b8de14d8"
GROUP_EMPTY = "465b059a-b4a2-4c8e-ab3b-33dc60e096ae"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
TRUNKS = [TRUNK_OFFICE, TRUNK_SUP_A, TRUNK_SUP_B, TRUNK_VIP, TRUNK_ON_CALL]


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies (Linux PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def load_example_state():
    with open(EXAMPLE_STATE, encoding="utf-8") as f:
        return json.load(f)


def make_state(n_dids, first_number=3610000000, trunk=TRUNK_OFFICE):
    """The example state plus n_dids extra DIDs on `trunk`; returns (state, [(id, number)])."""
    state = load_example_state()
    extra = []
    for i in range(n_dids):
        did_id = str(uuid.UUID(int=(0x5eed << 112) | (i + 1), version=4))
        number = str(first_number + i)
        state["dids"].append({"id": did_id, "number": number, "trunk": trunk,
                              "trunk_group": None})
        extra.append((did_id, number))
    return state, extra


def deadline_poll(fn, timeout, interval=0.1):
    """Calls fn() until it returns a truthy value or timeout passes; returns the last value."""
    end = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < end:
        time.sleep(interval)
        value = fn()
    return value


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            value = float(value)
        except ValueError:
            continue
        labels = {}
        if "{" in head:
            name, rest = head.split("{", 1)
            rest = rest.rstrip("}")
            for part in _split_labels(rest):
                k, v = part.split("=", 1)
                labels[k] = json.loads(v)
        else:
            name = head
        out[(name, frozenset(labels.items()))] = value
    return out


def _split_labels(text):
    parts, cur, quoted, esc = [], "", False, False
    for ch in text:
        if esc:
            cur += ch
            esc = False
            continue
        if ch == "\\":
            cur += ch
            esc = True
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            if cur:
                parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur:
        parts.append(cur)
    return parts


def metric(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())))


class SimServer:
    """One didww-sim process with its own temp dir (state file, request log)."""

    def __init__(self, *args, state=None, key_env="DIDWW_API_KEY", key="sim-key",
                 request_log=True):
        self.tmpdir = make_tmpdir("didww-sim-it-")
        if state is None:
            state = load_example_state()
        self.state_path = os.path.join(self.tmpdir, "state.json")
        with open(self.state_path, "w", encoding="utf-8") as f:
            json.dump(state, f)
        self.log_path = os.path.join(self.tmpdir, "requests.jsonl") if request_log else None
        self.key = key
        self.args = list(args)
        self.key_env = key_env
        self.proc = None
        self.port = None
        self.stderr_text = ""

    def start(self, port=0):
        cmd = [SIM_BIN, "--state", self.state_path, "--host", "127.0.0.1", "--port", str(port),
               "--api-key-env", self.key_env]
        if self.log_path:
            cmd += ["--request-log", self.log_path]
        cmd += self.args
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), self.key_env: self.key}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env,
                                     preexec_fn=_die_with_parent)
        got = threading.Event()
        proc = self.proc

        def reader():
            line = proc.stdout.readline()
            try:
                obj = json.loads(line)
                if obj.get("msg") == "listening":
                    self.port = int(obj["port"])
            except ValueError:
                pass
            got.set()
            for _ in iter(proc.stdout.readline, b""):
                pass

        threading.Thread(target=reader, daemon=True).start()
        got.wait(SIM_START_TIMEOUT_S)
        if self.port is None:
            self.stop()
            raise RuntimeError("didww-sim did not start: " + self.stderr_text)
        return self

    def restart(self, key=None, timeout=10.0):
        """Stops the simulator and starts it again on the same port (fresh state from the
        state file, counters cleared; the request log goes on), optionally with another key."""
        port = self.port
        self.stop()
        if key is not None:
            self.key = key
        end = time.monotonic() + timeout
        while True:
            self.port = None
            try:
                return self.start(port=port)
            except RuntimeError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def stop(self):
        """Ends the process by its PID: SIGTERM, then SIGKILL after a bounded wait."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:
            self.stderr_text = self.proc.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            pass
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        if not os.environ.get("HOOKLINE_KEEP_TMP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/v3" % self.port

    # ----- control endpoints (no key, not logged) -----

    def control(self, method, path, body=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def state(self):
        return self.control("GET", "/__sim/state")[1]

    def put_state(self, state):
        status, body = self.control("PUT", "/__sim/state", state)
        if status != 200:
            raise AssertionError("PUT /__sim/state: %d %r" % (status, body))
        return body

    def did(self, did_id):
        return next(d for d in self.state()["dids"] if d["id"] == did_id)

    def stats(self):
        return self.control("GET", "/__sim/stats")[1]

    def requests(self):
        """The request log (from the file, so nothing is cut at 10000 entries)."""
        if not self.log_path or not os.path.exists(self.log_path):
            return []
        out = []
        with open(self.log_path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
        return out


def start_sim(testcase, *args, **kw):
    sim = SimServer(*args, **kw)
    testcase.addCleanup(sim.cleanup)
    return sim.start()


def delivery_config(sim, *, max_attempts=5, workers=4, skip_noop=True, rate_limit_per_s=20,
                    timeout_ms=2000, backoff_initial_ms=50, backoff_max_ms=500, extra=None):
    cfg = {
        "didww": {"base_url": sim.base_url, "api_key": "env:DIDWW_API_KEY",
                  "api_version": "2022-05-10", "rate_limit_per_s": rate_limit_per_s,
                  "timeout_ms": timeout_ms},
        "delivery": {"workers": workers, "max_attempts": max_attempts,
                     "backoff_initial_ms": backoff_initial_ms, "backoff_max_ms": backoff_max_ms,
                     "skip_noop": skip_noop},
        "rules": {"script": "main.lua"},
        "sources": {"crm": {"verify": {"scheme": "none", "insecure": True},
                            "event_id": "json:/id"}},
        "admin": {"token": "env:HOOKLINE_ADMIN_TOKEN"},
        "log": {"level": "info"},
    }
    for k, v in (extra or {}).items():
        cfg.setdefault(k, {}).update(v)
    return cfg


class _PopenDieWithParent(subprocess.Popen):
    def __init__(self, *args, **kw):
        kw.setdefault("preexec_fn", _die_with_parent)
        super().__init__(*args, **kw)


class _SubprocessShim:
    """subprocess as hookline_harness sees it while a DeliveryHooklineServer starts."""
    Popen = _PopenDieWithParent

    def __getattr__(self, name):
        return getattr(subprocess, name)


class DeliveryHooklineServer(HooklineServer):
    """A HooklineServer whose process gets SIGTERM when the test process dies, so a killed
    test run leaves no service behind (cleanup() still stops it normally)."""

    def start(self):
        saved = hookline_harness.subprocess
        hookline_harness.subprocess = _SubprocessShim()
        try:
            return super().start()
        finally:
            hookline_harness.subprocess = saved


def delivery_server(testcase, config, rules, api_key, admin_token, start=True):
    """A hookline server with `rules` written as main.lua next to its config."""
    srv = DeliveryHooklineServer(config, env={"DIDWW_API_KEY": api_key,
                                              "HOOKLINE_ADMIN_TOKEN": admin_token})
    testcase.addCleanup(srv.cleanup)
    with open(os.path.join(srv.tmpdir, "main.lua"), "w", encoding="utf-8") as f:
        f.write(rules)
    if start:
        srv.start()
    return srv
