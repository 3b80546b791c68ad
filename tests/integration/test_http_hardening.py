"""Hostile clients over raw loopback sockets: slow clients from one address must not
lock out another (per-address bound, head and body deadlines, on first and kept-alive
requests), ambiguous framing and NUL bytes are refused instead of being read one way or
truncated, every refusal the listener itself makes is problem JSON (never an HTML page),
and repeated log lines are rate-limited (a disconnect storm, a full disk).

The second address is 127.0.0.2: the client binds it as its source address, so the
server sees two peers on one loopback interface. Every loop is bounded in count and time.
"""
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from hookline_harness import make_tmpdir, sqlite_only, start_server

TOKEN = "hardening-token-5c1d0e9a7b"
HEAD_MS = 1500
BODY_MS = 2000
PER_ADDR = 20
MAX_CONN = 50


def connect(port, source="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, limit=1 << 20):
    """Reads until the server closes (or the socket's timeout passes)."""
    data = b""
    while len(data) < limit:
        try:
            part = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not part:
            break
        data += part
    return data


def read_response(s):
    """Reads exactly one HTTP response (Content-Length framed) from a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        part = s.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def parse(resp):
    """(status, headers dict with lower-case names, body bytes) of a raw response."""
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


def raw(port, data, source="127.0.0.1"):
    with connect(port, source) as s:
        s.sendall(data)
        return read_all(s)


class HardeningBase(unittest.TestCase):
    CONFIG = {
        "listen": {"max_connections": MAX_CONN, "max_connections_per_address": PER_ADDR,
                   "header_timeout_ms": HEAD_MS, "body_timeout_ms": BODY_MS},
        "sources": {"tok": {"verify": {"scheme": "token", "header": "Authorization",
                                       "prefix": "Bearer ", "secret": "env:HL_TOK"}},
                    "ids": {"verify": {"scheme": "token", "header": "Authorization",
                                       "prefix": "Bearer ", "secret": "env:HL_TOK"},
                            "event_id": "header:x-event-id"},
                    "ka": {"verify": {"scheme": "token", "header": "Authorization",
                                      "prefix": "Bearer ", "secret": "env:HL_TOK"}}},
    }

    @classmethod
    def setUpClass(cls):
        cls.srv = start_server(cls, cls.CONFIG, env={"HL_TOK": TOKEN})

    def assertProblem(self, resp, status):
        self.assertTrue(resp.startswith(b"HTTP/1.1 %d " % status), resp[:300])
        st, headers, body = parse(resp)
        self.assertEqual(headers.get("content-type"), "application/problem+json", resp[:300])
        doc = json.loads(body.decode())
        self.assertEqual(doc["status"], status)
        self.assertTrue(doc["type"].startswith("urn:hookline:problem:"), doc)
        self.assertTrue(doc["detail"], doc)
        self.assertNotIn(b"<html", body.lower())
        self.assertNotIn(TOKEN.encode(), resp)
        return doc

    def first_request_kept_alive(self, s):
        """A good webhook on s, answered 202 with the connection kept open (libmicrohttpd
        closes after its GET answers, so a POST opens the kept-alive cases)."""
        s.sendall(self.hook("/hooks/ka", body=b'{"kept":"alive","t":%f}' % time.time()))
        resp = read_response(s)
        self.assertTrue(resp.startswith(b"HTTP/1.1 202"), resp[:300])
        self.assertNotIn(b"connection: close", resp.lower())

    def hook(self, path="/hooks/tok", body=b'{"a":1}', extra=""):
        return ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer %s\r\n%sContent-Length: %d\r\n\r\n"
                % (path, TOKEN, extra, len(body))).encode() + body


class SlowClientTest(HardeningBase):
    def test_one_address_cannot_lock_out_another(self):
        """60 slow connections from one address (127.0.0.4): PER_ADDR are held, the rest
        are refused with 429 problem JSON at once; 127.0.0.2 is still answered; the held
        ones get 408 when the head deadline passes, and their address is answered again
        after."""
        socks, refused = [], 0
        try:
            for _ in range(60):
                # an address of its own: connections other tests of this class left
                # closing on 127.0.0.1 must not take one of its PER_ADDR places
                s = connect(self.srv.port, source="127.0.0.4")
                s.sendall(b"P")  # the start of a head that never completes
                socks.append(s)
            time.sleep(0.3)
            for s in socks:
                s.setblocking(False)
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                if data:
                    self.assertProblem(data, 429)
                    refused += 1
            self.assertEqual(refused, 60 - PER_ADDR)
            # A second peer address is served while the first one misbehaves.
            resp = raw(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                                      b"\r\n\r\n", source="127.0.0.2")
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp[:200])
            # Trickle a byte now and then: activity must not extend the head deadline.
            start = time.monotonic()
            held = [s for s in socks[:PER_ADDR]]
            answers = {}
            while len(answers) < len(held) and time.monotonic() - start < HEAD_MS / 1000 + 5:
                for i, s in enumerate(held):
                    if i in answers:
                        continue
                    try:  # read first: an answer already sent must not be lost
                        answers[i] = s.recv(65536)
                        continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        answers[i] = b""
                        continue
                    try:
                        s.send(b"O")
                    except OSError:
                        pass
                time.sleep(0.2)
            elapsed = time.monotonic() - start
            self.assertEqual(len(answers), len(held), "slow connections were never closed")
            self.assertLess(elapsed, HEAD_MS / 1000 + 4)
            for data in answers.values():
                self.assertProblem(data, 408)
        finally:
            for s in socks:
                s.close()
        time.sleep(0.3)
        resp = raw(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                                  b"\r\n\r\n", source="127.0.0.4")
        self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp[:200])
        metrics = self.srv.get("/metrics").body.decode()
        self.assertRegex(metrics, r"hookline_http_connections_refused_per_address_total [1-9]")
        self.assertRegex(metrics, r"hookline_http_header_timeouts_total [1-9]")

    def test_body_deadline(self):
        """A body trickled a byte at a time is cut off at body_timeout_ms with 408."""
        with connect(self.srv.port) as s:
            s.sendall(("POST /hooks/tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                       "\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{"
                       % TOKEN).encode())
            start = time.monotonic()
            s.setblocking(False)
            data = b""
            while time.monotonic() - start < BODY_MS / 1000 + 5:
                try:
                    s.send(b" ")
                except OSError:
                    pass
                try:
                    data = s.recv(65536)
                    break
                except BlockingIOError:
                    time.sleep(0.1)
                except OSError:
                    break
            elapsed = time.monotonic() - start
        self.assertGreater(elapsed, BODY_MS / 1000 - 0.2)
        self.assertLess(elapsed, BODY_MS / 1000 + 4)
        if data:  # answered (else closed by the sweep): either ends it
            self.assertProblem(data, 408)
        self.assertEqual(self.srv.count_events("tok"), 0)

    def test_kept_alive_connection_has_a_head_deadline_too(self):
        """After one good request, a next head trickled a byte at a time is cut off."""
        with connect(self.srv.port) as s:
            self.first_request_kept_alive(s)
            start = time.monotonic()
            closed = False
            while time.monotonic() - start < HEAD_MS / 1000 + 5:
                try:
                    s.send(b"G")
                    s.settimeout(0.2)
                    if s.recv(65536) == b"":
                        closed = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
            elapsed = time.monotonic() - start
        self.assertTrue(closed, "a trickling kept-alive connection was never closed")
        self.assertLess(elapsed, HEAD_MS / 1000 + 4)


class FramingAndNulTest(HardeningBase):
    def test_conflicting_content_length_400(self):
        req = (b"POST /hooks/tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 7\r\n"
               b"Content-Length: 2\r\n\r\n{\"a\":1}")
        doc = self.assertProblem(raw(self.srv.port, req), 400)
        self.assertIn("Content-Length", doc["detail"])
        req2 = req.replace(b"Content-Length: 7\r\nContent-Length: 2", b"Content-Length: 7, 2")
        self.assertProblem(raw(self.srv.port, req2), 400)
        self.assertEqual(self.srv.count_events("tok"), 0)

    def test_chunked_with_content_length_400(self):
        req = (b"POST /hooks/tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 7\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n")
        doc = self.assertProblem(raw(self.srv.port, req), 400)
        self.assertIn("Transfer-Encoding", doc["detail"])
        self.assertEqual(self.srv.count_events("tok"), 0)

    def test_same_content_length_twice_is_one(self):
        body = b'{"same":"twice"}'
        req = self.hook("/hooks/ka", body=body, extra="Content-Length: %d\r\n" % len(body))
        resp = raw(self.srv.port, req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        self.assertTrue(resp.startswith(b"HTTP/1.1 202"), resp[:300])

    def test_framing_refused_on_a_kept_alive_connection(self):
        with connect(self.srv.port) as s:
            self.first_request_kept_alive(s)
            s.sendall(b"POST /hooks/tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 7"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"b\":2}\r\n0\r\n\r\n")
            resp = read_all(s)
        self.assertProblem(resp, 400)
        st, headers, _ = parse(resp)
        self.assertEqual(headers.get("connection", "").lower(), "close")

    def test_nul_in_event_id_header_is_refused_not_truncated(self):
        ids = []
        for suffix in (b"A", b"B"):
            req = self.hook("/hooks/ids", body=b'{"n":"%s"}' % suffix,
                            extra="X-Event-Id: a\0%s\r\n" % suffix.decode())
            doc = self.assertProblem(raw(self.srv.port, req), 400)
            self.assertIn("NUL", doc["detail"])
            ids.append(doc)
        self.assertEqual(self.srv.count_events("ids"), 0)
        # The same ids without the NUL are two different events, both stored.
        for suffix in ("A", "B"):
            req = self.hook("/hooks/ids", body=b'{"n":1}', extra="X-Event-Id: a%s\r\n" % suffix)
            resp = raw(self.srv.port, req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n",
                                                  1))
            self.assertTrue(resp.startswith(b"HTTP/1.1 202"), resp[:300])
        self.assertEqual(self.srv.count_events("ids"), 2)

    def test_nul_in_path_and_token(self):
        resp = raw(self.srv.port, self.hook("/hooks/tok%00junk"))
        self.assertProblem(resp, 400)
        resp = raw(self.srv.port, self.hook("/hooks/tok").replace(
            TOKEN.encode(), TOKEN.encode() + b"\0junk"))
        self.assertProblem(resp, 400)
        with connect(self.srv.port) as s:  # a later request on a kept-alive connection
            self.first_request_kept_alive(s)
            s.sendall(self.hook("/hooks/tok%00junk", body=b'{"nul":"path"}'))
            self.assertProblem(read_all(s), 400)
        self.assertEqual(self.srv.count_events("tok"), 0)


class NoKeepAliveTest(HardeningBase):
    """listen.keep_alive false: every answer closes its connection, so every request is
    the first of its connection and the gate reads all of it byte for byte."""
    CONFIG = dict(HardeningBase.CONFIG,
                  listen=dict(HardeningBase.CONFIG["listen"], keep_alive=False))

    def test_every_answer_closes_the_connection(self):
        with connect(self.srv.port) as s:
            s.sendall(self.hook("/hooks/ka", body=b'{"closed":"after"}'))
            resp = read_all(s)  # returns only because the server closes
            self.assertTrue(resp.startswith(b"HTTP/1.1 202"), resp[:300])
            self.assertIn(b"connection: close", resp.lower())
            # a second request on it goes nowhere: the connection is gone
            try:
                s.sendall(self.hook("/hooks/ids", body=b'{"n":1}', extra="X-Event-Id: a\0B\r\n"))
                self.assertEqual(read_all(s), b"")
            except OSError:
                pass
        for path in ("/healthz", "/v1/jobs", "/nope"):
            resp = raw(self.srv.port, ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            self.assertIn(b"connection: close", resp.lower(), path)
        self.assertEqual(self.srv.count_events("ids"), 0)


class ProblemJsonEverywhereTest(HardeningBase):
    CASES = [
        (b"HELLO\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /healthz\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /healthz HTTP/1.1\r\n Folded: yes\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"POST /hooks/tok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ]

    def test_listener_refusals_are_problem_json(self):
        for req, status in self.CASES:
            with self.subTest(req=req[:40], status=status):
                self.assertProblem(raw(self.srv.port, req), status)

    def test_still_serving_after_all_that(self):
        self.test_listener_refusals_are_problem_json()
        self.assertEqual(self.srv.get("/healthz").status, 200)


class LogFloodTest(HardeningBase):
    def test_disconnect_and_refusal_storm_is_rate_limited(self):
        """300 clients that drop mid-body and 200 connections past the per-address bound:
        the log stays a few lines long instead of one line per client."""
        before = len(self.srv.stderr_lines)
        for _ in range(300):
            s = connect(self.srv.port)
            s.sendall(("POST /hooks/tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                       "\r\nAuthorization: Bearer %s\r\nContent-Length: 5000\r\n\r\n{\"a\":"
                       % TOKEN).encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # a reset, mid-body
        held, refused = [], 0
        try:
            for _ in range(200):
                s = connect(self.srv.port, source="127.0.0.3")
                s.sendall(b"G")
                held.append(s)
            time.sleep(0.5)
            for s in held:
                s.setblocking(False)
                try:
                    refused += bool(s.recv(65536))
                except BlockingIOError:
                    pass
        finally:
            for s in held:
                s.close()
        self.assertEqual(refused, 200 - PER_ADDR)
        time.sleep(0.5)
        lines = self.srv.stderr_lines[before:]
        self.assertLess(len(lines), 40, "\n".join(lines[:80]))
        self.assertTrue(any("refused" in line for line in lines), lines)
        self.assertEqual(self.srv.get("/healthz").status, 200)


@sqlite_only("fills a 3 MiB tmpfs holding the SQLite file; the PostgreSQL server's disk is "
             "not the test's to fill")
@unittest.skipUnless(os.geteuid() == 0, "mounting a tmpfs needs root (CI runs as root)")
class FullDiskTest(unittest.TestCase):
    def test_full_disk_answers_503_keeps_every_202_and_logs_little(self):
        tmp = make_tmpdir()
        disk = os.path.join(tmp, "disk")
        os.mkdir(disk)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", disk], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", disk])
        cfg = {"store": {"url": "sqlite:" + os.path.join(disk, "events.db")},
               "sources": {"tok": {"verify": {"scheme": "token", "header": "Authorization",
                                              "prefix": "Bearer ", "secret": "env:HL_TOK"}}}}
        srv = start_server(self, cfg, env={"HL_TOK": TOKEN}, tmpdir=tmp)
        accepted, unavailable, sent = [], 0, 0
        start = time.monotonic()
        filler = "x" * 20000
        while unavailable < 300 and sent < 3000 and time.monotonic() - start < 60:
            body = json.dumps({"n": sent, "pad": filler}).encode()
            r = srv.post("tok", body, {"Content-Type": "application/json",
                                       "Authorization": "Bearer " + TOKEN})
            sent += 1
            if r.status == 202:
                accepted.append(r.json()["event_id"])
            else:
                self.assertEqual(r.status, 503, r)
                self.assertTrue(r.headers.get("Retry-After"), r)
                self.assertEqual(r.headers.get("Content-Type"), "application/problem+json")
                unavailable += 1
        self.assertGreaterEqual(unavailable, 300, "the disk never filled")
        self.assertGreater(len(accepted), 10)
        self.assertEqual(srv.get("/healthz").status, 200)
        log_lines = srv.stderr_lines
        self.assertLess(len(log_lines), 60,
                        "%d log lines for %d 503s:\n%s" % (len(log_lines), unavailable,
                                                           "\n".join(log_lines[-40:])))
        srv.stop()
        # every event answered 202 is stored, once (sha256 ids of distinct bodies)
        stored = [r[0] for r in srv.query("SELECT event_id FROM events WHERE source='tok'")]
        self.assertEqual(len(stored), len(set(stored)))
        missing = set(accepted) - set(stored)
        self.assertEqual(missing, set(), "answered 202 but not stored")


if __name__ == "__main__":
    unittest.main()
