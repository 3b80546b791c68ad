"""Shared helpers for hookline's integration tests (standard library only).

A HooklineServer writes a config JSON into a fresh temp dir, starts
`$HOOKLINE_BIN serve -c CONFIG` on 127.0.0.1 with port 0, learns the bound port
from the "listening" log line on stderr, and talks to it over http.client. All
waits are bounded; cleanup() always kills the process and removes the temp dir.

Store backends: HOOKLINE_TEST_STORE=sqlite (the default) or pg. On pg every
HooklineServer whose test sets no store.url gets a database of its own (CREATE
DATABASE hl_<random> on the server scripts/test.sh started: HOOKLINE_TEST_PG_URL,
password in the file HOOKLINE_TEST_PG_PASSFILE), configured as store.url plus
store.password "file:..." and dropped in cleanup(). Without those variables a pg run
fails at import: a PostgreSQL run that silently skips would hide failures.
Tests read and edit the database through backend-neutral helpers:
  srv.query(sql, params)   rows as a list of tuples (read only)
  srv.execute(sql, params) the same, for statements that write
  srv.db(write=False)      a connection-like object: .execute(sql, params).fetchall()
  srv.count_events(source, event_id=None)
SQL uses `?` placeholders and must be portable (the PostgreSQL schema has the SQLite
one's table and column names). On pg values come back typed by their column:
integers as int, booleans as bool, bytea as bytes, real/numeric as float, NULL as
None, everything else as str. A test that cannot run on PostgreSQL says why with
@sqlite_only("why").
"""

import base64
import hashlib
import hmac
import http.client
import glob
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

HOOKLINE_BIN = os.environ.get("HOOKLINE_BIN", "/work/main/build/hookline")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0


STORE_BACKEND = os.environ.get("HOOKLINE_TEST_STORE") or "sqlite"
if STORE_BACKEND not in ("sqlite", "pg"):
    raise RuntimeError("HOOKLINE_TEST_STORE must be sqlite or pg, not %r" % STORE_BACKEND)
PG_URL = os.environ.get("HOOKLINE_TEST_PG_URL")
PG_PASSFILE = os.environ.get("HOOKLINE_TEST_PG_PASSFILE")
if STORE_BACKEND == "pg" and not (PG_URL and PG_PASSFILE):
    raise RuntimeError("HOOKLINE_TEST_STORE=pg needs HOOKLINE_TEST_PG_URL and "
                       "HOOKLINE_TEST_PG_PASSFILE: run scripts/test.sh (it starts PostgreSQL), "
                       "or `eval \"$(scripts/pg.sh start DIR)\"` first")
PSQL_TIMEOUT_S = 30.0


def sqlite_only(why):
    """Skips a test (method or class) on PostgreSQL runs, saying why it is SQLite's alone."""
    return unittest.skipIf(STORE_BACKEND != "sqlite", "SQLite only: " + why)


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


# ---------- PostgreSQL (HOOKLINE_TEST_STORE=pg) ----------

def _psql_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return found[-1] if found else (shutil.which("psql") or "psql")


def _pg_password():
    with open(PG_PASSFILE, encoding="utf-8") as f:
        return f.readline().strip()


def _pg_url(dbname):
    """HOOKLINE_TEST_PG_URL with its database replaced; never holds a password."""
    u = urllib.parse.urlsplit(PG_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, ""))


def pg_psql(dbname, args, stdin=None):
    """Runs psql on DBNAME (the password in its environment only, never on a command
    line or in output); returns stdout as bytes, raises AssertionError with psql's own
    message on failure."""
    u = urllib.parse.urlsplit(PG_URL)
    env = base_env({"PGPASSWORD": _pg_password(), "PGCONNECT_TIMEOUT": "10",
                    "PGCLIENTENCODING": "UTF8", "PGAPPNAME": "hookline-tests"})
    cmd = [_psql_bin(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", u.hostname,
           "-p", str(u.port), "-U", u.username, "-d", dbname] + list(args)
    r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=PSQL_TIMEOUT_S)
    if r.returncode != 0:
        raise AssertionError("psql on %s failed (%d): %s"
                             % (dbname, r.returncode, r.stderr.decode("utf-8", "replace")))
    return r.stdout


def store_secrets():
    """The store's secrets a test may sweep outputs for: on pg the database password."""
    return [_pg_password()] if STORE_BACKEND == "pg" else []


def pg_create_database():
    """A new empty database on the test server; returns its name."""
    name = "hl_" + secrets.token_hex(8)
    pg_psql(urllib.parse.urlsplit(PG_URL).path.lstrip("/") or "postgres",
            ["-c", "CREATE DATABASE %s" % name])
    return name


def pg_drop_database(name):
    pg_psql(urllib.parse.urlsplit(PG_URL).path.lstrip("/") or "postgres",
            ["-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name])


def sql_literal(value):
    """A Python value as a PostgreSQL literal (standard_conforming_strings, the default)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "'\\x%s'::bytea" % bytes(value).hex()
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("PostgreSQL text cannot hold NUL")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError("no SQL literal for %r" % type(value))


def bind_params(sql, params):
    """Replaces each `?` outside quotes with the literal of the next parameter."""
    params = list(params)
    out, quote, used = [], None, 0
    for ch in sql:
        if quote:
            quote = None if ch == quote else quote
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            if used >= len(params):
                raise ValueError("more ? than parameters in %r" % sql)
            out.append(sql_literal(params[used]))
            used += 1
        else:
            out.append(ch)
    if used != len(params):
        raise ValueError("%d parameters for %d ? in %r" % (len(params), used, sql))
    return "".join(out)


_COPY_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)")
_COPY_CHARS = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _copy_unescape(field):
    def one(m):
        e = m.group(1)
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0].isdigit():
            return chr(int(e, 8))
        return _COPY_CHARS.get(e, e)
    return _COPY_ESCAPE.sub(one, field)


def _pg_converter(type_name):
    t = type_name.lower()
    if t in ("smallint", "integer", "bigint"):
        return int
    if t == "boolean":
        return lambda v: v == "t"
    if t == "bytea":
        return lambda v: bytes.fromhex(v[2:])
    if t in ("real", "double precision") or t.startswith("numeric"):
        return float
    return str


def pg_query(dbname, sql, params=()):
    """Runs one statement on DBNAME; returns its rows as tuples of typed Python values
    ([] for a statement without a result). Column types come from psql's \\gdesc and the
    rows from COPY (...) TO STDOUT, whose text format keeps tabs and newlines intact."""
    text = bind_params(sql, params).strip().rstrip(";")
    desc = pg_psql(dbname, ["-A", "-t", "-F", "\t", "-f", "-"],
                   stdin=(text + " \\gdesc\n").encode()).decode("utf-8")
    columns = [line.split("\t") for line in desc.splitlines() if "\t" in line]
    if not columns:  # UPDATE, INSERT, DELETE...: no rows to read
        pg_psql(dbname, ["-f", "-"], stdin=(text + ";\n").encode())
        return []
    convert = [_pg_converter(c[-1]) for c in columns]
    out = pg_psql(dbname, ["-f", "-"],
                  stdin=("COPY (%s) TO STDOUT;\n" % text).encode()).decode("utf-8")
    rows = []
    for line in out.split("\n")[:-1]:
        fields = line.split("\t")
        if len(fields) != len(convert):
            raise AssertionError("COPY row of %d fields for %d columns: %r"
                                 % (len(fields), len(convert), line))
        rows.append(tuple(None if f == "\\N" else conv(_copy_unescape(f))
                          for f, conv in zip(fields, convert)))
    return rows


class _Rows:
    def __init__(self, rows):
        self._rows = rows

    def fetchall(self):
        return list(self._rows)

    def fetchone(self):
        return self._rows[0] if self._rows else None


class PgConnection:
    """What the tests use of a sqlite3 connection, over psql: every statement is its
    own transaction (as sqlite3 with isolation_level=None)."""

    def __init__(self, dbname):
        self.dbname = dbname

    def execute(self, sql, params=()):
        return _Rows(pg_query(self.dbname, sql, params))

    def close(self):
        pass


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
        store = self.config.setdefault("store", {})
        self.pg_db = None        # the database this server owns on PostgreSQL runs
        if "url" not in store and STORE_BACKEND == "pg":
            self.pg_db = pg_create_database()
            store["url"] = _pg_url(self.pg_db)
            store["password"] = "file:" + PG_PASSFILE
        store.setdefault("url", "sqlite:" + db_name)
        self.env = dict(env or {})
        self.config_path = write_config(self.tmpdir, self.config)
        url = store["url"]
        self.db_path = None      # the SQLite file, on SQLite stores
        self.pg_dbname = None    # the PostgreSQL database, on PostgreSQL stores
        if url.startswith("sqlite:"):
            p = url[len("sqlite:"):]
            self.db_path = p if os.path.isabs(p) else os.path.join(self.tmpdir, p)
        else:
            assert url.startswith("postgresql://"), url
            self.pg_dbname = urllib.parse.urlsplit(url).path.lstrip("/")
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
            try:  # stderr closes a moment before the exit status is there to read
                rc = self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                rc = None
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
        if self.pg_db is not None and not os.environ.get("HOOKLINE_KEEP_TMP"):
            pg_drop_database(self.pg_db)
            self.pg_db = None
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

    def db(self, write=False):
        """A connection to the server's database: on SQLite a sqlite3 connection
        (read-only, or autocommit when write), on PostgreSQL a PgConnection. Either has
        .execute(sql, params).fetchall() and .close()."""
        if self.pg_dbname is not None:
            return PgConnection(self.pg_dbname)
        if write:
            return sqlite3.connect(self.db_path, isolation_level=None, timeout=10)
        return sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)

    def query(self, sql, params=(), write=False):
        """Rows of one portable statement (`?` placeholders) as a list of tuples."""
        conn = self.db(write)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def execute(self, sql, params=()):
        """query() for a statement that writes (tests that tamper with the store)."""
        return self.query(sql, params, write=True)

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
