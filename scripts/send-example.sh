#!/usr/bin/env bash
# Sends one example webhook to a running hookline, signed the way that source's
# "verify" block in the config requires (standard-webhooks, hmac with its "signed"
# template, token in a header or the query, basic, none), and prints the HTTP status
# and hookline's answer. For trying hookline after scripts/run.sh:
#
#     scripts/send-example.sh zendesk                  # tests/fixtures/zendesk_ticket_urgent.json
#     scripts/send-example.sh zapier tests/fixtures/zapier_oncall.form
#
# SOURCE is a name under "sources" in the config; FILE defaults to the example of that
# source in tests/fixtures/ (SOURCE_*.json or SOURCE_*.form; a .form file is sent as
# application/x-www-form-urlencoded). Secrets come from the environment, else from
# var/dev-secrets.env as scripts/run.sh writes it; they are never printed and never
# put on a command line (curl reads its request on stdin).
#
# Environment: HOOKLINE_URL (http://127.0.0.1:8080: the service; /hooks/SOURCE is
# appended), HOOKLINE_CONFIG (conf/hookline.json), EVENT_ID (the webhook-id of a
# standard-webhooks source; default: derived from the body, so sending the same file
# again is a redelivery, answered 200 duplicate).
# Exit status: 0 for a 2xx answer, 1 for any other answer or none, 2 for a usage error.
# Needs bash, python3 and curl only.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo "usage: scripts/send-example.sh SOURCE [FILE]"
}
case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
'' | -*)
    usage >&2
    exit 2
    ;;
esac
[ $# -le 2 ] || {
    usage >&2
    exit 2
}
source_name=$1
file=${2:-}
config=${HOOKLINE_CONFIG:-$repo/conf/hookline.json}
base=${HOOKLINE_URL:-http://127.0.0.1:8080}
secrets=$repo/var/dev-secrets.env

if [ -n "$file" ] && [ ! -r "$file" ]; then
    echo "send-example: cannot read $file" >&2
    exit 2
fi

# python3 builds curl's request (URL, headers with the signature) on stdout; curl
# reads it with -K - so that no secret, signature or token appears in `ps`.
request=$(python3 - "$config" "$source_name" "$file" "$base" "$secrets" "$repo/tests/fixtures" <<'PY'
import base64, glob, hashlib, hmac, json, os, sys, time, urllib.parse

config_path, source, body_path, base, secrets_path, fixtures = sys.argv[1:7]


def die(msg):
    print("send-example: " + msg, file=sys.stderr)
    sys.exit(2)


try:
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
except (OSError, ValueError) as e:
    die("cannot read the config %s: %s" % (config_path, e))
sources = cfg.get("sources") or {}
if source not in sources:
    die("no source '%s' in %s (sources: %s)" % (source, config_path, ", ".join(sorted(sources))))
src = sources[source]
verify = src.get("verify") or {}
scheme = verify.get("scheme")


def dev_secrets():
    """NAME=VALUE lines of run.sh's file: the value is the rest of the line, as is."""
    out = {}
    try:
        with open(secrets_path, encoding="utf-8") as f:
            for line in f.read().splitlines():
                name, eq, value = line.partition("=")
                if eq and name.isidentifier():
                    out[name] = value
    except OSError:
        pass
    return out


def resolve(spec, key):
    if not isinstance(spec, str) or not spec:
        die("sources.%s.verify.%s is not a secret string" % (source, key))
    if spec.startswith("env:"):
        name = spec[4:]
        value = os.environ.get(name) or dev_secrets().get(name)
        if not value:
            die("%s (sources.%s.verify.%s) is neither in the environment nor in %s: run "
                "scripts/run.sh once, or export it" % (name, source, key, secrets_path))
        return value
    if spec.startswith("file:"):
        path = spec[5:]
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(os.path.abspath(config_path)), path)
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n").rstrip(" \t")
        except OSError as e:
            die("cannot read the secret file of sources.%s.verify.%s: %s" % (source, key, e))
    return spec  # a literal secret in the config


def secret():
    for key in ("secret", "password"):
        if key in verify:
            return resolve(verify[key], key)
    many = verify.get("secrets")
    if isinstance(many, list) and many:
        return resolve(many[0], "secrets[0]")  # the first one: any may match
    die("sources.%s.verify has no secret" % source)


if not body_path:
    # The example of this source; of the two Zendesk tickets, the urgent one plans a change.
    found = sorted(glob.glob(os.path.join(fixtures, glob.escape(source) + "_*.json"))
                   + glob.glob(os.path.join(fixtures, glob.escape(source) + "_*.form")))
    urgent = [p for p in found if p.endswith("_urgent.json")]
    if len(found) != 1 and len(urgent) == 1:
        found = urgent
    if len(found) != 1:
        die("%d examples for '%s' in %s: name the file (scripts/send-example.sh %s FILE)"
            % (len(found), source, fixtures, source))
    body_path = found[0]
with open(body_path, "rb") as f:
    body = f.read()
body_sha = hashlib.sha256(body).hexdigest()
ctype = ("application/x-www-form-urlencoded" if body_path.endswith(".form")
         else "application/json")
parts = urllib.parse.urlsplit(base.rstrip("/"))
if parts.scheme not in ("http", "https") or not parts.netloc:
    die("HOOKLINE_URL must look like http://127.0.0.1:8080, not %r" % base)
target = parts.path + "/hooks/" + urllib.parse.quote(source, safe="")
headers = [("Host", parts.netloc), ("Content-Type", ctype)]
now = time.time()


def header(name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


# A source whose event id is a header gets one (derived from the body: a resend is
# a redelivery of the same event).
event_id = src.get("event_id") or ""
if scheme == "standard-webhooks":
    key = secret()
    raw = key[len("whsec_"):] if key.startswith("whsec_") else key
    msg_id = os.environ.get("EVENT_ID") or "msg_" + body_sha[:24]
    ts = str(int(now))
    mac = hmac.new(base64.b64decode(raw), msg_id.encode() + b"." + ts.encode() + b"." + body,
                   hashlib.sha256).digest()
    headers += [("webhook-id", msg_id), ("webhook-timestamp", ts),
                ("webhook-signature", "v1," + base64.b64encode(mac).decode())]
if event_id.startswith("header:") and header(event_id[7:]) is None:
    headers.append((event_id[7:], os.environ.get("EVENT_ID") or "ex-" + body_sha[:32]))

if scheme == "hubspot-v3":
    # HubSpot's v3: base64 HMAC-SHA256 over method + URI + body + timestamp (ms); the
    # example target has none of the escapes HubSpot decodes before signing.
    key = secret()
    ts = str(int(now * 1000))
    url = "%s://%s%s" % (parts.scheme, parts.netloc, target)
    mac = hmac.new(key.encode(), b"POST" + url.encode() + body + ts.encode(), hashlib.sha256)
    headers += [("X-HubSpot-Request-Timestamp", ts),
                ("X-HubSpot-Signature-v3", base64.b64encode(mac.digest()).decode())]
if scheme == "hmac":
    key = secret()
    tsh = verify.get("timestamp_header")
    if tsh:
        # As the vendors send it: HubSpot in milliseconds, Zendesk in RFC 3339, others
        # in seconds (hookline accepts all three).
        if "hubspot" in tsh.lower():
            ts = str(int(now * 1000))
        elif "zendesk" in tsh.lower():
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        else:
            ts = str(int(now))
        headers.append((tsh, ts))
    url = "%s://%s%s" % (parts.scheme, parts.netloc, target)
    content, tpl = b"", verify.get("signed") or "{body}"
    while tpl:
        if not tpl.startswith("{"):
            lit, brace, rest = tpl.partition("{")
            content += lit.encode()
            tpl = brace + rest
            continue
        name, _, tpl = tpl[1:].partition("}")
        if name == "body":
            content += body
        elif name == "method":
            content += b"POST"
        elif name == "url":
            content += url.encode()
        elif name.startswith("header:") and header(name[7:]) is not None:
            content += header(name[7:]).encode()
        else:
            die("sources.%s.verify.signed: cannot fill {%s}" % (source, name))
    alg = {"sha256": hashlib.sha256, "sha1": hashlib.sha1,
           "sha512": hashlib.sha512}[verify.get("algorithm", "sha256")]
    mac = hmac.new(key.encode(), content, alg).digest()
    sig = (base64.b64encode(mac).decode() if verify.get("encoding", "hex") == "base64"
           else mac.hex())
    headers.append((verify["header"], (verify.get("prefix") or "") + sig))
elif scheme == "token":
    key = secret()
    if verify.get("header"):
        headers.append((verify["header"], (verify.get("prefix") or "") + key))
    else:
        target += "?" + urllib.parse.urlencode({verify["query"]: key})
elif scheme == "basic":
    pair = "%s:%s" % (verify.get("username", ""), secret())
    headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
elif scheme not in ("standard-webhooks", "hubspot-v3", "none"):
    die("sources.%s.verify.scheme %r is not one this script knows" % (source, scheme))


def quoted(text):
    if any(c in text for c in "\r\n\0"):
        die("a header or URL holds a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


print("url = " + quoted("%s://%s%s" % (parts.scheme, parts.netloc, target)))
print("request = \"POST\"")
for k, v in headers:
    print("header = " + quoted("%s: %s" % (k, v)))
print("data-binary = " + quoted("@" + os.path.abspath(body_path)))
PY
) || exit $?

answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
code=$(curl -sS --max-time 30 -o "$answer" -w '%{http_code}' -K - <<<"$request") || {
    echo "send-example: no answer from $base (is hookline running? scripts/run.sh starts it)" >&2
    exit 1
}
echo "HTTP $code"
cat "$answer"
[ -z "$(tail -c 1 "$answer")" ] || echo # end the answer's line
case "$code" in 2??) exit 0 ;; *) exit 1 ;; esac
