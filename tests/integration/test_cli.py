"""Integration tests of hookline's command line: version, help, usage errors and
`hookline check` on good and broken configs (file:line: messages, every problem at
once, secrets never echoed), plus config behaviour that only `serve` shows.

Run: HOOKLINE_BIN=build/hookline python3 tests/integration/test_cli.py -v
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hookline_harness import (  # noqa: E402
    HOOKLINE_BIN,
    HooklineServer,
    base_env,
    make_tmpdir,
    run_cli,
    sha256_hex,
    write_config,
)

ENV_SECRET = "envSecret-Vq81-do-not-print"
FILE_SECRET = "fileSecret-Lm27-do-not-print"
LITERAL_SECRET = "literalSecret-Xc55-do-not-print"
ALL_SECRETS = [ENV_SECRET, FILE_SECRET, LITERAL_SECRET]


def line_of(text, needle, nth=1):
    """1-based line number of the nth occurrence of needle in text."""
    pos = -1
    for _ in range(nth):
        pos = text.index(needle, pos + 1)
    return text.count("\n", 0, pos) + 1


# A well-formed config, one key per line, so every key has its own line number.
GOOD = """{
  "listen": {
    "host": "127.0.0.1",
    "port": 8080,
    "max_body_bytes": 1048576
  },
  "store": {
    "url": "sqlite:var/hookline.db"
  },
  "sources": {
    "x": {
      "verify": {
        "scheme": "token",
        "header": "Authorization",
        "prefix": "Bearer ",
        "secret": "env:HL_CLI_SECRET"
      }
    },
    "crm": {
      "verify": {
        "scheme": "standard-webhooks",
        "secret": "env:HL_CLI_WHSEC"
      },
      "event_id": "header:webhook-id"
    }
  },
  "log": {
    "level": "info"
  }
}
"""

GOOD_ENV = {"HL_CLI_SECRET": ENV_SECRET, "HL_CLI_WHSEC": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


class CliTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = make_tmpdir("hookline-cli-")
        if not os.environ.get("HOOKLINE_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, text, name="hookline.json"):
        return write_config(self.tmp, text, name)

    def check(self, text, env=None, cwd=None):
        path = self.write(text)
        r = run_cli(["check", "-c", path], env=GOOD_ENV if env is None else env, cwd=cwd)
        self.assertNoSecrets(r)
        return path, r

    def assertNoSecrets(self, r, secrets=ALL_SECRETS):
        for s in secrets:
            self.assertNotIn(s, r.stdout, "a secret value was printed on stdout")
            self.assertNotIn(s, r.stderr, "a secret value was printed on stderr")

    def error_lines(self, r):
        return [ln for ln in r.stderr.splitlines() if ln.strip()]

    def assertOneProblem(self, r, path, line, pattern, kind="error"):
        """exit 1, exactly one stderr line: PATH:LINE: ... matching pattern."""
        self.assertEqual(r.returncode, 1, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertProblemLine(lines[0], path, line, pattern, kind)

    def assertProblemLine(self, text, path, line, pattern, kind="error"):
        prefix = "%s:%d: " % (path, line)
        self.assertTrue(text.startswith(prefix), "expected prefix %r in %r" % (prefix, text))
        self.assertIn(kind, text[len(prefix):])
        self.assertRegex(text, pattern)


class CommandLineTest(CliTestCase):
    def test_version(self):
        r = run_cli(["version"])
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, r"^hookline \d+\.\d+\.\d+")
        src = os.environ.get("HOOKLINE_SOURCE_DIR")
        if src and os.path.exists(os.path.join(src, "CMakeLists.txt")):
            with open(os.path.join(src, "CMakeLists.txt")) as f:
                m = re.search(r"project\(hookline VERSION (\d+\.\d+\.\d+)", f.read())
            if m:
                self.assertIn("hookline " + m.group(1), r.stdout)

    def test_help(self):
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("usage", r.stdout.lower())
        for cmd in ("serve", "check", "audit", "version"):
            self.assertIn(cmd, r.stdout)

    def test_command_help(self):
        for cmd in ("serve", "check", "audit"):
            with self.subTest(cmd=cmd):
                r = run_cli([cmd, "--help"])
                self.assertEqual(r.returncode, 0, r)
                self.assertIn("usage", r.stdout.lower())
                self.assertIn(cmd, r.stdout)

    def test_unknown_command_is_usage_error(self):
        r = run_cli(["frobnicate"])
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("frobnicate", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_no_command_is_usage_error(self):
        r = run_cli([])
        self.assertEqual(r.returncode, 2, r)

    def test_usage_errors_exit_2(self):
        path = self.write(GOOD)
        for args in (["check"], ["check", "-c", path, "extra"], ["serve"],
                     ["audit"], ["audit", "verify"], ["check", "--bogus-flag", "-c", path],
                     ["audit", "-c", path, "--format", "xml"],
                     ["audit", "-c", path, "--limit", "0"],
                     ["audit", "-c", path, "--since", "yesterday"]):
            with self.subTest(args=args):
                r = run_cli(args, env=GOOD_ENV)
                self.assertEqual(r.returncode, 2, r)
                self.assertTrue(r.stderr.strip(), "usage error without a message")

    def test_check_missing_config_file(self):
        r = run_cli(["check", "-c", os.path.join(self.tmp, "nope.json")])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("nope.json", r.stderr)


class CheckTest(CliTestCase):
    def test_good_config(self):
        path, r = self.check(GOOD)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.error_lines(r), [], "no diagnostics for a good config")

    def test_unknown_top_level_key(self):
        text = GOOD.replace('"log": {', '"logg": {')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"logg"'), r"\blogg: unknown key")

    def test_unknown_nested_key(self):
        text = GOOD.replace('"scheme": "token",', '"schem": "token",\n        "scheme": "token",')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"schem"'),
                              r"sources\.x\.verify\.schem: unknown key")

    def test_unknown_key_in_section_and_source(self):
        text = GOOD.replace('"max_body_bytes": 1048576', '"max_body_bytes": 1048576,\n'
                            '    "max_body": 5')
        text = text.replace('"event_id": "header:webhook-id"',
                            '"event_id": "header:webhook-id",\n      "dedupe_window": 5')
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertProblemLine(lines[0], path, line_of(text, '"max_body"'),
                               r"listen\.max_body: unknown key")
        self.assertProblemLine(lines[1], path, line_of(text, '"dedupe_window"'),
                               r"sources\.crm\.dedupe_window: unknown key")

    def test_wrong_type(self):
        text = GOOD.replace('"port": 8080', '"port": "8080"')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"port"'), r"listen\.port: .*integer")

    def test_wrong_type_boolean(self):
        text = GOOD.replace('"scheme": "token",', '"scheme": "token",\n        "insecure": "yes",')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"insecure"'),
                              r"sources\.x\.verify\.insecure: .*true or false")

    def test_out_of_range(self):
        text = GOOD.replace('"port": 8080', '"port": 70000')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"port"'), r"listen\.port: .*70000")
        text = GOOD.replace('"max_body_bytes": 1048576', '"max_body_bytes": 0')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"max_body_bytes"'),
                              r"listen\.max_body_bytes: ")

    def test_env_secret_unset(self):
        env = dict(GOOD_ENV)
        del env["HL_CLI_SECRET"]
        path, r = self.check(GOOD, env=env)
        self.assertOneProblem(r, path, line_of(GOOD, '"secret": "env:HL_CLI_SECRET"'),
                              r"sources\.x\.verify\.secret: .*HL_CLI_SECRET")

    def test_env_secret_in_array_unset_names_element(self):
        text = GOOD.replace('"secret": "env:HL_CLI_WHSEC"',
                            '"secrets": [\n          "env:HL_CLI_WHSEC",\n'
                            '          "env:HL_CLI_WHSEC_NEXT"\n        ]')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"env:HL_CLI_WHSEC_NEXT"'),
                              r"sources\.crm\.verify\.secrets\[1\]: .*HL_CLI_WHSEC_NEXT")

    def test_file_secret_relative_to_config_dir(self):
        os.makedirs(os.path.join(self.tmp, "secrets"))
        with open(os.path.join(self.tmp, "secrets", "x.txt"), "w") as f:
            f.write(FILE_SECRET + "\nsecond line\n")
        os.chmod(os.path.join(self.tmp, "secrets", "x.txt"), 0o600)  # else a mode warning
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:secrets/x.txt"')
        # run from another directory: the path must resolve against the config's dir
        path, r = self.check(text, cwd="/")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.error_lines(r), [])

    def test_file_secret_missing_file(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:secrets/missing.txt"')
        path, r = self.check(text, cwd="/")
        self.assertOneProblem(r, path, line_of(text, '"file:secrets/missing.txt"'),
                              r"sources\.x\.verify\.secret: .*missing\.txt")

    def test_unknown_scheme(self):
        text = GOOD.replace('"scheme": "token"', '"scheme": "tokn"')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"tokn"'),
                              r"sources\.x\.verify\.scheme: .*tokn")

    def test_missing_scheme(self):
        text = GOOD.replace('"scheme": "token",\n', '')
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"sources\.x\.verify\.scheme")

    def test_none_without_insecure(self):
        text = GOOD.replace('"scheme": "token",\n        "header": "Authorization",\n'
                            '        "prefix": "Bearer ",\n        "secret": "env:HL_CLI_SECRET"',
                            '"scheme": "none"')
        self.assertIn('"scheme": "none"', text)
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"sources\.x\.verify.*insecure")
        self.assertTrue(lines[0].startswith(path + ":"), lines[0])

    def test_none_with_insecure_warns(self):
        text = GOOD.replace('"scheme": "token",\n        "header": "Authorization",\n'
                            '        "prefix": "Bearer ",\n        "secret": "env:HL_CLI_SECRET"',
                            '"scheme": "none",\n        "insecure": true')
        path, r = self.check(text)
        self.assertEqual(r.returncode, 0, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("warning", lines[0])
        self.assertIn("sources.x.verify", lines[0])

    def test_invalid_json_reports_line(self):
        text = GOOD.replace('"port": 8080,', '"port": 8080,,')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, ",,"), r"(?i)json")
        text = GOOD.replace('"url": "sqlite:var/hookline.db"\n', '"url": "sqlite:var/hookline.db"\n'
                            '    "batch_max": 3\n')
        path, r = self.check(text)
        self.assertOneProblem(r, path, line_of(text, '"batch_max"'), r"(?i)json")

    def test_duplicate_key_is_an_error(self):
        text = GOOD.replace('"port": 8080,', '"port": 8080,\n    "port": 8081,')
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("port", r.stderr)

    def test_all_problems_reported_at_once(self):
        env = dict(GOOD_ENV)
        del env["HL_CLI_SECRET"]
        text = GOOD.replace('"log": {', '"logg": {')
        path, r = self.check(text, env=env)
        self.assertEqual(r.returncode, 1, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 2, r.stderr)
        want = [("%s:%d: " % (path, line_of(text, '"logg"')), "logg: unknown key"),
                ("%s:%d: " % (path, line_of(text, "env:HL_CLI_SECRET")), "HL_CLI_SECRET")]
        for prefix, needle in want:
            self.assertTrue(any(ln.startswith(prefix) and needle in ln for ln in lines),
                            "no line %r...%r in %r" % (prefix, needle, lines))

    def test_three_independent_problems_in_three_sections(self):
        text = GOOD.replace('"port": 8080', '"port": -1')
        text = text.replace('"level": "info"', '"level": "loud"')
        text = text.replace('"scheme": "standard-webhooks"', '"scheme": "standard-webhook"')
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 3, r.stderr)
        joined = "\n".join(lines)
        self.assertIn("%s:%d: " % (path, line_of(text, '"port"')), joined)
        self.assertIn("%s:%d: " % (path, line_of(text, '"loud"')), joined)
        self.assertIn("%s:%d: " % (path, line_of(text, '"standard-webhook"')), joined)

    def test_all_problems_reported_when_a_secret_is_also_missing(self):
        """an hmac source without "header" whose secret variable is unset
        reports only the unset variable; the missing header appears only on the next
        run, although docs/contract.md section 1 says check exits 1 "with every problem"."""
        text = GOOD.replace('"scheme": "token",\n        "header": "Authorization",\n'
                            '        "prefix": "Bearer ",',
                            '"scheme": "hmac",')
        env = dict(GOOD_ENV)
        path, r = self.check(text, env=env)          # with the secret set: header problem
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"header")
        del env["HL_CLI_SECRET"]
        path, r = self.check(text, env=env)          # without it: both problems
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("HL_CLI_SECRET", r.stderr)
        self.assertEqual(len(self.error_lines(r)), 2, r.stderr)

    def test_literal_secret_warns_but_passes(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"%s"' % LITERAL_SECRET)
        path = self.write(text)
        os.chmod(path, 0o600)  # a readable config holding it is a second warning (below)
        r = run_cli(["check", "-c", path], env=GOOD_ENV)
        self.assertEqual(r.returncode, 0, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertProblemLine(lines[0], path, line_of(text, LITERAL_SECRET),
                               r"sources\.x\.verify\.secret: .*literal", kind="warning")
        self.assertNoSecrets(r)

    def test_short_admin_token_error_does_not_echo_it(self):
        text = GOOD.replace('"log": {', '"admin": {\n    "token": "env:HL_CLI_ADMIN"\n  },\n'
                            '  "log": {')
        env = dict(GOOD_ENV, HL_CLI_ADMIN="Zq9shrtTok")
        path, r = self.check(text, env=env)
        self.assertOneProblem(r, path, line_of(text, '"token": "env:HL_CLI_ADMIN"'), r"admin\.token")
        self.assertNotIn("Zq9shrtTok", r.stderr + r.stdout)

    def test_secret_values_never_printed(self):
        # every kind of failing and passing secret in one config: nothing may echo them
        os.makedirs(os.path.join(self.tmp, "s"))
        with open(os.path.join(self.tmp, "s", "f.txt"), "w") as f:
            f.write(FILE_SECRET + "\n")
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:s/f.txt"')
        text = text.replace('"env:HL_CLI_WHSEC"', '"%s"' % LITERAL_SECRET)  # not base64
        path, r = self.check(text, env=dict(GOOD_ENV))
        self.assertEqual(r.returncode, 1, r)  # a literal that is no whsec_ key
        self.assertNoSecrets(r)
        self.assertRegex(r.stderr, r"sources\.crm\.verify")


class ServeConfigTest(CliTestCase):
    def test_serve_refuses_bad_config_exit_1(self):
        env = dict(GOOD_ENV)
        del env["HL_CLI_SECRET"]
        path = self.write(GOOD.replace('"log": {', '"logg": {'))
        r = subprocess.run([HOOKLINE_BIN, "serve", "-c", path], env=base_env(env),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("logg: unknown key", r.stderr)
        self.assertIn("HL_CLI_SECRET", r.stderr)
        self.assertNoSecrets(r)

    def test_serve_port_in_use_exit_1(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        cfg = json.loads(GOOD)
        cfg["listen"]["port"] = port
        cfg["store"]["url"] = "sqlite:events.db"
        path = self.write(json.dumps(cfg, indent=2))
        r = subprocess.run([HOOKLINE_BIN, "serve", "-c", path], env=base_env(GOOD_ENV),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(str(port), r.stderr)
        self.assertNoSecrets(r)

    def test_file_secret_first_line_is_the_secret(self):
        os.makedirs(os.path.join(self.tmp, "secrets"))
        with open(os.path.join(self.tmp, "secrets", "tok.txt"), "w") as f:
            f.write(FILE_SECRET + "\nsecond-line-not-the-secret\n")
        cfg = {"sources": {"x": {"verify": {"scheme": "token", "header": "Authorization",
                                            "prefix": "Bearer ",
                                            "secret": "file:secrets/tok.txt"}}}}
        srv = HooklineServer(cfg, tmpdir=self.tmp)
        self.addCleanup(srv.cleanup)
        srv.start()
        body = b'{"file": "secret"}'
        h = {"Content-Type": "application/json"}
        r = srv.post("x", body, dict(h, Authorization="Bearer " + FILE_SECRET))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["event_id"], sha256_hex(body))
        for wrong in ("second-line-not-the-secret", FILE_SECRET + "\nsecond-line-not-the-secret"
                      .replace("\n", " ")):
            r = srv.post("x", b'{"file": "wrong"}', dict(h, Authorization="Bearer " + wrong))
            self.assertEqual(r.status, 401, r)
        self.assertEqual(srv.stop(), 0)
        self.assertNotIn(FILE_SECRET, srv.log_text())

    def test_sighup_keeps_serving_and_sigint_stops(self):
        cfg = {"sources": {"x": {"verify": {"scheme": "none", "insecure": True}}}}
        srv = HooklineServer(cfg)
        self.addCleanup(srv.cleanup)
        srv.start()
        srv.signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertTrue(srv.running(), "SIGHUP stopped the service")
        self.assertEqual(srv.get("/healthz").status, 200)
        self.assertEqual(srv.post("x", b"{}", {"Content-Type": "application/json"}).status, 202)
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait_exit(15), 0)


# ---- secret files: modes and whitespace (issue 11, item 7) ----
# A config holding a literal secret, or a file: secret, that group or others may read
# is a warning from `check` and from `serve` at start (naming the file and its mode,
# never the value); a file: secret's first line loses trailing spaces, tabs and CRs.

class SecretFileModeTest(CliTestCase):
    def secret_file(self, name, content, mode):
        p = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
        os.chmod(p, mode)
        return p

    def check_mode(self, text, mode, env=None):
        path = self.write(text)
        os.chmod(path, mode)
        r = run_cli(["check", "-c", path], env=GOOD_ENV if env is None else env)
        self.assertNoSecrets(r)
        return path, r

    def test_readable_secret_file_warns_with_name_and_mode(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:var/x.secret"')
        for mode, who in ((0o644, "group and others"), (0o666, "group and others"),
                          (0o640, "group"), (0o604, "others")):
            with self.subTest(mode=oct(mode)):
                self.secret_file("var/x.secret", FILE_SECRET + "\n", mode)
                path, r = self.check_mode(text, 0o600)
                self.assertEqual(r.returncode, 0, r)
                lines = self.error_lines(r)
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertProblemLine(
                    lines[0], path, line_of(text, '"file:var/x.secret"'),
                    r"sources\.x\.verify\.secret: secret file var/x\.secret is readable by %s "
                    r"\(mode %04o\): chmod 600 it$" % (who, mode), kind="warning")
                self.assertIn("with warnings", r.stdout)

    def test_private_secret_file_is_quiet(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:var/x.secret"')
        for mode in (0o600, 0o400):
            with self.subTest(mode=oct(mode)):
                self.secret_file("var/x.secret", FILE_SECRET + "\n", mode)
                path, r = self.check_mode(text, 0o644)  # no literal: the config's mode is fine
                self.assertEqual(r.returncode, 0, r)
                self.assertEqual(self.error_lines(r), [])

    def test_readable_config_with_literal_secret_warns(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"%s"' % LITERAL_SECRET)
        path, r = self.check_mode(text, 0o644)
        self.assertEqual(r.returncode, 0, r)
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertProblemLine(lines[0], path, line_of(text, LITERAL_SECRET),
                               r"literal secret", kind="warning")
        self.assertTrue(lines[1].startswith(path + ": warning: "), lines[1])
        self.assertRegex(lines[1], r"literal secret and is readable by group and others "
                                   r"\(mode 0644\): chmod 600 it")
        path, r = self.check_mode(text, 0o660)
        self.assertRegex(r.stderr, r"readable by group \(mode 0660\)")

    def test_readable_config_without_literal_secret_is_quiet(self):
        path, r = self.check_mode(GOOD, 0o666)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.error_lines(r), [])

    def test_secret_file_trailing_whitespace_is_stripped(self):
        # A standard-webhooks key with a trailing space or CR is no valid base64: check
        # refused it before.
        whsec = GOOD_ENV["HL_CLI_WHSEC"]
        text = GOOD.replace('"env:HL_CLI_WHSEC"', '"file:crm.key"')
        for tail in (" \n", "\t\n", "\r\n", "  \t\r\nnext line\n", " "):
            with self.subTest(tail=tail):
                self.secret_file("crm.key", whsec + tail, 0o600)
                path, r = self.check_mode(text, 0o600)
                self.assertEqual(r.returncode, 0, r)
                self.assertEqual(self.error_lines(r), [])

    def test_secret_file_of_only_whitespace_is_an_error_naming_it(self):
        text = GOOD.replace('"env:HL_CLI_SECRET"', '"file:blank.secret"')
        self.secret_file("blank.secret", " \t\r\n" + FILE_SECRET + "\n", 0o600)
        path, r = self.check_mode(text, 0o600)
        self.assertOneProblem(r, path, line_of(text, '"file:blank.secret"'),
                              r"sources\.x\.verify\.secret: secret file .*blank\.secret")

    def test_serve_logs_the_mode_warning_and_takes_the_stripped_secret(self):
        self.secret_file("secrets/tok.txt", FILE_SECRET + " \t\r\n", 0o644)
        cfg = {"sources": {"x": {"verify": {"scheme": "token", "header": "Authorization",
                                            "prefix": "Bearer ",
                                            "secret": "file:secrets/tok.txt"}}}}
        srv = HooklineServer(cfg, tmpdir=self.tmp)
        self.addCleanup(srv.cleanup)
        srv.start()
        h = {"Content-Type": "application/json"}
        r = srv.post("x", b'{"a": 1}', dict(h, Authorization="Bearer " + FILE_SECRET))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(srv.stop(), 0)
        log = srv.log_text()
        self.assertNotIn(FILE_SECRET, log)
        warn = [rec for rec in srv.log_records() if "readable by" in rec.get("problem", "")]
        self.assertEqual(len(warn), 1, log)
        self.assertEqual(warn[0].get("level"), "warn", warn[0])
        self.assertIn("secret file secrets/tok.txt is readable by group and others (mode 0644)",
                      warn[0].get("problem", ""))


# ---- command line answers, audit table ids, run.sh's secrets (issue 11, items 12, 14, 15) ----
# Unknown --state / --status values are usage errors naming the valid ones; --help lists
# every command; `jobs list` and `events list` print a header row; the audit table prints
# ids whole (pasted back into a filter they find their records) with a job column.

ISSUE11_RULE = """
function on_event(ev)
  didww.update_did{did = ev.body.did, description = "from " .. ev.id}
end
"""
ISSUE11_DID = "5f0c2a8e-9d4b-4c1e-8a7f-3b2d6e9c1a04"
ISSUE11_EVENT = "evt-2026-11-24T09:14:03Z-account.team_assigned-acc_1042-0001"  # > 16


class Issue11CliTest(CliTestCase):
    def served(self):
        """A stopped server's config with one event (long id) and its pending job."""
        cfg = {"rules": {"script": "main.lua"},
               "sources": {"crm": {"verify": {"scheme": "none", "insecure": True},
                                   "event_id": "header:x-event-id"}}}
        srv = HooklineServer(cfg, tmpdir=self.tmp)
        self.addCleanup(srv.cleanup)
        with open(os.path.join(self.tmp, "main.lua"), "w") as f:
            f.write(ISSUE11_RULE)
        srv.start()
        r = srv.post("crm", json.dumps({"did": ISSUE11_DID}).encode(),
                     {"Content-Type": "application/json", "X-Event-Id": ISSUE11_EVENT})
        self.assertEqual((r.status, r.json()["jobs"]), (202, 1), r)
        srv.signal(signal.SIGHUP)  # a rules.reloaded record
        srv.wait_audit(lambda rs: any(x["kind"] == "rules.reloaded" for x in rs))
        self.assertEqual(srv.stop(), 0)
        return srv.config_path

    def test_unknown_state_or_status_is_a_usage_error_naming_the_valid_ones(self):
        path = self.write(GOOD)
        for args, bad, valid in (
                (["jobs", "-c", path, "list", "--state", "bogus"], "bogus",
                 ["pending", "running", "done", "dead", "superseded", "cancelled"]),
                (["events", "-c", path, "list", "--status", "nope"], "nope",
                 ["accepted", "rule_failed"])):
            with self.subTest(args=args):
                r = run_cli(args, env=GOOD_ENV)
                self.assertEqual(r.returncode, 2, r)
                self.assertEqual(r.stdout, "")
                self.assertIn("'%s'" % bad, r.stderr)
                for v in valid:
                    self.assertRegex(r.stderr, r"\b%s\b" % v)

    def test_help_lists_every_command(self):
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0, r)
        for cmd in ("serve", "check", "rule-test", "audit", "audit verify", "jobs", "events",
                    "version"):
            self.assertRegex(r.stdout, r"(?m)^  %s\b" % re.escape(cmd), cmd)
        for cmd in ("jobs", "events", "rule-test"):
            with self.subTest(cmd=cmd):
                r = run_cli([cmd, "--help"])
                self.assertEqual(r.returncode, 0, r)
                self.assertIn(cmd, r.stdout)

    def test_jobs_and_events_list_print_a_header(self):
        path = self.served()
        r = run_cli(["jobs", "-c", path, "list"])
        self.assertEqual(r.returncode, 0, r)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STATE", "ATTEMPTS", "CREATED", "ACTION",
                                            "METHOD", "PATH"])
        self.assertEqual(len(lines), 2, r.stdout)
        self.assertRegex(lines[1], r"^1\s+pending\s+0\s+\S+\s+update_did\s+PATCH\s+/v3/dids/"
                         + ISSUE11_DID)
        r = run_cli(["jobs", "-c", path, "list", "--state", "dead"])
        self.assertEqual(r.stdout.splitlines(), lines[:1])  # the header alone
        r = run_cli(["events", "-c", path, "list"])
        self.assertEqual(r.returncode, 0, r)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ROW", "RECEIVED", "SOURCE", "STATUS", "EVENT"])
        self.assertEqual(len(lines), 2, r.stdout)
        self.assertEqual(lines[1].split()[2:], ["crm", "accepted", ISSUE11_EVENT])

    def test_audit_table_ids_are_whole_and_paste_back(self):
        path = self.served()
        r = run_cli(["audit", "-c", path])  # the table is the default
        self.assertEqual(r.returncode, 0, r)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["TIME", "KIND", "SOURCE", "JOB", "NUMBER", "DID",
                                            "OUTCOME", "EVENT"])
        rows = {ln.split()[1]: ln for ln in lines[1:]}
        self.assertEqual(set(rows), {"event.received", "rule.decided", "job.queued",
                                     "rules.reloaded"}, r.stdout)
        for kind in ("event.received", "rule.decided", "job.queued"):
            self.assertTrue(rows[kind].endswith(" " + ISSUE11_EVENT), rows[kind])  # not cut
        # a reload's outcome is the version it loaded and what triggered it
        self.assertRegex(rows["rules.reloaded"], r" rule_version [0-9a-f]{16} \(SIGHUP\) +-$")
        queued = rows["job.queued"].split()
        self.assertEqual(queued[3], "1")                 # the job column
        self.assertIn(ISSUE11_DID, queued)               # the whole DID
        # Pasted back, the ids shown find their records.
        pasted_event = rows["event.received"].split()[-1]
        pasted_did = next(tok for tok in queued if len(tok) == 36)
        for flag, value, kinds in (("--event", pasted_event,
                                    ["event.received", "rule.decided", "job.queued"]),
                                   ("--did", pasted_did, ["job.queued"]),
                                   ("--job", queued[3], ["job.queued"])):
            with self.subTest(flag=flag):
                r = run_cli(["audit", "-c", path, "--format", "json", flag, value])
                self.assertEqual(r.returncode, 0, r)
                found = [json.loads(ln)["kind"] for ln in r.stdout.splitlines()]
                for k in kinds:
                    self.assertIn(k, found)

    def test_audit_help_says_json_is_json_lines(self):
        r = run_cli(["audit", "--help"])
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("JSON Lines", r.stdout)
        self.assertIn("per line", r.stdout)


# ---- run.sh's secrets in a new terminal (issue 11, item 14) ----
# The CLI takes secrets the config names as env:NAME but the shell lacks from the
# var/dev-secrets.env run.sh writes (var/ beside the config's directory: REPO/conf/ ->
# REPO/var/), only from a private file of this user, naming what it took, never a value;
# scripts/env.sh loads the file into a shell.
DEV_TOKEN = "devToken-Hj42-do-not-print"
DEV_OTHER = "devOther-Pq09-do-not-print"
DEV_CONFIG = {"sources": {"x": {"verify": {"scheme": "token", "header": "Authorization",
                                           "prefix": "Bearer ", "secret": "env:HL_DEV_TOKEN"}},
                          "y": {"verify": {"scheme": "token", "header": "Authorization",
                                           "prefix": "Bearer ", "secret": "env:HL_DEV_OTHER"}}},
              "log": {"level": "info"}}


class DevSecretsTest(CliTestCase):
    def layout(self, secrets_text, mode=0o600, config=DEV_CONFIG):
        conf = os.path.join(self.tmp, "conf")
        var = os.path.join(self.tmp, "var")
        os.makedirs(conf, exist_ok=True)
        os.makedirs(var, exist_ok=True)
        self.dev_file = os.path.join(var, "dev-secrets.env")
        with open(self.dev_file, "w") as f:
            f.write(secrets_text)
        os.chmod(self.dev_file, mode)
        cfg = json.loads(json.dumps(config))
        cfg["store"] = {"url": "sqlite:../var/hookline.db"}
        return write_config(conf, cfg)

    def assertQuiet(self, r):
        self.assertNoSecrets(r, ALL_SECRETS + [DEV_TOKEN, DEV_OTHER])

    def test_check_takes_missing_secrets_from_the_file_and_names_them(self):
        path = self.layout("HL_DEV_TOKEN=%s\nHL_DEV_OTHER=%s\n" % (DEV_TOKEN, DEV_OTHER))
        r = run_cli(["check", "-c", path], cwd="/")
        self.assertQuiet(r)
        self.assertEqual(r.returncode, 0, r)
        notes = self.error_lines(r)
        self.assertEqual(len(notes), 1, r.stderr)
        self.assertIn("HL_DEV_TOKEN, HL_DEV_OTHER", notes[0])
        self.assertIn(self.dev_file, notes[0])
        # the same config from a relative path (as in `hookline check -c conf/hookline.json`)
        r = run_cli(["check", "-c", os.path.join("conf", "hookline.json")], cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r)
        # without the file both are missing, as before
        os.remove(self.dev_file)
        r = run_cli(["check", "-c", path])
        self.assertQuiet(r)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("HL_DEV_TOKEN", r.stderr)
        self.assertIn("HL_DEV_OTHER", r.stderr)

    def test_only_names_the_config_asks_for_and_only_when_unset(self):
        path = self.layout("# run.sh\n\nHOOKLINE_DIDWW_BASE_URL=http://127.0.0.1:9/v3\n"
                           "HL_DEV_TOKEN=%s\nHL_DEV_OTHER=%s\n" % (DEV_TOKEN, DEV_OTHER))
        r = run_cli(["check", "-c", path], env={"HL_DEV_OTHER": "from-the-shell"})
        self.assertQuiet(r)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("HL_DEV_TOKEN taken from", r.stderr)
        self.assertNotIn("HL_DEV_OTHER", r.stderr)        # the shell's value wins
        self.assertNotIn("HOOKLINE_DIDWW_BASE_URL", r.stderr)  # not a secret the config names

    def test_a_file_others_may_read_or_a_link_is_ignored(self):
        for mode in (0o640, 0o604, 0o660):
            with self.subTest(mode=oct(mode)):
                path = self.layout("HL_DEV_TOKEN=%s\nHL_DEV_OTHER=%s\n" % (DEV_TOKEN, DEV_OTHER),
                                   mode=mode)
                r = run_cli(["check", "-c", path])
                self.assertQuiet(r)
                self.assertEqual(r.returncode, 1, r)
                self.assertIn("%s ignored" % self.dev_file, r.stderr)
                self.assertIn("mode %04o" % mode, r.stderr)
                self.assertIn("environment variable HL_DEV_TOKEN is not set", r.stderr)
        path = self.layout("")
        real = os.path.join(self.tmp, "elsewhere.env")
        with open(real, "w") as f:
            f.write("HL_DEV_TOKEN=%s\nHL_DEV_OTHER=%s\n" % (DEV_TOKEN, DEV_OTHER))
        os.chmod(real, 0o600)
        os.remove(self.dev_file)
        os.symlink(real, self.dev_file)
        r = run_cli(["check", "-c", path])
        self.assertQuiet(r)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("symbolic link", r.stderr)

    def test_serve_verifies_with_the_file_secret_and_logs_names_only(self):
        path = self.layout("HL_DEV_TOKEN=%s\nHL_DEV_OTHER=wrong-%s\n" % (DEV_TOKEN, DEV_OTHER))
        cfg = json.loads(json.dumps(DEV_CONFIG))
        srv = HooklineServer(cfg, env={"HL_DEV_OTHER": DEV_OTHER},
                             tmpdir=os.path.dirname(path))
        self.addCleanup(srv.cleanup)
        srv.start()
        h = {"Content-Type": "application/json"}
        self.assertEqual(srv.post("x", b'{"a": 1}', dict(h, Authorization="Bearer " + DEV_TOKEN))
                         .status, 202)
        self.assertEqual(srv.post("y", b'{"a": 2}', dict(h, Authorization="Bearer " + DEV_OTHER))
                         .status, 202)
        self.assertEqual(srv.post("y", b'{"a": 3}',
                                  dict(h, Authorization="Bearer wrong-" + DEV_OTHER)).status, 401)
        self.assertEqual(srv.stop(), 0)
        taken = [rec for rec in srv.log_records()
                 if rec.get("msg") == "secrets taken from the development secrets file"]
        self.assertEqual(len(taken), 1, srv.log_text())
        self.assertEqual((taken[0]["level"], taken[0]["names"], taken[0]["file"]),
                         ("info", "HL_DEV_TOKEN", self.dev_file))
        self.assertNotIn(DEV_TOKEN, srv.log_text())
        self.assertNotIn(DEV_OTHER, srv.log_text())

    def test_env_sh_loads_the_file_into_a_shell(self):
        src = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.abspath(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        os.makedirs(os.path.join(self.tmp, "scripts"))
        shutil.copy(os.path.join(src, "scripts", "env.sh"), os.path.join(self.tmp, "scripts"))
        self.layout("HL_DEV_TOKEN=%s\nHL_DEV_OTHER=a=b c$(echo x)\n" % DEV_TOKEN)
        r = subprocess.run(["bash", "-c", '. scripts/env.sh && printf "%s|%s|%s" '
                            '"$HL_DEV_TOKEN" "$HL_DEV_OTHER" "$HOME"'],
                           cwd=self.tmp, env=base_env({"HOME": "/kept"}), capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout, "%s|a=b c$(echo x)|/kept" % DEV_TOKEN)
        self.assertIn("HL_DEV_TOKEN", r.stderr)
        self.assertNotIn(DEV_TOKEN, r.stderr)


if __name__ == "__main__":
    unittest.main()
