"""Integration tests for didww-sim, the DIDWW API v3 simulator (tools/didww_sim).

Each test class starts the real binary on 127.0.0.1, port 0, learns the port from the
{"msg":"listening","port":"N"} line on stdout, and talks to it over http.client.
The binary is $DIDWW_SIM_BIN, else didww-sim beside $HOOKLINE_BIN (how ctest runs
us), else /work/main/build/didww-sim. Standard library only; all waits are bounded.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
if os.environ.get("DIDWW_SIM_BIN"):
    SIM_BIN = os.environ["DIDWW_SIM_BIN"]
elif os.environ.get("HOOKLINE_BIN"):
    SIM_BIN = os.path.join(os.path.dirname(os.environ["HOOKLINE_BIN"]), "didww-sim")
else:
    SIM_BIN = "/work/main/build/didww-sim"
STATE_FILE = os.path.join(SOURCE_DIR, "tools", "didww_sim", "example_state.json")

JSONAPI = "application/vnd.api+json"
KEY = "sim-test-key-6f1c2a"
START_TIMEOUT_S = 10.0

# Fixture ids (tools/didww_sim/example_state.json).
DID_A = "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"  # 4371234567, on trunk ON_CALL
DID_B = "1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5"  # 4371234568, on group SUPPORT
DID_VIP = "3505b18a-3019-47bc-95d1-0f9ec7766fd5"  # 14155550100, on group VIP
TRUNK_OFFICE = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"
TRUNK_SUP_A = "ca7da6d0-aa0b-447d-8fc0-1bc58b51298c"
TRUNK_SUP_B = "e9c1b7e9-253b-46c8-b7e9-5a930ab594c5"
TRUNK_VIP = "87133f4d-4a88-436b-b74b-b63e79318426"
TRUNK_ON_CALL = "b7a9d1ce-6a89-4071-bc0d-486ee223787d"
GROUP_SUPPORT = "714e8148-0aea-4cb6-8680-bd1d06453418"
GROUP_VIP = "c07815fc-bf9e-4cbf-a3fc-9c99b8de14d8"
GROUP_EMPTY = "465b059a-b4a2-4c8e-ab3b-33dc60e096ae"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
CAPACITY_POOL = "1e9e4362-bc5c-47f3-a2bb-c17afa66f3fa"  # the example state's one pool
VERSIONS = ("2017-09-18", "2021-04-19", "2021-12-15", "2022-05-10", "2026-04-16", "2026-11-19")


def _die_with_parent():
    """Runs in the child before exec: SIGTERM it when this test process dies (Linux), so a
    killed or timed-out test run does not leave simulators behind."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PDEATHSIG
    except (OSError, AttributeError):
        pass


class Sim:
    """One didww-sim process."""

    def __init__(self, *args, state=STATE_FILE, key=KEY):
        self.tmpdir = tempfile.mkdtemp(prefix="didww-sim-it-")
        cmd = [SIM_BIN, "--state", state, "--host", "127.0.0.1", "--port", "0"]
        if key is not None:
            cmd += ["--api-key", key]
        self.proc = subprocess.Popen(cmd + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                     preexec_fn=_die_with_parent)
        self.port = None
        got = threading.Event()

        def reader():
            line = self.proc.stdout.readline()
            try:
                obj = json.loads(line)
                if obj.get("msg") == "listening":
                    self.port = int(obj["port"])
            except ValueError:
                pass
            got.set()

        threading.Thread(target=reader, daemon=True).start()
        got.wait(START_TIMEOUT_S)
        if self.port is None:
            self.proc.kill()
            err = self.proc.stderr.read().decode(errors="replace")
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise RuntimeError("didww-sim did not start: " + err)

    def request(self, method, path, body=None, key=KEY, version=None, ctype=JSONAPI,
                accept=JSONAPI, headers=None, timeout=10):
        """Returns (status, headers, parsed JSON or raw bytes or None)."""
        h = {}
        if key is not None:
            h["Api-Key"] = key
        if version is not None:
            h["X-DIDWW-API-Version"] = version
        if accept is not None:
            h["Accept"] = accept
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            if ctype is not None:
                h["Content-Type"] = ctype
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            raw = r.read()
            parsed = None
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = raw
            return r.status, r.headers, parsed
        finally:
            conn.close()

    def control(self, method, path, body=None):
        return self.request(method, path, body=body, key=None, accept=None, ctype="application/json")

    def state(self):
        return self.control("GET", "/__sim/state")[2]

    def did(self, did_id):
        return next(d for d in self.state()["dids"] if d["id"] == did_id)

    def group(self, group_id):
        return next(g for g in self.state()["trunk_groups"] if g["id"] == group_id)

    def stats(self):
        return self.control("GET", "/__sim/stats")[2]

    def stop(self, sig=signal.SIGTERM):
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        else:
            rc = self.proc.returncode
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return rc


def load_state():
    with open(STATE_FILE, encoding="utf-8") as f:
        return json.load(f)


def seed_to_one(did_id, rel, rtype, target):
    """The request body shape of seed 000 (to-one relationship update)."""
    data = None if target is None else {"type": rtype, "id": target}
    return {"data": {"type": "dids", "id": did_id, "relationships": {rel: {"data": data}}}}


def linkage(rtype, *ids):
    return {"data": [{"type": rtype, "id": i} for i in ids]}


class SimTestCase(unittest.TestCase):
    sim_args = ()

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(*cls.sim_args)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        status, _, _ = self.sim.control("POST", "/__sim/reset")
        self.assertEqual(status, 204)

    def assertError(self, resp, status, code=None, title=None, pointer=None):
        st, headers, body = resp
        self.assertEqual(st, status, body)
        self.assertEqual(headers.get("Content-Type"), JSONAPI)
        self.assertIsInstance(body, dict, body)
        self.assertIn("errors", body)
        err = body["errors"][0]
        self.assertEqual(err["status"], str(status))
        if code is not None:
            self.assertEqual(err["code"], code)
        if title is not None:
            self.assertEqual(err["title"], title)
        if pointer is not None:
            self.assertEqual(err.get("source", {}).get("pointer"), pointer)
        return body["errors"]


class BearerTests(SimTestCase):
    """2026-11-19: the token endpoint, bearer checks, expiry, revocation, scope, budget."""

    def mint(self, key=KEY, **body):
        req = {"aud": "api.didww.com", "api_version": "2026-11-19"}
        req.update(body)
        return self.sim.request("POST", "/token", key=key, ctype="application/json",
                                accept="application/json", body=req)

    def bearer(self, method, path, token, body=None, version="2026-11-19"):
        return self.sim.request(method, path, key=None, version=version, body=body,
                                headers={"Authorization": "Bearer " + token})

    def auth(self, **settings):
        st, _, doc = self.sim.control("POST", "/__sim/auth", settings)
        self.assertEqual(st, 200, doc)
        return doc

    def test_token_answer_shape_and_use(self):
        st, h, doc = self.mint(scope="full", expires_in=120)
        self.assertEqual(st, 200, doc)
        self.assertEqual(h.get("Cache-Control"), "no-store")
        self.assertEqual(set(doc), {"access_token", "token_type", "expires_in", "aud", "scope",
                                    "api_version"})
        self.assertEqual((doc["token_type"], doc["expires_in"], doc["aud"], doc["scope"],
                          doc["api_version"]), ("Bearer", 120, "api.didww.com", "full",
                                                "2026-11-19"))
        st, _, did = self.bearer("GET", "/v3/dids/" + DID_A, doc["access_token"])
        self.assertEqual(st, 200, did)
        self.assertEqual(did["meta"]["api_version"], "2026-11-19")
        self.assertIn("voice_in_trunk", did["data"]["relationships"])
        # The default lifetime is 900 s.
        self.assertEqual(self.mint()[2]["expires_in"], 900)

    def test_token_endpoint_errors_are_oauth_shaped(self):
        cases = [(self.mint(key="wrong"), 401, "invalid_client"),
                 (self.mint(key=None), 401, "invalid_client"),
                 (self.mint(aud="example.com"), 400, "invalid_request"),
                 (self.mint(scope="admin"), 400, "invalid_scope"),
                 (self.mint(expires_in=59), 400, "invalid_request"),
                 (self.mint(expires_in=3601), 400, "invalid_request"),
                 (self.mint(api_version="2020-01-01"), 400, "invalid_request")]
        st, _, doc = self.sim.request("POST", "/token", key=KEY, ctype="application/json",
                                      accept=None, body={"scope": "full"})
        cases.append(((st, None, doc), 400, "invalid_request"))
        for (st, _, doc), want_status, want_error in cases:
            self.assertEqual((st, doc["error"]), (want_status, want_error), doc)
            self.assertIsInstance(doc["error_description"], str)
            self.assertNotIn("access_token", doc)

    def test_missing_unknown_expired_and_revoked_tokens_are_401(self):
        st, h, _ = self.sim.request("GET", "/v3/dids/" + DID_A, key=None, version="2026-11-19")
        self.assertEqual(st, 401)
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, "f" * 64)[0], 401)
        self.auth(max_ttl_s=1)
        short = self.mint()[2]
        self.assertEqual(short["expires_in"], 1)
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, short["access_token"])[0], 200)
        time.sleep(1.1)
        st, h, doc = self.bearer("GET", "/v3/dids/" + DID_A, short["access_token"])
        self.assertEqual(st, 401)
        self.assertEqual(h.get("WWW-Authenticate"), 'Bearer error="invalid_token"')
        self.assertIn("expired", doc["errors"][0]["detail"])
        self.auth(max_ttl_s=3600)
        tok = self.mint()[2]["access_token"]
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, tok)[0], 200)
        listed = self.auth(revoke=True)
        self.assertIn(tok, [t["access_token"] for t in listed["tokens"]])
        st, h, doc = self.bearer("GET", "/v3/dids/" + DID_A, tok)
        self.assertEqual(st, 401)
        self.assertIn("revoked", doc["errors"][0]["detail"])
        # A token of one version does not open another.
        tok = self.mint()[2]["access_token"]
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, tok, version="2022-05-10")[0],
                         401)

    def test_read_token_writing_is_403_insufficient_scope(self):
        tok = self.mint(scope="read")[2]["access_token"]
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, tok)[0], 200)
        st, h, doc = self.bearer("PATCH", "/v3/dids/" + DID_A, tok,
                                 body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                                  TRUNK_OFFICE))
        self.assertEqual(st, 403, doc)
        self.assertEqual(h.get("WWW-Authenticate"), 'Bearer error="insufficient_scope"')
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_ON_CALL)

    def test_account_budget_429_too_many_requests(self):
        """2026-11-19 replaces 20/s per key with a budget per window (fixed window here)."""
        self.auth(budget=3, budget_window_s=2)
        tok = self.mint()[2]["access_token"]
        for _ in range(3):
            self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, tok)[0], 200)
        st, h, doc = self.bearer("GET", "/v3/dids/" + DID_A, tok)
        self.assertEqual(st, 429, doc)
        self.assertEqual(doc["errors"][0]["code"], "too_many_requests")
        self.assertIn(h.get("Retry-After"), ("1", "2"))
        time.sleep(int(h.get("Retry-After")) + 0.1)
        self.assertEqual(self.bearer("GET", "/v3/dids/" + DID_A, tok)[0], 200)

    def test_token_endpoint_faults_for_tests(self):
        self.auth(fail={"status": 429, "count": 1, "retry_after": 3})
        st, h, doc = self.mint()
        self.assertEqual((st, doc["error"], h.get("Retry-After")), (429, "rate_limit_exceeded",
                                                                    "3"))
        self.assertEqual(self.mint()[0], 200)
        st, _, doc = self.sim.control("POST", "/__sim/auth", {"bogus": 1})
        self.assertEqual(st, 400, doc)


FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures", "didww")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def shape(v, attributes=False):
    """The structure of a document: member names, list element shapes, null vs present.
    Attribute values are reduced to their names (a DID's values differ, its members not)."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k == "attributes":
                out[k] = sorted(x)
            elif k == "links" and isinstance(x, dict):
                out[k] = sorted(x)
            else:
                out[k] = shape(x)
        return out
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return None if v is None else "value"


class FixtureShapeTests(SimTestCase):
    """The simulator answers in the shapes DIDWW's SDKs record (tests/fixtures/didww, written
    for hookline from the didww-v3-ruby and didww-api-3-go-sdk fixtures)."""

    def get(self, path, version="2026-04-16"):
        st, _, doc = self.sim.request("GET", path, version=version)
        return st, doc

    def test_did_without_and_with_include(self):
        want = fixture("did_without_include.json")
        del want["data"]["attributes"]["emergency_enabled"]  # not simulated
        st, doc = self.get("/v3/dids/" + DID_A)
        self.assertEqual(st, 200)
        self.assertEqual(shape(doc), shape(want))
        for rel in doc["data"]["relationships"].values():
            self.assertNotIn("data", rel)  # links only, as DIDWW answers without include

        want = fixture("did_include_trunk.json")
        del want["data"]["attributes"]["emergency_enabled"]
        st, doc = self.get("/v3/dids/" + DID_A + "?include=voice_in_trunk,voice_in_trunk_group")
        self.assertEqual(st, 200)
        self.assertEqual(shape(doc["data"]), shape(want["data"]))
        self.assertEqual(len(doc["included"]), 1)
        self.assertEqual(shape(doc["included"][0]["relationships"]),
                         shape(want["included"][0]["relationships"]))
        self.assertEqual(doc["included"][0]["attributes"].keys(),
                         want["included"][0]["attributes"].keys())
        self.assertEqual(sorted(doc), sorted(want))

        want = fixture("did_include_group.json")
        st, doc = self.get("/v3/dids/" + DID_B + "?include=voice_in_trunk,voice_in_trunk_group")
        self.assertEqual(st, 200)
        self.assertEqual(shape(doc["data"]["relationships"]),
                         shape(want["data"]["relationships"]))
        # Included resources: the same relationships and attributes (the simulator adds the
        # group's links.self and meta.trunks_count, as DIDWW does for a group it returns).
        self.assertEqual(shape(doc["included"][0]["relationships"]),
                         shape(want["included"][0]["relationships"]))
        self.assertEqual(doc["included"][0]["attributes"].keys(),
                         want["included"][0]["attributes"].keys())

        want = fixture("did_legacy_include_unrouted.json")
        st, doc = self.get("/v3/dids/" + DID_A + "?include=trunk,trunk_group",
                           version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(doc["data"]["relationships"]),
                         sorted(want["data"]["relationships"]))
        self.assertIn("pending_removal", doc["data"]["attributes"])

    def test_number_filter_and_errors(self):
        st, doc = self.get("/v3/dids?filter[number]=4371234567")
        self.assertEqual(st, 200)
        want = fixture("dids_filter_number.json")
        self.assertEqual(sorted(doc), sorted(want))
        self.assertEqual(sorted(doc["meta"]), sorted(want["meta"]))
        self.assertEqual(sorted(doc["links"]), sorted(want["links"]))
        st, doc = self.get("/v3/dids?filter[number]=4300000000")
        self.assertEqual((st, doc["data"], doc["meta"]["total_records"]), (200, [], 0))

        st, doc = self.get("/v3/dids/" + UNKNOWN)
        self.assertEqual((st, shape(doc)), (404, shape(fixture("error_404.json"))))
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=seed_to_one(
            DID_A, "voice_in_trunk", "voice_in_trunks", UNKNOWN))
        want = fixture("error_422_unknown_trunk.json")
        self.assertEqual((st, doc), (422, want))
        st, _, doc = self.sim.request("GET", "/v3/dids/" + DID_A, key="wrong")
        self.assertEqual((st, shape(doc)), (401, shape(fixture("error_401.json"))))

    def test_token_answers(self):
        st, _, doc = self.sim.request("POST", "/token", ctype="application/json", accept=None,
                                      body={"aud": "api.didww.com", "api_version": "2026-11-19"})
        self.assertEqual(st, 200)
        self.assertEqual(shape(doc), shape(fixture("token_200.json")))
        st, _, doc = self.sim.request("POST", "/token", key="wrong", ctype="application/json",
                                      accept=None, body={"aud": "api.didww.com"})
        self.assertEqual((st, shape(doc)), (401, shape(fixture("token_401_invalid_client.json"))))


class ReadTests(SimTestCase):
    """GET endpoints, both naming generations, includes and the number filter."""

    def test_get_did_default_version_shape(self):
        st, h, doc = self.sim.request("GET", "/v3/dids/" + DID_A)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("Content-Type"), JSONAPI)
        self.assertEqual(doc["meta"]["api_version"], "2022-05-10")
        d = doc["data"]
        self.assertEqual((d["type"], d["id"]), ("dids", DID_A))
        a = d["attributes"]
        self.assertEqual(a["number"], "4371234567")
        for k in ("blocked", "capacity_limit", "description", "terminated", "awaiting_registration",
                  "expires_at", "channels_included_count", "created_at", "billing_cycles_count",
                  "dedicated_channels_count"):
            self.assertIn(k, a)
        self.assertNotIn("pending_removal", a)
        rels = d["relationships"]
        for k in ("did_group", "order", "voice_in_trunk", "voice_in_trunk_group", "capacity_pool",
                  "shared_capacity_group", "address_verification"):
            self.assertIn(k, rels)
        self.assertNotIn("trunk", rels)
        link = rels["voice_in_trunk"]["links"]
        self.assertTrue(link["self"].endswith("/v3/dids/%s/relationships/voice_in_trunk" % DID_A))
        self.assertTrue(link["related"].endswith("/v3/dids/%s/voice_in_trunk" % DID_A))
        # As DIDWW: linkage data only for included relationships.
        self.assertNotIn("data", rels["voice_in_trunk"])
        self.assertNotIn("included", doc)

    def test_get_did_with_include(self):
        st, _, doc = self.sim.request(
            "GET", "/v3/dids/%s?include=voice_in_trunk,voice_in_trunk_group,did_group" % DID_A)
        self.assertEqual(st, 200)
        rels = doc["data"]["relationships"]
        self.assertEqual(rels["voice_in_trunk"]["data"],
                         {"type": "voice_in_trunks", "id": TRUNK_ON_CALL})
        self.assertIsNone(rels["voice_in_trunk_group"]["data"])
        self.assertEqual(rels["did_group"]["data"]["type"], "did_groups")
        inc = {(r["type"], r["id"]): r for r in doc["included"]}
        trunk = inc[("voice_in_trunks", TRUNK_ON_CALL)]
        self.assertEqual(trunk["attributes"]["name"], "On-call engineer")
        self.assertIn(("did_groups", "d04b6466-3d98-4be1-aac5-93ee241f57ca"), inc)
        self.assertEqual(len(doc["included"]), 2)

    def test_nested_include_trunk_group_of_trunk(self):
        st, _, doc = self.sim.request(
            "GET", "/v3/dids/%s?include=voice_in_trunk.voice_in_trunk_group" % DID_A)
        self.assertEqual(st, 200)
        st, _, doc = self.sim.request(
            "GET", "/v3/voice_in_trunks/%s?include=voice_in_trunk_group" % TRUNK_VIP)
        self.assertEqual(st, 200)
        self.assertEqual(doc["data"]["relationships"]["voice_in_trunk_group"]["data"]["id"],
                         GROUP_VIP)
        self.assertEqual(doc["included"][0]["id"], GROUP_VIP)

    def test_invalid_include_is_400(self):
        errs = self.assertError(self.sim.request("GET", "/v3/dids/%s?include=trunk" % DID_A),
                                400, code="112")
        self.assertIn("trunk is not a valid relationship of dids", errs[0]["detail"])

    def test_2017_naming(self):
        st, _, doc = self.sim.request("GET", "/v3/dids/%s?include=trunk_group" % DID_B,
                                      version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertEqual(doc["meta"]["api_version"], "2017-09-18")
        d = doc["data"]
        self.assertIn("pending_removal", d["attributes"])
        self.assertNotIn("billing_cycles_count", d["attributes"])
        self.assertIn("trunk", d["relationships"])
        self.assertNotIn("voice_in_trunk", d["relationships"])
        self.assertNotIn("address_verification", d["relationships"])
        self.assertEqual(d["relationships"]["trunk_group"]["data"],
                         {"type": "trunk_groups", "id": GROUP_SUPPORT})
        self.assertEqual(doc["included"][0]["type"], "trunk_groups")
        # pending_removal is billing_cycles_count == 0
        st, _, doc = self.sim.request("GET", "/v3/dids/46e129f1-deaa-44db-8915-2646de4d4c70",
                                      version="2017-09-18")
        self.assertIs(doc["data"]["attributes"]["pending_removal"], True)

    def test_2021_04_19_old_names_new_attributes(self):
        st, _, doc = self.sim.request("GET", "/v3/dids/" + DID_A, version="2021-04-19")
        self.assertEqual(st, 200)
        d = doc["data"]
        self.assertIn("billing_cycles_count", d["attributes"])
        self.assertIn("trunk", d["relationships"])
        self.assertIn("address_verification", d["relationships"])

    def test_newer_versions_use_voice_in_names(self):
        for v in ("2021-12-15", "2022-05-10", "2026-04-16"):
            st, _, doc = self.sim.request("GET", "/v3/dids/" + DID_A, version=v)
            self.assertEqual(st, 200, v)
            self.assertEqual(doc["meta"]["api_version"], v)
            self.assertIn("voice_in_trunk", doc["data"]["relationships"])

    def test_unknown_version_400(self):
        self.assertError(self.sim.request("GET", "/v3/dids/" + DID_A, version="2020-01-01"), 400,
                         title="Invalid API version")

    def test_version_2026_11_19_refuses_api_key_even_with_a_token(self):
        st, _, tok = self.sim.request("POST", "/token", key=KEY, ctype="application/json",
                                      accept=None, body={"aud": "api.didww.com",
                                                         "api_version": "2026-11-19"})
        self.assertEqual(st, 200, tok)
        errs = self.assertError(self.sim.request(
            "GET", "/v3/dids/" + DID_A, version="2026-11-19",
            headers={"Authorization": "Bearer " + tok["access_token"]}), 401, code="401")
        self.assertIn("Api-Key", errs[0]["detail"])

    def test_version_2026_11_19_refuses_api_key(self):
        errs = self.assertError(self.sim.request("GET", "/v3/dids/" + DID_A, version="2026-11-19"),
                                401, code="401")
        self.assertIn("Bearer", errs[0]["detail"])

    def test_filter_number(self):
        st, _, doc = self.sim.request("GET", "/v3/dids?filter[number]=4371234567")
        self.assertEqual(st, 200)
        self.assertEqual([d["id"] for d in doc["data"]], [DID_A])
        self.assertEqual(doc["meta"]["total_records"], 1)
        self.assertEqual(doc["meta"]["api_version"], "2022-05-10")
        st, _, doc = self.sim.request("GET", "/v3/dids?filter%5Bnumber%5D=14155550100")
        self.assertEqual([d["id"] for d in doc["data"]], [DID_VIP])
        st, _, doc = self.sim.request("GET", "/v3/dids?filter[number]=4399999")
        self.assertEqual(st, 200)
        self.assertEqual(doc["data"], [])
        self.assertEqual(doc["meta"]["total_records"], 0)
        # Exact digits only: DIDWW stores numbers without '+'.
        st, _, doc = self.sim.request("GET", "/v3/dids?filter[number]=%2B4371234567")
        self.assertEqual(doc["data"], [])

    def test_array_filters_include_and_paging(self):
        """filter[id] and filter[number] take comma-separated values; include works on the
        list; page[size] is 1..100 (400 beyond) and pages follow meta.total_records."""
        ids = sorted([DID_A, DID_B, DID_VIP])
        path = ("/v3/dids?filter[id]=%s&include=voice_in_trunk,voice_in_trunk_group"
                "&page[size]=2&page[number]=%d")
        st, _, p1 = self.sim.request("GET", path % (",".join(ids), 1))
        self.assertEqual(st, 200)
        st, _, p2 = self.sim.request("GET", path % (",".join(ids), 2))
        self.assertEqual(st, 200)
        self.assertEqual(p1["meta"]["total_records"], 3)
        self.assertEqual((len(p1["data"]), len(p2["data"])), (2, 1))
        self.assertIn("next", p1["links"])
        self.assertNotIn("next", p2["links"])
        self.assertEqual(sorted(d["id"] for d in p1["data"] + p2["data"]), ids)
        a = next(d for d in p1["data"] + p2["data"] if d["id"] == DID_A)
        self.assertEqual(a["relationships"]["voice_in_trunk"]["data"]["id"], TRUNK_ON_CALL)
        self.assertIn(("voice_in_trunks", TRUNK_ON_CALL),
                      {(x["type"], x["id"]) for x in p1.get("included", []) +
                       p2.get("included", [])})
        st, _, doc = self.sim.request("GET", "/v3/dids?filter[number]=4371234567,14155550100,1")
        self.assertEqual(sorted(d["id"] for d in doc["data"]), sorted([DID_A, DID_VIP]))
        self.assertError(self.sim.request("GET", "/v3/dids?page[size]=101"), 400, code="118")
        st, _, doc = self.sim.request("GET", "/v3/dids?page[size]=100")
        self.assertEqual(st, 200)

    def test_list_and_unknown_filter(self):
        st, _, doc = self.sim.request("GET", "/v3/dids")
        self.assertEqual(st, 200)
        self.assertEqual(doc["meta"]["total_records"], 4)
        self.assertIn("first", doc["links"])
        self.assertError(self.sim.request("GET", "/v3/dids?filter[country]=AT"), 400, code="102")

    def test_trunk_and_group_endpoints_per_generation(self):
        st, _, doc = self.sim.request("GET", "/v3/voice_in_trunks/" + TRUNK_OFFICE)
        self.assertEqual(st, 200)
        self.assertEqual(doc["data"]["type"], "voice_in_trunks")
        self.assertEqual(doc["data"]["attributes"]["name"], "Office PBX (SIP)")
        st, _, doc = self.sim.request("GET", "/v3/voice_in_trunk_groups/" + GROUP_SUPPORT)
        self.assertEqual(st, 200)
        self.assertEqual(doc["data"]["meta"]["trunks_count"], 2)
        self.assertIn("voice_in_trunks", doc["data"]["relationships"])
        st, _, doc = self.sim.request("GET", "/v3/trunk_groups/%s?include=trunks" % GROUP_SUPPORT,
                                      version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertEqual(doc["data"]["type"], "trunk_groups")
        self.assertEqual([x["id"] for x in doc["data"]["relationships"]["trunks"]["data"]],
                         [TRUNK_SUP_A, TRUNK_SUP_B])
        self.assertEqual({x["type"] for x in doc["included"]}, {"trunks"})
        st, _, doc = self.sim.request("GET", "/v3/trunks/" + TRUNK_OFFICE, version="2021-04-19")
        self.assertEqual(st, 200)
        # The other generation's collection does not exist.
        self.assertError(self.sim.request("GET", "/v3/trunks/" + TRUNK_OFFICE), 404)
        self.assertError(self.sim.request("GET", "/v3/voice_in_trunk_groups/" + GROUP_VIP,
                                          version="2017-09-18"), 404)
        self.assertError(self.sim.request("GET", "/v3/voice_in_trunks/" + UNKNOWN), 404,
                         title="Record not found")

    def test_unknown_path_and_wrong_method(self):
        self.assertError(self.sim.request("GET", "/v3/orders"), 404)
        self.assertError(self.sim.request("GET", "/v2/dids"), 404)
        resp = self.sim.request("DELETE", "/v3/dids/" + DID_A)
        self.assertError(resp, 405)
        self.assertIn("PATCH", resp[1].get("Allow"))
        self.assertError(self.sim.request("POST", "/v3/voice_in_trunks/" + TRUNK_OFFICE,
                                          body={"data": {}}), 405)


class WriteTests(SimTestCase):
    """PATCH of DIDs and groups, relationship links, validation errors."""

    def test_seed_patch_accepted_and_state_changed(self):
        # Seed 000, verbatim (2017-09-18 naming, the seeds' generation).
        body = {"data": {"type": "dids", "id": DID_A,
                         "relationships": {"trunk": {"data": {"type": "trunks",
                                                              "id": TRUNK_OFFICE}}}}}
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body,
                                      version="2017-09-18")
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["data"]["id"], DID_A)
        self.assertEqual(doc["meta"]["api_version"], "2017-09-18")
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_OFFICE)
        # and the seed's "clear the trunk" request (with matching ids)
        st, _, _ = self.sim.request("PATCH", "/v3/dids/" + DID_A,
                                    body=seed_to_one(DID_A, "trunk", "trunks", None),
                                    version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertIsNone(self.sim.did(DID_A)["trunk"])

    def test_hookline_shaped_patch_moves_did_from_group_to_trunk(self):
        body = {"data": {"type": "dids", "id": DID_B, "relationships": {
            "voice_in_trunk": {"data": {"type": "voice_in_trunks", "id": TRUNK_OFFICE}},
            "voice_in_trunk_group": {"data": None}}}}
        st, _, doc = self.sim.request("PATCH", "/v3/dids/%s?include=voice_in_trunk" % DID_B,
                                      body=body)
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["data"]["relationships"]["voice_in_trunk"]["data"]["id"],
                         TRUNK_OFFICE)
        d = self.sim.did(DID_B)
        self.assertEqual((d["trunk"], d["trunk_group"]), (TRUNK_OFFICE, None))
        # and back to a group, 2021-04-19 naming
        body = {"data": {"type": "dids", "id": DID_B, "relationships": {
            "trunk_group": {"data": {"type": "trunk_groups", "id": GROUP_VIP}},
            "trunk": {"data": None}}}}
        st, _, _ = self.sim.request("PATCH", "/v3/dids/" + DID_B, body=body, version="2021-04-19")
        self.assertEqual(st, 200)
        d = self.sim.did(DID_B)
        self.assertEqual((d["trunk"], d["trunk_group"]), (None, GROUP_VIP))

    def test_trunk_while_group_set_is_422(self):
        before = self.sim.did(DID_B)
        errs = self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_B,
                             body=seed_to_one(DID_B, "voice_in_trunk", "voice_in_trunks",
                                              TRUNK_OFFICE)),
            422, code="100", pointer="/data/attributes/voice_in_trunk_id")
        self.assertIn("trunk_group_id", errs[0]["title"])
        self.assertEqual(self.sim.did(DID_B), before)

    def test_both_in_one_patch_is_422(self):
        body = {"data": {"type": "dids", "id": DID_A, "relationships": {
            "voice_in_trunk": {"data": {"type": "voice_in_trunks", "id": TRUNK_OFFICE}},
            "voice_in_trunk_group": {"data": {"type": "voice_in_trunk_groups", "id": GROUP_VIP}}}}}
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body), 422,
                         code="100")
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_ON_CALL)

    def test_wrong_generation_relationship_is_400(self):
        errs = self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_A,
                             body=seed_to_one(DID_A, "trunk", "trunks", TRUNK_OFFICE)),
            400, code="105", title="Param not allowed", pointer="/data/relationships/trunk")
        self.assertEqual(errs[0]["detail"], "trunk is not allowed.")
        self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_A,
                             body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                              TRUNK_OFFICE), version="2017-09-18"),
            400, code="105", pointer="/data/relationships/voice_in_trunk")
        # the right name with the other generation's type
        self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_A,
                             body=seed_to_one(DID_A, "voice_in_trunk", "trunks", TRUNK_OFFICE)),
            400, code="116")
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_ON_CALL)

    def test_capacity_limit_over_32767_exact_body(self):
        body = {"data": {"type": "dids", "id": DID_A, "attributes": {"capacity_limit": 32768}}}
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body)
        self.assertEqual(st, 422)
        self.assertEqual(doc, {"errors": [{
            "title": "must be less than or equal to 32767",
            "detail": "capacity_limit - must be less than or equal to 32767",
            "code": "100", "source": {"pointer": "/data/attributes/capacity_limit"},
            "status": "422"}]})
        self.assertEqual(self.sim.did(DID_A)["capacity_limit"], 10)

    def test_attribute_updates(self):
        body = {"data": {"type": "dids", "id": DID_A, "attributes": {
            "capacity_limit": 32767, "description": "moved", "terminated": False,
            "billing_cycles_count": 3, "dedicated_channels_count": 1},
            "relationships": {"capacity_pool": {"data": {"type": "capacity_pools",
                                                         "id": CAPACITY_POOL}},
                              "shared_capacity_group": {"data": None}}}}
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body)
        self.assertEqual(st, 200, doc)
        a = doc["data"]["attributes"]
        self.assertEqual((a["capacity_limit"], a["description"], a["billing_cycles_count"]),
                         (32767, "moved", 3))
        self.assertEqual(self.sim.did(DID_A)["capacity_pool"], CAPACITY_POOL)
        body = {"data": {"type": "dids", "id": DID_A, "attributes": {"capacity_limit": None}}}
        self.assertEqual(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body)[0], 200)
        self.assertIsNone(self.sim.did(DID_A)["capacity_limit"])
        # 2017-09-18 writes pending_removal, not billing_cycles_count
        body = {"data": {"type": "dids", "id": DID_A, "attributes": {"pending_removal": True}}}
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body,
                                      version="2017-09-18")
        self.assertEqual(st, 200, doc)
        self.assertIs(doc["data"]["attributes"]["pending_removal"], True)
        self.assertEqual(self.sim.did(DID_A)["billing_cycles_count"], 0)
        body = {"data": {"type": "dids", "id": DID_A, "attributes": {"billing_cycles_count": 1}}}
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body,
                                          version="2017-09-18"), 400, code="105")

    def test_read_only_and_invalid_attributes(self):
        body = {"data": {"type": "dids", "id": DID_A,
                         "attributes": {"number": "4370000000", "blocked": True}}}
        errs = self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body), 400,
                                code="105")
        self.assertEqual({e["detail"] for e in errs},
                         {"number is not allowed.", "blocked is not allowed."})
        body = {"data": {"type": "dids", "id": DID_A,
                         "attributes": {"capacity_limit": -1, "billing_cycles_count": 1000}}}
        errs = self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body), 422)
        self.assertEqual(len(errs), 2)
        self.assertEqual(self.sim.did(DID_A)["number"], "4371234567")

    def test_unknown_did_404_exact_body(self):
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + UNKNOWN,
                                      body=seed_to_one(UNKNOWN, "voice_in_trunk",
                                                       "voice_in_trunks", TRUNK_OFFICE))
        self.assertEqual(st, 404)
        self.assertEqual(doc, {"errors": [{
            "title": "Record not found",
            "detail": "The record identified by %s could not be found." % UNKNOWN,
            "code": "404", "status": "404"}]})
        self.assertEqual(self.sim.request("GET", "/v3/dids/" + UNKNOWN)[2], doc)

    def test_unknown_trunk_and_group_422(self):
        errs = self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_A,
                             body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                              UNKNOWN)),
            422, code="100", title="should exist", pointer="/data/attributes/voice_in_trunk_id")
        self.assertEqual(errs[0]["detail"], "trunk_id - is invalid")
        self.assertError(
            self.sim.request("PATCH", "/v3/dids/" + DID_A,
                             body=seed_to_one(DID_A, "trunk_group", "trunk_groups", UNKNOWN),
                             version="2021-04-19"),
            422, pointer="/data/attributes/trunk_group_id")

    def test_unknown_capacity_pool_and_shared_group_422(self):
        """DIDWW refuses an id that is not the account's pool / shared group (the simulator
        accepted any id)."""
        for rel, rtype, fk in (("capacity_pool", "capacity_pools", "capacity_pool_id"),
                               ("shared_capacity_group", "shared_capacity_groups",
                                "shared_capacity_group_id")):
            errs = self.assertError(
                self.sim.request("PATCH", "/v3/dids/" + DID_A,
                                 body=seed_to_one(DID_A, rel, rtype, UNKNOWN)),
                422, code="100", title="should exist", pointer="/data/attributes/" + fk)
            self.assertEqual(errs[0]["detail"], fk + " - is invalid")
            self.assertIsNone(self.sim.did(DID_A)[rel])
        st, _, doc = self.sim.request("PATCH", "/v3/dids/" + DID_A, body=seed_to_one(
            DID_A, "capacity_pool", "capacity_pools", CAPACITY_POOL))
        self.assertEqual(st, 200, doc)

    def test_params_a_version_does_not_allow_are_105(self):
        """Every version refuses the other generation's names and unknown query parameters
        with 400 code 105 "Param not allowed"."""
        for v in VERSIONS[:-1]:  # 2026-11-19 needs a bearer token: BearerTests
            legacy = v in ("2017-09-18", "2021-04-19")
            other = "voice_in_trunk" if legacy else "trunk"
            other_type = "voice_in_trunks" if legacy else "trunks"
            with self.subTest(version=v):
                self.assertError(self.sim.request(
                    "PATCH", "/v3/dids/" + DID_A, version=v,
                    body=seed_to_one(DID_A, other, other_type, TRUNK_OFFICE)),
                    400, code="105", title="Param not allowed",
                    pointer="/data/relationships/" + other)
                gone = "billing_cycles_count" if v == "2017-09-18" else "pending_removal"
                self.assertError(self.sim.request(
                    "PATCH", "/v3/dids/" + DID_A, version=v,
                    body={"data": {"type": "dids", "id": DID_A, "attributes": {gone: 0}}}),
                    400, code="105", pointer="/data/attributes/" + gone)
                errs = self.assertError(self.sim.request(
                    "GET", "/v3/dids/" + DID_A + "?expand=trunk", version=v), 400, code="105",
                    title="Param not allowed")
                self.assertEqual(errs[0]["detail"], "expand is not allowed.")

    def test_id_and_type_mismatch_409(self):
        # The seed's own "clear" example sends another DID's id in the body.
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A,
                                          body=seed_to_one(DID_B, "trunk", "trunks", None),
                                          version="2017-09-18"), 409, code="110")
        body = {"data": {"type": "trunks", "id": DID_A, "attributes": {}}}
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body), 409,
                         code="116")
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A,
                                          body={"data": {"type": "dids"}}), 400, code="109")
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=b"{not json"), 400)
        self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body={"x": 1}), 400,
                         code="106")

    def test_did_relationship_link(self):
        st, _, _ = self.sim.request("PATCH", "/v3/dids/%s/relationships/voice_in_trunk" % DID_A,
                                    body={"data": {"type": "voice_in_trunks",
                                                   "id": TRUNK_OFFICE}})
        self.assertEqual(st, 204)
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_OFFICE)
        st, _, doc = self.sim.request("GET", "/v3/dids/%s/relationships/voice_in_trunk" % DID_A)
        self.assertEqual(doc["data"], {"type": "voice_in_trunks", "id": TRUNK_OFFICE})

    def test_group_patch_replaces_and_clears(self):
        body = {"data": {"type": "voice_in_trunk_groups", "id": GROUP_VIP, "relationships": {
            "voice_in_trunks": linkage("voice_in_trunks", TRUNK_VIP, TRUNK_ON_CALL)}}}
        st, _, doc = self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" + GROUP_VIP,
                                      body=body)
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["data"]["id"], GROUP_VIP)
        self.assertEqual(self.sim.group(GROUP_VIP)["trunks"], [TRUNK_VIP, TRUNK_ON_CALL])
        # seed 000's to-many example, 2017 naming: replace then clear
        body = {"data": {"id": GROUP_SUPPORT, "type": "trunk_groups", "relationships": {
            "trunks": linkage("trunks", TRUNK_SUP_B)}}}
        st, _, _ = self.sim.request("PATCH", "/v3/trunk_groups/" + GROUP_SUPPORT, body=body,
                                    version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertEqual(self.sim.group(GROUP_SUPPORT)["trunks"], [TRUNK_SUP_B])
        body["data"]["relationships"]["trunks"]["data"] = []
        st, _, _ = self.sim.request("PATCH", "/v3/trunk_groups/" + GROUP_SUPPORT, body=body,
                                    version="2017-09-18")
        self.assertEqual(st, 200)
        self.assertEqual(self.sim.group(GROUP_SUPPORT)["trunks"], [])

    def test_group_patch_errors(self):
        body = {"data": {"type": "voice_in_trunk_groups", "id": GROUP_VIP, "relationships": {
            "voice_in_trunks": linkage("voice_in_trunks", TRUNK_VIP, UNKNOWN)}}}
        self.assertError(self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" + GROUP_VIP,
                                          body=body), 422, code="100",
                         pointer="/data/relationships/voice_in_trunks")
        self.assertEqual(self.sim.group(GROUP_VIP)["trunks"], [TRUNK_VIP])
        body["data"]["id"] = UNKNOWN
        body["data"]["relationships"]["voice_in_trunks"] = linkage("voice_in_trunks", TRUNK_VIP)
        self.assertError(self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" + UNKNOWN,
                                          body=body), 404, title="Record not found")
        body = {"data": {"type": "voice_in_trunk_groups", "id": GROUP_VIP, "relationships": {
            "trunks": linkage("trunks", TRUNK_VIP)}}}
        self.assertError(self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" + GROUP_VIP,
                                          body=body), 400, code="105")

    def test_group_cap_of_ten_trunks(self):
        state = load_state()
        extra = ["aaaaaaaa-0000-4000-8000-%012d" % i for i in range(11)]
        state["trunks"] += [{"id": t, "name": "t%d" % i} for i, t in enumerate(extra)]
        st, _, _ = self.sim.control("PUT", "/__sim/state", body=state)
        self.assertEqual(st, 200)
        body = {"data": {"type": "voice_in_trunk_groups", "id": GROUP_EMPTY, "relationships": {
            "voice_in_trunks": linkage("voice_in_trunks", *extra)}}}
        errs = self.assertError(self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" +
                                                 GROUP_EMPTY, body=body), 422)
        self.assertIn("maximum is 10", errs[0]["title"])
        body["data"]["relationships"]["voice_in_trunks"] = linkage("voice_in_trunks", *extra[:10])
        self.assertEqual(self.sim.request("PATCH", "/v3/voice_in_trunk_groups/" + GROUP_EMPTY,
                                          body=body)[0], 200)
        path = "/v3/voice_in_trunk_groups/%s/relationships/voice_in_trunks" % GROUP_EMPTY
        self.assertError(self.sim.request("POST", path,
                                          body=linkage("voice_in_trunks", extra[10])), 422)
        self.assertEqual(len(self.sim.group(GROUP_EMPTY)["trunks"]), 10)
        # reset restores the loaded file
        self.sim.control("POST", "/__sim/reset")
        self.assertEqual(len(self.sim.state()["trunks"]), 5)

    def test_post_adds_only_absent_and_is_idempotent(self):
        path = "/v3/voice_in_trunk_groups/%s/relationships/voice_in_trunks" % GROUP_VIP
        body = linkage("voice_in_trunks", TRUNK_VIP, TRUNK_OFFICE)
        for _ in range(2):
            st, h, doc = self.sim.request("POST", path, body=body)
            self.assertEqual(st, 204)
            self.assertIsNone(doc)
            self.assertEqual(self.sim.group(GROUP_VIP)["trunks"], [TRUNK_VIP, TRUNK_OFFICE])
        self.assertError(self.sim.request("POST", path, body=linkage("voice_in_trunks", UNKNOWN)),
                         422)
        # DELETE removes the given ones; absent ones are fine (JSON:API)
        for _ in range(2):
            st, _, _ = self.sim.request("DELETE", path,
                                        body=linkage("voice_in_trunks", TRUNK_OFFICE))
            self.assertEqual(st, 204)
            self.assertEqual(self.sim.group(GROUP_VIP)["trunks"], [TRUNK_VIP])
        # 2017 naming of the same link
        st, _, _ = self.sim.request("POST", "/v3/trunk_groups/%s/relationships/trunks" % GROUP_VIP,
                                    body=linkage("trunks", TRUNK_OFFICE), version="2017-09-18")
        self.assertEqual(st, 204)
        self.assertIn(TRUNK_OFFICE, self.sim.group(GROUP_VIP)["trunks"])
        self.assertError(self.sim.request("POST", path, body=linkage("trunks", TRUNK_OFFICE)),
                         400, code="116")
        self.assertError(self.sim.request("POST", "/v3/voice_in_trunk_groups/%s/relationships/"
                                          "voice_in_trunks" % UNKNOWN,
                                          body=linkage("voice_in_trunks", TRUNK_OFFICE)), 404)

    def test_trunk_moves_between_groups(self):
        path = "/v3/voice_in_trunk_groups/%s/relationships/voice_in_trunks" % GROUP_VIP
        st, _, _ = self.sim.request("POST", path, body=linkage("voice_in_trunks", TRUNK_SUP_A))
        self.assertEqual(st, 204)
        self.assertIn(TRUNK_SUP_A, self.sim.group(GROUP_VIP)["trunks"])
        self.assertEqual(self.sim.group(GROUP_SUPPORT)["trunks"], [TRUNK_SUP_B])

    def test_state_put_rejects_bad_state(self):
        state = load_state()
        state["dids"][0]["trunk_group"] = GROUP_VIP  # now has both
        st, _, doc = self.sim.control("PUT", "/__sim/state", body=state)
        self.assertEqual(st, 400)
        self.assertIn("both", doc["error"])


class HeaderTests(SimTestCase):
    """Api-Key, media types."""

    def test_401_missing_and_wrong_key(self):
        for key in (None, "wrong-key", ""):
            st, h, doc = self.sim.request("GET", "/v3/dids/" + DID_A, key=key)
            self.assertEqual(st, 401, key)
            self.assertEqual(h.get("Content-Type"), JSONAPI)
            err = doc["errors"][0]
            self.assertEqual((err["title"], err["code"], err["status"]),
                             ("Unauthorized", "401", "401"))
            self.assertNotIn("wrong-key", json.dumps(doc))
            self.assertNotIn(KEY, json.dumps(doc))

    def test_415_on_content_type_parameters_or_absence(self):
        body = seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks", TRUNK_OFFICE)
        for ctype in (JSONAPI + "; charset=utf-8", "application/json", None):
            errs = self.assertError(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body,
                                                     ctype=ctype), 415, code="415")
            self.assertIn("Content-Type", errs[0]["detail"])
        path = "/v3/voice_in_trunk_groups/%s/relationships/voice_in_trunks" % GROUP_VIP
        self.assertError(self.sim.request("DELETE", path, body=linkage("voice_in_trunks",
                                                                       TRUNK_VIP),
                                          ctype="application/json"), 415)
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_ON_CALL)
        self.assertEqual(self.sim.group(GROUP_VIP)["trunks"], [TRUNK_VIP])

    def test_406_on_accept_parameters(self):
        for accept in (JSONAPI + "; charset=utf-8", "application/json", "text/html"):
            self.assertError(self.sim.request("GET", "/v3/dids/" + DID_A, accept=accept), 406,
                             code="406")
        for accept in (None, "*/*", JSONAPI, "application/json, " + JSONAPI):
            self.assertEqual(self.sim.request("GET", "/v3/dids/" + DID_A, accept=accept)[0], 200,
                             accept)


class RequestLogTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="didww-sim-log-")
        self.log = os.path.join(self.tmp, "requests.jsonl")
        self.sim = Sim("--request-log", self.log)

    def tearDown(self):
        self.sim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_log_lines_and_key_fingerprint(self):
        body = seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks", TRUNK_OFFICE)
        self.assertEqual(self.sim.request("PATCH", "/v3/dids/" + DID_A, body=body,
                                          version="2022-05-10")[0], 200)
        self.assertEqual(self.sim.request("GET", "/v3/dids?filter[number]=4371234567")[0], 200)
        self.assertEqual(self.sim.request("GET", "/v3/dids/" + DID_A, key="nope")[0], 401)
        self.sim.stats()  # control endpoints are not logged
        with open(self.log, encoding="utf-8") as f:
            text = f.read()
        lines = [json.loads(x) for x in text.splitlines()]
        self.assertEqual(len(lines), 3)
        self.assertNotIn(KEY, text)
        p, g, unauth = lines
        self.assertEqual((p["method"], p["path"], p["status"]), ("PATCH", "/v3/dids/" + DID_A, 200))
        self.assertEqual(p["body"], body)
        fp = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()[:12]
        self.assertEqual(p["headers"]["api-key"], fp)
        self.assertEqual(p["headers"]["content-type"], JSONAPI)
        self.assertEqual(p["headers"]["x-didww-api-version"], "2022-05-10")
        self.assertTrue(all(k == k.lower() for k in p["headers"]))
        self.assertIsInstance(p["t"], float)
        self.assertLess(abs(p["t"] / 1000.0 - time.time()), 60)
        self.assertEqual(g["path"], "/v3/dids?filter[number]=4371234567")
        self.assertIsNone(g["body"])
        self.assertEqual(unauth["status"], 401)
        self.assertEqual(unauth["headers"]["api-key"],
                         "sha256:" + hashlib.sha256(b"nope").hexdigest()[:12])
        # the same entries over HTTP
        st, _, doc = self.sim.control("GET", "/__sim/requests")
        self.assertEqual([e["status"] for e in doc["requests"]], [200, 200, 401])


class RateLimitTests(unittest.TestCase):
    def setUp(self):
        self.sim = Sim()

    def tearDown(self):
        self.sim.stop()

    def test_20_per_second_then_429(self):
        results = []
        lock = threading.Lock()

        def worker(n):
            for _ in range(n):
                st, h, doc = self.sim.request("GET", "/v3/dids/" + DID_A)
                with lock:
                    results.append((time.monotonic(), st, h.get("Retry-After"), doc))

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(15,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - t0
        self.assertEqual(len(results), 60)
        ok = [r for r in results if r[1] != 429]
        limited = [r for r in results if r[1] == 429]
        self.assertTrue(all(r[1] == 200 for r in ok))
        self.assertGreater(len(limited), 0, "60 requests in %.2fs but no 429" % elapsed)
        self.assertLessEqual(len(ok), 20 * (int(elapsed) + 1))
        for _, _, retry_after, doc in limited:
            self.assertEqual(retry_after, "1")
            err = doc["errors"][0]
            self.assertEqual((err["title"], err["status"], err["code"]),
                             ("Too Many Requests", "429", "429"))
        stats = self.sim.stats()
        self.assertLessEqual(stats["max_accepted_per_second"], 20)
        self.assertGreaterEqual(stats["max_accepted_per_second"], 1)
        self.assertEqual(stats["rate_limited"], len(limited))
        self.assertEqual(stats["responses_by_status"].get("429"), len(limited))
        self.assertGreaterEqual(stats["max_requests_per_second"], stats["max_accepted_per_second"])
        # after a second the budget is back
        time.sleep(1.1)
        self.assertEqual(self.sim.request("GET", "/v3/dids/" + DID_A)[0], 200)


class FaultTests(unittest.TestCase):
    def run_sim(self, *args):
        sim = Sim(*args)
        self.addCleanup(sim.stop)
        return sim

    def test_fail_rate_one_answers_all_500(self):
        sim = self.run_sim("--fail-rate", "1.0", "--seed", "7")
        for _ in range(5):
            st, h, doc = sim.request("GET", "/v3/dids/" + DID_A)
            self.assertEqual(st, 500)
            self.assertEqual(doc["errors"][0]["status"], "500")
        # writes fail without effect
        st, _, _ = sim.request("PATCH", "/v3/dids/" + DID_A,
                               body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                                TRUNK_OFFICE))
        self.assertEqual(st, 500)
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_ON_CALL)
        self.assertEqual(sim.stats()["faults_injected"], 6)
        # key checks still come first
        self.assertEqual(sim.request("GET", "/v3/dids/" + DID_A, key="bad")[0], 401)

    def test_fail_status_and_html_body(self):
        sim = self.run_sim("--fail-rate", "1", "--fail-status", "502", "--fault-body", "html")
        st, h, body = sim.request("GET", "/v3/dids/" + DID_A)
        self.assertEqual(st, 502)
        self.assertTrue(h.get("Content-Type").startswith("text/html"))
        self.assertIn(b"502", body)

    def test_fail_rate_fraction_is_seeded(self):
        def statuses(seed):
            sim = Sim("--fail-rate", "0.5", "--seed", seed, "--rate-limit", "0")
            try:
                return [sim.request("GET", "/v3/dids/" + DID_A)[0] for _ in range(30)]
            finally:
                sim.stop()
        a, b = statuses("42"), statuses("42")
        self.assertEqual(a, b)
        self.assertTrue(0 < a.count(500) < 30, a)

    def test_drop_rate_one_closes_connections(self):
        sim = self.run_sim("--drop-rate", "1.0")
        for _ in range(3):
            with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
                sim.request("PATCH", "/v3/dids/" + DID_A,
                            body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                             TRUNK_OFFICE))
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_ON_CALL)  # dropped before processing
        stats = sim.stats()
        self.assertEqual(stats["dropped"], 3)
        self.assertEqual(stats["requests_total"], 3)

    def test_drop_after_processing_applies_the_change(self):
        sim = self.run_sim("--drop-rate", "1", "--drop-phase", "after")
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            sim.request("PATCH", "/v3/dids/" + DID_A,
                        body=seed_to_one(DID_A, "voice_in_trunk", "voice_in_trunks",
                                         TRUNK_OFFICE))
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_OFFICE)
        entry = sim.control("GET", "/__sim/requests")[2]["requests"][0]
        self.assertEqual((entry["status"], entry["would_status"], entry["fault"]),
                         (None, 200, "drop"))

    def test_burst_5xx(self):
        sim = self.run_sim("--burst-5xx", "2", "--burst-every", "3")
        got = [sim.request("GET", "/v3/dids/" + DID_A)[0] for _ in range(10)]
        self.assertEqual(got, [200, 200, 200, 503, 503, 200, 200, 200, 503, 503])

    def test_burst_once_at_start(self):
        sim = self.run_sim("--burst-5xx", "3")
        got = [sim.request("GET", "/v3/dids/" + DID_A)[0] for _ in range(5)]
        self.assertEqual(got, [503, 503, 503, 200, 200])

    def test_latency_is_added(self):
        sim = self.run_sim("--latency-ms", "300")
        t0 = time.monotonic()
        st = sim.request("GET", "/v3/dids/" + DID_A)[0]
        self.assertEqual(st, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)  # lower bound only

    def test_control_endpoints_ignore_faults(self):
        sim = self.run_sim("--fail-rate", "1", "--drop-rate", "1", "--latency-ms", "2000")
        t0 = time.monotonic()
        self.assertEqual(sim.control("GET", "/__sim/stats")[0], 200)
        self.assertEqual(sim.control("GET", "/__sim/state")[0], 200)
        self.assertLess(time.monotonic() - t0, 1.5)


class ProcessTests(unittest.TestCase):
    def test_exit_zero_on_sigterm_and_sigint(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            sim = Sim()
            self.assertEqual(sim.request("GET", "/v3/dids/" + DID_A)[0], 200)
            self.assertEqual(sim.stop(sig), 0)

    def test_key_from_environment(self):
        proc = subprocess.run([SIM_BIN, "--state", STATE_FILE, "--api-key-env", "NO_SUCH_VAR_X"],
                              capture_output=True, text=True, timeout=10,
                              env={"PATH": os.environ.get("PATH", "")})
        self.assertEqual(proc.returncode, 2)
        self.assertIn("NO_SUCH_VAR_X", proc.stderr)

    def test_bad_state_file_is_refused(self):
        tmp = tempfile.mkdtemp(prefix="didww-sim-bad-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "state.json")
        state = load_state()
        state["dids"][1]["trunk"] = UNKNOWN
        with open(path, "w") as f:
            json.dump(state, f)
        proc = subprocess.run([SIM_BIN, "--state", path, "--api-key", KEY], capture_output=True,
                              text=True, timeout=10)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("dids[1].trunk", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
