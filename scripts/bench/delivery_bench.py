#!/usr/bin/env python3
"""delivery_bench.py: the driver of scripts/bench/delivery.sh (standard library only).

Runs hookline against the bundled DIDWW simulator (didww-sim, --latency-ms and
--rate-limit as given) and measures:

  (a) a backlog of 600 jobs over 300 DIDs (a route_did and an update_did per DID, so
      nothing coalesces; skip_noop false, one request per job): the sustained rate of
      requests arriving at the simulator divided by didww.rate_limit_per_s, and the
      429s the simulator answered;
  (b) 1,000 route_did updates to 10 DIDs (100 each): requests sent per job, once with
      skip_noop true (the default: a GET before each PATCH) and once with false;
  (c) one webhook at a time on an idle service: the time from the 202 (read by this
      client) to the PATCH arriving at the simulator ("t" of its request log, taken on
      arrival, before the simulator's added latency), with skip_noop true (default) and
      false.

A backlog is "queued at once" like this: hookline first runs without didww.api_key
(delivery off: planned jobs wait as pending), the webhooks are posted, hookline is
stopped (SIGTERM) and restarted on the same database with the key; the measurement
runs until hookline_queue_depth is 0.

With --store pg (delivery.sh STORE=pg) every run gets a fresh database on the
PostgreSQL server of --pg-url (created here, superuser password read from
--pg-passfile, handed to hookline as store.password file:... and to psql through its
environment, never printed); the job states are read through psql.

Every wait is bounded; every process started here is stopped in a finally block.
Exit: 0 when all runs completed and their checks passed (figures below target are
marked BELOW TARGET), 1 on an error or a failed check.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

START_TIMEOUT_S = 15.0
PSQL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes

class Proc:
    """One child process with its stdout/stderr in files; port learned from a line."""

    def __init__(self, name, argv, env, cwd, workdir):
        self.name = name
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        self.out = open(self.out_path, "ab")
        self.err = open(self.err_path, "ab")
        self.out_start = self.out.tell()
        self.err_start = self.err.tell()
        try:
            self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=self.out, stderr=self.err)
        except OSError as exc:
            self.out.close()
            self.err.close()
            raise BenchError("cannot start %s: %s" % (name, exc))

    def _read(self, path, start):
        with open(path, "rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")

    def stderr_text(self):
        return self._read(self.err_path, self.err_start)

    def wait_port(self, stream):
        """Waits for a JSON line {"msg":"listening", "port":"N"} on stdout or stderr."""
        path, start = (self.out_path, self.out_start) if stream == "stdout" else \
            (self.err_path, self.err_start)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self._read(path, start).splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("msg") == "listening" and "port" in obj:
                    return int(obj["port"])
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise BenchError("%s did not listen within %.0fs (exit %s): %s" % (
            self.name, START_TIMEOUT_S, self.p.poll(), self.stderr_text()[-2000:]))

    def stop(self):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit status."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log("note: %s ignored SIGTERM for %.0fs; killing it" % (self.name, STOP_TIMEOUT_S))
                self.p.kill()
                self.p.wait(timeout=STOP_TIMEOUT_S)
        self.out.close()
        self.err.close()
        return self.p.returncode


class Procs:
    def __init__(self):
        self.live = []

    def start(self, *a, **kw):
        p = Proc(*a, **kw)
        self.live.append(p)
        return p

    def stop(self, p):
        if p in self.live:
            self.live.remove(p)
        return p.stop()

    def stop_all(self):
        while self.live:
            p = self.live.pop()
            try:
                p.stop()
            except Exception as exc:  # keep stopping the others
                log("note: stopping %s: %s" % (p.name, exc))


# ---------------------------------------------------------------- HTTP

def http_req(port, method, path, body=None, headers=None, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        if own:
            conn.close()


def http_json(port, method, path, body=None):
    status, data = http_req(port, method, path, body,
                            {"Content-Type": "application/json"} if body is not None else None)
    if status >= 300:
        raise BenchError("%s %s on :%d answered %d: %s" % (method, path, port, status, data[:300]))
    return json.loads(data) if data else None


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args, procs):
        self.a = args
        self.procs = procs
        self.work = args.workdir
        self.run_id = uuid.uuid4().hex[:12]
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.api_key = "bench-" + uuid.uuid4().hex
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "TZ": "UTC", "BENCH_TOKEN": self.token, "BENCH_DIDWW_KEY": self.api_key}
        rng = random.Random(20241125)
        self.trunks = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10)]
        self.dids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(300)]
        self.sim = None
        self.sim_port = None
        self.pg = None
        if args.store == "pg":
            u = urllib.parse.urlsplit(args.pg_url)
            if u.scheme != "postgresql" or not u.hostname or not u.port or not u.username:
                raise BenchError("--pg-url must look like postgresql://USER@HOST:PORT/DB")
            with open(args.pg_passfile) as f:
                pw = f.read().strip()
            self.pg = {"host": u.hostname, "port": u.port, "user": u.username,
                       "env": dict(self.env, PGPASSWORD=pw, PGCONNECT_TIMEOUT="5",
                                   PGOPTIONS="-c statement_timeout=30000")}
            del self.pg["env"]["BENCH_TOKEN"], self.pg["env"]["BENCH_DIDWW_KEY"]

    # ---- PostgreSQL (--store pg)
    def psql(self, db, sql):
        argv = [self.a.psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.pg["host"],
                "-p", str(self.pg["port"]), "-U", self.pg["user"], "-d", db, "-c", sql]
        try:
            r = subprocess.run(argv, env=self.pg["env"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=PSQL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BenchError("psql on %s did not finish within %.0f s" % (db, PSQL_TIMEOUT_S))
        if r.returncode != 0:
            raise BenchError("psql on %s failed: %s" % (db, r.stderr.strip()[-500:]))
        return r.stdout

    def new_db(self, name):
        """A fresh store for one run: a SQLite path, or a new PostgreSQL database's name."""
        if self.pg is None:
            return os.path.join(self.work, name + ".db")
        db = "bench_" + name.replace("-", "_")
        self.psql("postgres", "DROP DATABASE IF EXISTS %s; " % db)
        self.psql("postgres", "CREATE DATABASE %s;" % db)
        return db

    def store_url(self, db):
        if self.pg is None:
            return {"url": "sqlite:" + db}
        return {"url": "postgresql://%s@%s:%d/%s" % (self.pg["user"], self.pg["host"],
                                                     self.pg["port"], db),
                "password": "file:" + self.a.pg_passfile}

    # ---- simulator
    def write_state(self):
        state = {
            "trunks": [{"id": t, "name": "bench trunk %d" % i} for i, t in enumerate(self.trunks)],
            "trunk_groups": [],
            "dids": [{"id": d, "number": "4930%07d" % i, "description": "bench DID %d" % i,
                      "capacity_limit": 1, "trunk": None, "trunk_group": None}
                     for i, d in enumerate(self.dids)],
        }
        path = os.path.join(self.work, "sim_state.json")
        with open(path, "w") as f:
            json.dump(state, f)
        return path

    def start_sim(self, latency_ms=None, state=None):
        state = state or self.write_state()
        lat = self.a.latency_ms if latency_ms is None else latency_ms
        argv = [self.a.sim, "--state", state, "--api-key-env", "BENCH_DIDWW_KEY",
                "--port", "0", "--latency-ms", str(lat),
                "--rate-limit", str(self.a.rate_limit),
                "--request-log", os.path.join(self.work, "sim_requests.jsonl")]
        self.sim = self.procs.start("didww-sim", argv, self.env, self.work, self.work)
        self.sim_port = self.sim.wait_port("stdout")

    def sim_reset(self):
        status, data = http_req(self.sim_port, "POST", "/__sim/reset")
        if status != 204:
            raise BenchError("POST /__sim/reset answered %d: %s" % (status, data[:200]))

    def sim_stats(self):
        return http_json(self.sim_port, "GET", "/__sim/stats")

    def sim_requests(self):
        return http_json(self.sim_port, "GET", "/__sim/requests")["requests"]

    def sim_dids(self):
        return {d["id"]: d for d in http_json(self.sim_port, "GET", "/__sim/state")["dids"]}

    # ---- hookline
    def config(self, name, db, with_key, skip_noop, instance=None, defaults=False):
        didww = {"base_url": "http://127.0.0.1:%d/v3" % self.sim_port,
                 "api_version": "2022-05-10", "rate_limit_per_s": self.a.rate_limit,
                 "timeout_ms": 15000}
        if with_key:
            didww["api_key"] = "env:BENCH_DIDWW_KEY"
        cfg = {
            "listen": {"host": "127.0.0.1", "port": 0},
            "store": self.store_url(db),
            "didww": didww,
            # defaults: the (d) runs leave every delivery.* setting at its default
            "delivery": {} if defaults else {"workers": self.a.workers, "skip_noop": skip_noop},
            "rules": {"script": self.a.rule},
            "sources": {"bench": {"verify": {"scheme": "token", "header": "Authorization",
                                             "prefix": "Bearer ", "secret": "env:BENCH_TOKEN"}}},
            "log": {"level": "info"},
        }
        if instance:
            cfg["instance"] = {"id": instance}
        path = os.path.join(self.work, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        return path

    def start_hookline(self, name, cfg):
        p = self.procs.start(name, [self.a.hookline, "serve", "-c", cfg], self.env, self.work,
                             self.work)
        return p, p.wait_port("stderr")

    def stop_hookline(self, p):
        rc = self.procs.stop(p)
        if rc != 0:
            raise BenchError("%s exited %s after SIGTERM: %s" % (p.name, rc,
                                                                 p.stderr_text()[-2000:]))
        bad = [ln for ln in p.stderr_text().splitlines()
               if '"level":"error"' in ln or '"level":"warn"' in ln]
        # Expected warnings: no api_key while queueing, the base_url override, literal config.
        bad = [ln for ln in bad if "api_key" not in ln]
        if bad:
            log("  %s warned/erred (first 5):" % p.name)
            for ln in bad[:5]:
                log("    " + ln[:400])

    def body(self, **kw):
        with self.seq_lock:
            self.seq += 1
            n = self.seq
        kw.update({"n": n, "run": self.run_id})
        return json.dumps(kw, separators=(",", ":")).encode()

    def post(self, port, payload, conn=None):
        status, data = http_req(port, "POST", "/hooks/bench", payload,
                                {"Content-Type": "application/json",
                                 "Authorization": "Bearer " + self.token}, conn)
        if status != 202:
            raise BenchError("webhook answered %d: %s" % (status, data[:300]))
        ans = json.loads(data)
        if ans.get("status") != "accepted" or ans.get("jobs") != 1:
            raise BenchError("webhook not planned as one job: %s" % data[:300])
        return ans

    def post_streams(self, port, streams):
        """Posts several ordered lists of bodies, one thread (and connection) each."""
        errors = []

        def run(items):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
            try:
                for b in items:
                    self.post(port, b, conn)
            except Exception as exc:  # reported after the join
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=run, args=(s,)) for s in streams if s]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            if t.is_alive():
                raise BenchError("posting webhooks took over 120 s")
        if errors:
            raise BenchError("posting webhooks: %s" % errors[0])

    def job_states(self, db):
        if self.pg is not None:
            out = self.psql(db, "SELECT state, count(*) FROM jobs GROUP BY state")
            return {st: int(n) for st, n in (ln.split("|") for ln in out.split())}
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
        try:
            return dict(c.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        finally:
            c.close()

    def queue_depth(self, port):
        status, data = http_req(port, "GET", "/metrics")
        if status != 200:
            raise BenchError("GET /metrics answered %d" % status)
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "hookline_queue_depth":
                return float(parts[1])
        raise BenchError("no hookline_queue_depth in /metrics")

    def backlog(self, name, streams, skip_noop, njobs, timeout_s, instances=1, defaults=False):
        """Queues the streams' webhooks with delivery off, then delivers them with
        `instances` hooklines on the store (several: PostgreSQL, instance.id bench-N);
        defaults: every delivery.* setting left at its default (the (d) runs).
        Returns (seconds from the restart to an empty queue, job states, CPU cores the
        delivering hooklines used meanwhile)."""
        db = self.new_db(name)
        p, port = self.start_hookline(name + "-queue", self.config(name + "-queue", db, False,
                                                                    skip_noop, defaults=defaults))
        self.post_streams(port, streams)
        self.stop_hookline(p)
        states = self.job_states(db)
        if states != {"pending": njobs}:
            raise BenchError("%s: expected %d pending jobs before delivery, found %s" % (
                name, njobs, states))
        self.sim_reset()
        t0 = time.monotonic()
        ps = []
        for i in range(instances):
            n = name + "-deliver" + ("-%d" % i if instances > 1 else "")
            ps.append(self.start_hookline(n, self.config(
                n, db, True, skip_noop, "bench-%d" % i if instances > 1 else None, defaults)))
        port = ps[0][1]
        deadline = t0 + timeout_s
        drained = None
        while time.monotonic() < deadline:
            if self.queue_depth(port) == 0:
                drained = time.monotonic() - t0
                break
            for p, _ in ps:
                if p.p.poll() is not None:
                    raise BenchError("%s exited during delivery: %s" % (
                        p.name, p.stderr_text()[-2000:]))
            time.sleep(0.1)
        if drained is None:
            raise BenchError("%s: the queue did not drain within %.0f s (states %s)" % (
                name, timeout_s, self.job_states(db)))
        # from their start: the drain is nearly all of it
        cores = sum(proc_cpu_s(p.p.pid) for p, _ in ps) / drained
        time.sleep(0.3)  # the last answers' log lines
        for p, _ in ps:
            self.stop_hookline(p)
        return drained, self.job_states(db), cores

    def live(self, name, streams, skip_noop, timeout_s):
        """Posts the streams to a delivering hookline; waits for an empty queue."""
        db = self.new_db(name)
        self.sim_reset()
        p, port = self.start_hookline(name, self.config(name, db, True, skip_noop))
        t0 = time.monotonic()
        self.post_streams(port, streams)
        deadline = t0 + timeout_s
        drained = None
        while time.monotonic() < deadline:
            if self.queue_depth(port) == 0:
                drained = time.monotonic() - t0
                break
            time.sleep(0.1)
        if drained is None:
            raise BenchError("%s: the queue did not drain within %.0f s (states %s)" % (
                name, timeout_s, self.job_states(db)))
        time.sleep(0.3)
        self.stop_hookline(p)
        return drained, self.job_states(db)

    # ---- (a)
    def run_a(self, skip_noop, instances=1):
        name = "a%s-skip%s" % ("-x%d" % instances if instances > 1 else "",
                               "1" if skip_noop else "0")
        nd = len(self.dids)
        plan = {}  # did -> (trunk, capacity)
        streams = [[] for _ in range(8)]
        for i, d in enumerate(self.dids):
            trunk, cap = self.trunks[i % len(self.trunks)], 2 + i
            plan[d] = (trunk, cap)
            # route first, then update: different fields, so neither supersedes the other
            streams[i % 8].append(self.body(op="route", did=d, trunk=trunk))
            streams[i % 8].append(self.body(op="update", did=d, capacity_limit=cap))
        njobs = 2 * nd
        per_job = 2 if skip_noop else 1
        drained, states, cores = self.backlog(
            name, streams, skip_noop, njobs, timeout_s=njobs * per_job / self.a.rate_limit * 2 + 30,
            instances=instances)
        reqs = self.sim_requests()
        stats = self.sim_stats()
        if states != {"done": njobs}:
            raise BenchError("(a) job states after delivery: %s (expected all %d done)" % (
                states, njobs))
        sim = self.sim_dids()
        wrong = [d for d, (t, c) in plan.items()
                 if sim[d].get("trunk") != t or sim[d].get("capacity_limit") != c]
        if wrong:
            raise BenchError("(a) %d DIDs do not end as planned, e.g. %s: %s" % (
                len(wrong), wrong[0], sim[wrong[0]]))
        ts = sorted(r["t"] for r in reqs)
        n = len(ts)
        lim = self.a.rate_limit
        if n <= lim + 1:
            raise BenchError("(a) only %d requests reached the simulator" % n)
        # Sustained rate: from the lim-th arrival to the last. The sliding window starts
        # empty, so the first lim requests may arrive at once; counting them too
        # (n / (last - first)) would overstate the rate by about lim / duration.
        rate = (n - lim) / ((ts[-1] - ts[lim - 1]) / 1000.0)
        naive = n / ((ts[-1] - ts[0]) / 1000.0)
        by_method = {}
        for r in reqs:
            by_method[r["method"]] = by_method.get(r["method"], 0) + 1
        return {
            "instances": instances,
            "skip_noop": skip_noop, "jobs": njobs, "requests": n, "by_method": by_method,
            "rate": rate, "naive_rate": naive, "span_s": (ts[-1] - ts[0]) / 1000.0,
            "ratio": rate / lim, "drain_s": drained, "cores": cores,
            "n429": int(stats["responses_by_status"].get("429", 0)),
            "rate_limited": int(stats.get("rate_limited", 0)),
            "max_per_s": stats.get("max_requests_per_second"),
            "statuses": stats["responses_by_status"], "requests_total": stats["requests_total"],
        }

    # ---- (d)
    def run_d(self, latency_ms, by):
        """A backlog at latency_ms of simulator latency, default delivery settings: 400
        DIDs named by id (50 already on the trunk their job sets: no-ops) or 200 named by
        number. Jobs per second (the jobs over first request arrival to last answer),
        requests per job, 429s, PATCHes of DIDs already in place."""
        name = "d-%s-%dms" % (by, latency_ms)
        rng = random.Random(17)
        n = 400 if by == "id" else 200
        dids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]
        in_place = set(dids[:50]) if by == "id" else set()
        trunk = self.trunks[0]
        state = {
            "trunks": [{"id": t, "name": "bench trunk %d" % i} for i, t in enumerate(self.trunks)],
            "trunk_groups": [],
            "dids": [{"id": d, "number": "4940%07d" % i, "description": "bench DID %d" % i,
                      "capacity_limit": 1, "trunk": trunk if d in in_place else None,
                      "trunk_group": None} for i, d in enumerate(dids)],
        }
        path = os.path.join(self.work, "sim_state_%s.json" % name)
        with open(path, "w") as f:
            json.dump(state, f)
        if self.sim is not None:
            self.procs.stop(self.sim)
        self.start_sim(latency_ms, path)
        streams = [[] for _ in range(8)]
        for i, d in enumerate(dids):
            if by == "id":
                streams[i % 8].append(self.body(op="route", did=d, trunk=trunk))
            else:
                streams[i % 8].append(self.body(op="route_number", number="4940%07d" % i,
                                                trunk=trunk))
        drained, states, _ = self.backlog(name, streams, True, n,
                                          timeout_s=n * 3 / self.a.rate_limit + 60,
                                          defaults=True)
        reqs = self.sim_requests()
        stats = self.sim_stats()
        if states != {"done": n}:
            raise BenchError("(d) %s: job states after delivery: %s (expected all %d done)" % (
                name, states, n))
        sim = self.sim_dids()
        wrong = [d for d in dids if sim[d].get("trunk") != trunk]
        if wrong:
            raise BenchError("(d) %d DIDs do not end as planned, e.g. %s" % (len(wrong),
                                                                             wrong[0]))
        first = min(r["t"] for r in reqs)
        last = max(r["t"] + r["duration_ms"] for r in reqs)
        by_method = {}
        for r in reqs:
            by_method[r["method"]] = by_method.get(r["method"], 0) + 1
        patched_in_place = sum(1 for r in reqs if r["method"] == "PATCH"
                               and r["path"].split("?")[0].rsplit("/", 1)[-1] in in_place)
        jps = n / ((last - first) / 1000.0)
        ts = sorted(r["t"] for r in reqs)
        gaps = sorted(((b - a), round((a - first) / 1000.0, 2)) for a, b in zip(ts, ts[1:]))[-3:]
        per_s = [0] * (int((last - first) / 1000.0) + 1)
        for r in reqs:
            per_s[int((r["t"] - first) / 1000.0)] += 1
        return {"name": name, "by": by, "latency_ms": latency_ms, "jobs": n,
                "requests": len(reqs), "by_method": by_method, "per_job": len(reqs) / n,
                "jobs_per_s": jps, "ratio": jps / self.a.rate_limit, "drain_s": drained,
                "n429": int(stats["responses_by_status"].get("429", 0)),
                "patched_in_place": patched_in_place, "per_s": per_s, "gaps": gaps,
                "max_per_s": stats.get("max_requests_per_second")}

    # ---- (b)
    def run_b(self, skip_noop, live=False):
        """live: post the same updates while delivery runs (not queued beforehand)."""
        name = "b%s-skip%s" % ("-live" if live else "", "1" if skip_noop else "0")
        dids = self.dids[:10]
        per = 100
        streams, last = [], {}
        for k, d in enumerate(dids):
            s = []
            for j in range(per):
                trunk = self.trunks[(k + j) % len(self.trunks)]
                s.append(self.body(op="route", did=d, trunk=trunk))
                last[d] = trunk
            streams.append(s)  # one thread per DID: its updates are queued in order
        njobs = len(dids) * per
        if live:
            drained, states = self.live(name, streams, skip_noop, timeout_s=60)
        else:
            drained, states, _ = self.backlog(name, streams, skip_noop, njobs, timeout_s=60)
        reqs = self.sim_requests()
        stats = self.sim_stats()
        sim = self.sim_dids()
        wrong = [d for d in dids if sim[d].get("trunk") != last[d]]
        if wrong:
            raise BenchError("(b) DID %s ends on trunk %s, the last update said %s" % (
                wrong[0], sim[wrong[0]].get("trunk"), last[wrong[0]]))
        if states.get("dead") or states.get("pending") or states.get("running"):
            raise BenchError("(b) job states after delivery: %s" % states)
        by_method = {}
        for r in reqs:
            by_method[r["method"]] = by_method.get(r["method"], 0) + 1
        return {"skip_noop": skip_noop, "jobs": njobs, "requests": len(reqs),
                "by_method": by_method, "per_job": len(reqs) / njobs, "states": states,
                "drain_s": drained, "n429": int(stats["responses_by_status"].get("429", 0))}

    # ---- (c)
    def run_c(self, skip_noop):
        name = "c-skip%s" % ("1" if skip_noop else "0")
        db = self.new_db(name)
        p, port = self.start_hookline(name, self.config(name, db, True, skip_noop))
        n = self.a.idle_n
        # Spacing keeps hookline's own limiter out of the way: at most
        # ceil(1020 / gap) * requests-per-webhook requests in any 1.02 s window.
        per = 2 if skip_noop else 1
        gap = max(0.06, per * 1.5 / self.a.rate_limit)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        deltas, gets, get_to_patch = [], [], []
        try:
            # warm-up: first connections, the Lua state, SQLite pages; not measured
            for i in range(5):
                self.sim_reset()
                self.post(port, self.body(op="route", did=self.dids[-1 - i],
                                          trunk=self.trunks[0]), conn)
                self.wait_patch(self.dids[-1 - i])
                time.sleep(gap)
            for i in range(n):
                d = self.dids[i % len(self.dids)]
                self.sim_reset()  # state back to the file: the route is a change again
                payload = self.body(op="route", did=d, trunk=self.trunks[i % len(self.trunks)])
                next_at = time.monotonic() + gap
                self.post(port, payload, conn)
                t202 = time.time() * 1000.0
                reqs = self.wait_patch(d)
                patch = [r for r in reqs if r["method"] == "PATCH"][0]
                deltas.append(patch["t"] - t202)
                get = [r for r in reqs if r["method"] == "GET"]
                if skip_noop:
                    if not get:
                        raise BenchError("(c) skip_noop true but no GET before the PATCH")
                    gets.append(get[0]["t"] - t202)
                    get_to_patch.append(patch["t"] - get[0]["t"])
                bad = [r for r in reqs if r.get("status") != 200]
                if bad:
                    raise BenchError("(c) the simulator answered %s" % bad[0].get("status"))
                rest = next_at - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
        finally:
            conn.close()
        self.stop_hookline(p)
        states = self.job_states(db)
        if states != {"done": n + 5}:
            raise BenchError("(c) job states: %s" % states)
        return {"skip_noop": skip_noop, "n": n, "deltas": deltas, "gets": gets,
                "get_to_patch": get_to_patch, "gap_s": gap}

    def wait_patch(self, did):
        """Polls the simulator's request list until the PATCH of did is logged (the log
        line is written after the answer; its "t" is the arrival)."""
        deadline = time.monotonic() + 5.0
        time.sleep(0.015)
        while time.monotonic() < deadline:
            reqs = self.sim_requests()
            if any(r["method"] == "PATCH" and r["path"].startswith("/v3/dids/" + did)
                   for r in reqs):
                return reqs
            time.sleep(0.003)
        raise BenchError("(c) no PATCH of %s reached the simulator within 5 s" % did)


def proc_cpu_s(pid):
    """CPU seconds (user + system) a live process has used so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# ---------------------------------------------------------------- report

def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hookline", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--rule", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--rate-limit", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--idle-n", type=int, default=200)
    ap.add_argument("--a-skip-noop", choices=["false", "true", "both"], default="false")
    ap.add_argument("--store", choices=["sqlite", "pg"], default="sqlite")
    ap.add_argument("--pg-url", help="postgresql://USER@127.0.0.1:PORT/DB of a superuser")
    ap.add_argument("--pg-passfile", help="file holding that user's password")
    ap.add_argument("--psql", default="psql")
    ap.add_argument("--instances", type=int, default=1,
                    help="several: (a) only, delivered by that many instances on one "
                         "PostgreSQL database sharing the rate budget, beside a one-instance "
                         "run of the same backlog")
    ap.add_argument("--scenarios", default="abcd",
                    help="which of (a) (b) (c) (d) to run, e.g. d")
    ap.add_argument("--d-latencies", default="250,20",
                    help="simulator latencies (ms) of the (d) runs")
    a = ap.parse_args()
    if a.store == "pg" and not (a.pg_url and a.pg_passfile):
        ap.error("--store pg needs --pg-url and --pg-passfile")
    if a.instances > 1 and a.store != "pg":
        ap.error("--instances > 1 needs --store pg (several instances share PostgreSQL)")
    if a.pg_passfile:
        a.pg_passfile = os.path.abspath(a.pg_passfile)
    for k in ("hookline", "sim", "rule", "workdir"):  # the children run in workdir
        setattr(a, k, os.path.abspath(getattr(a, k)))

    def on_term(signum, frame):
        raise SystemExit(143)  # unwinds through the finally below: children stopped

    signal.signal(signal.SIGTERM, on_term)
    # delivery.sh starts this in the background, where SIGINT arrives ignored: take it
    # back (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lat = a.latency_ms
    procs = Procs()
    try:
        b = Bench(a, procs)
        b.start_sim()
        log("delivery benchmark: didww-sim --latency-ms %d --rate-limit %d, "
            "didww.rate_limit_per_s %d, delivery.workers %d, %d CPUs, 127.0.0.1 only%s" % (
                lat, a.rate_limit, a.rate_limit, a.workers, os.cpu_count() or 0,
                ", store PostgreSQL" if a.store == "pg" else ""))

        a_runs = []
        counts = [1, a.instances] if a.instances > 1 else [1]
        for sn, ni in [(sn, ni) for sn in {"false": [False], "true": [True],
                                            "both": [False, True]}[a.a_skip_noop]
                       for ni in counts]:
            if "a" not in a.scenarios:
                break
            log("(a) backlog 600 jobs / 300 DIDs, skip_noop %s, %d instance%s ..." % (
                str(sn).lower(), ni, "s" if ni > 1 else ""))
            r = b.run_a(sn, ni)
            a_runs.append(r)
            log("    %d requests (%s) in %.2f s first to last, queue empty %.2f s after the "
                "restart; sustained %.2f req/s (first %d excluded), all-in %.2f req/s; "
                "sim: max %s in any 1 s window, statuses %s; hookline used %.2f cores" % (
                    r["requests"], ", ".join("%s %d" % kv for kv in sorted(r["by_method"].items())),
                    r["span_s"], r["drain_s"], r["rate"], a.rate_limit, r["naive_rate"],
                    r["max_per_s"], json.dumps(r["statuses"], sort_keys=True), r["cores"]))

        b_runs = []
        c_runs = []
        for sn in (True, False) if "b" in a.scenarios and a.instances == 1 else ():
            log("(b) 1000 updates / 10 DIDs, skip_noop %s ..." % str(sn).lower())
            r = b.run_b(sn)
            b_runs.append(r)
            log("    %d requests (%s) for %d jobs = %.3f per job; jobs %s; queue empty %.2f s "
                "after the restart" % (
                    r["requests"], ", ".join("%s %d" % kv for kv in sorted(r["by_method"].items())),
                    r["jobs"], r["per_job"], json.dumps(r["states"], sort_keys=True),
                    r["drain_s"]))
        for sn in (True, False) if "b" in a.scenarios and a.instances == 1 else ():
            # For information (no target): the same updates posted while delivery runs,
            # so the first update of each DID is claimed before the others arrive.
            log("(b) for information: the same 1000 updates posted while delivery runs, "
                "skip_noop %s ..." % str(sn).lower())
            r = b.run_b(sn, live=True)
            log("    %d requests (%s) for %d jobs = %.3f per job; jobs %s; queue empty %.2f s "
                "after the first post" % (
                    r["requests"], ", ".join("%s %d" % kv for kv in sorted(r["by_method"].items())),
                    r["jobs"], r["per_job"], json.dumps(r["states"], sort_keys=True),
                    r["drain_s"]))

        for sn in (True, False) if "c" in a.scenarios and a.instances == 1 else ():
            log("(c) idle latency, %d webhooks one at a time, skip_noop %s ..." % (
                a.idle_n, str(sn).lower()))
            r = b.run_c(sn)
            c_runs.append(r)
            d = r["deltas"]
            line = "    202 -> PATCH arrival: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms" % (
                pct(d, 50), pct(d, 90), pct(d, 99), max(d))
            if sn:
                line += ("; 202 -> GET arrival: p50 %.2f  p99 %.2f ms; GET -> PATCH arrival: "
                         "p50 %.2f  p99 %.2f ms (includes the GET's %d ms)" % (
                             pct(r["gets"], 50), pct(r["gets"], 99), pct(r["get_to_patch"], 50),
                             pct(r["get_to_patch"], 99), lat))
            log(line + "; one webhook every %.0f ms" % (r["gap_s"] * 1000))

        # (d) last: it restarts the simulator with its own state and latency.
        d_runs = []
        for dl in ([int(x) for x in a.d_latencies.split(",")] if "d" in a.scenarios and a.instances == 1 else []):
            for by in ("id", "number"):
                log("(d) backlog of %s DIDs named by %s at %d ms, default settings ..." % (
                    "400 (50 in place)" if by == "id" else "200", by, dl))
                r = b.run_d(dl, by)
                d_runs.append(r)
                log("    %d requests (%s) for %d jobs = %.3f per job; %.2f jobs/s; queue empty "
                    "%.2f s after the restart; sim max %s in any 1 s window" % (
                        r["requests"],
                        ", ".join("%s %d" % kv for kv in sorted(r["by_method"].items())),
                        r["jobs"], r["per_job"], r["jobs_per_s"], r["drain_s"], r["max_per_s"]))
                log("    requests arriving per second from the first: %s; longest gaps "
                    "between arrivals (ms, at s): %s" % (r["per_s"], ", ".join(
                        "%.0f at %.1f" % g for g in reversed(r["gaps"]))))

        # ---------------------------------------------------------- summary
        def below(ok):
            return "" if ok else ": BELOW TARGET"

        log("")
        log("==== delivery benchmark summary%s ====" % (
            " (PostgreSQL store)" if a.store == "pg" else ""))
        for r in a_runs:
            ok = r["ratio"] >= 0.95 and r["n429"] == 0
            log("(a) backlog 600 jobs / 300 DIDs%s%s: %.1f req/s achieved = %.2f of limit %d "
                "(target >= 0.95), 429s: %d, max %s in any 1 s window%s" % (
                    "" if len(a_runs) == 1 and not r["skip_noop"] else
                    " (skip_noop %s)" % str(r["skip_noop"]).lower(),
                    ", %d instances sharing the budget" % r["instances"]
                    if r["instances"] > 1 else "",
                    r["rate"], r["ratio"], a.rate_limit, r["n429"], r["max_per_s"], below(ok)))
        for r in b_runs:
            ok = r["per_job"] <= 0.02
            parts = ", ".join("%d %s" % (v, k) for k, v in sorted(r["by_method"].items()))
            log("(b) 1000 updates / 10 DIDs (skip_noop %s): %d requests (%s) = %.3f per job "
                "(target <= 0.02)%s" % (str(r["skip_noop"]).lower(), r["requests"], parts,
                                        r["per_job"], below(ok)))
        for r in d_runs:
            ok = (r["latency_ms"] != 250 or (r["ratio"] >= 0.95 and r["per_job"] <= 1.05)) \
                and r["n429"] == 0 and r["patched_in_place"] == 0
            log("(d) %d DIDs by %s at %d ms: %.2f jobs/s = %.2f of the budget %d (target >= 0.95 "
                "at 250 ms), %.3f requests per job (target <= 1.05 at 250 ms), 429s: %d, PATCHes "
                "of DIDs already in place: %d%s" % (
                    r["jobs"], r["by"], r["latency_ms"], r["jobs_per_s"], r["ratio"],
                    a.rate_limit, r["per_job"], r["n429"], r["patched_in_place"], below(ok)))
        for r in c_runs:
            d = r["deltas"]
            if r["skip_noop"]:
                p50, p99 = pct(d, 50) - lat, pct(d, 99) - lat
                log("(c) idle latency 202 -> PATCH at sim (skip_noop true, GET first): p50 %.1f "
                    "ms, p99 %.1f ms beyond the sim's %d ms (target <= 5)%s" % (
                        p50, p99, lat, below(p99 <= 5)))
            else:
                p50, p99 = pct(d, 50), pct(d, 99)
                log("(c) idle latency 202 -> PATCH at sim (skip_noop false, no GET): p50 %.1f "
                    "ms, p99 %.1f ms, no sim latency on this path (target <= 5)%s" % (
                        p50, p99, below(p99 <= 5)))
        return 0
    except BenchError as exc:
        print("delivery_bench: %s" % exc, file=sys.stderr, flush=True)
        return 1
    finally:
        # A second signal must not cut the stopping short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
