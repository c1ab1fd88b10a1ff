#!/usr/bin/python3
"""Check recorded webhook deliveries with Python's standard library alone.

A second implementation of Standard Webhooks (v1) verification, independent
of the reference JavaScript verifier that test/verify.js runs, for the
konvox_webhooks tests.  Input and output are those of test/verify.js:

    python3 test/verify.py [--text] [FILE]

reads {"cases": [{"name", "request": {"headers", "body_b64"}, "secrets"}]}
(or one case on its own) from FILE or stdin, and writes

    {"verifier": "python hmac", "cases": [{"name", "results":
        [{"ok": true}, {"ok": false, "error": "No matching signature found"}]}]}

The checks, and the messages of a rejection, follow the reference verifier:

    Missing required headers      webhook-id, -timestamp or -signature absent
    Invalid Signature Headers     webhook-timestamp is not all digits (the
                                  reference takes a leading integer)
    Message timestamp too old     more than 5 minutes before now
    Message timestamp too new     more than 5 minutes after now
    No matching signature found   no v1 entry of webhook-signature matches

The signed content is the bytes of webhook-id, ".", webhook-timestamp, "."
and the raw body, exactly as received; the key is the base64-decoded part
of the secret after "whsec_".  Only "payload": "buffer" (the default) is
accepted: this implementation always verifies the raw bytes.

Exit status: 0 when every case was verified, whatever the verdicts; 2 when
the input is unusable.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import sys
import time

TOLERANCE_SECONDS = 5 * 60
PREFIX = "whsec_"


class Rejected(Exception):
    """The delivery did not verify; the message says why."""


def fail(message):
    """Print a message to stderr and exit with status 2."""
    sys.stderr.write("verify.py: %s\n" % message)
    sys.exit(2)


def secret_key(secret):
    """The HMAC key of a secret: the base64-decoded part after whsec_."""
    encoded = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise Rejected("Invalid secret: %s" % err)
    if not key:
        raise Rejected("Secret can't be empty.")
    return key


def verify(secret, headers, body, now=None):
    """Return normally if body and headers are a delivery signed with
    secret and timestamped within the tolerance of now; raise Rejected
    otherwise."""
    headers = {name.lower(): value for name, value in headers.items()}
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise Rejected("Missing required headers")
    if not re.fullmatch(r"[0-9]+", timestamp):
        raise Rejected("Invalid Signature Headers")
    seconds = int(timestamp)
    now = int(time.time()) if now is None else now
    if now - seconds > TOLERANCE_SECONDS:
        raise Rejected("Message timestamp too old")
    if seconds > now + TOLERANCE_SECONDS:
        raise Rejected("Message timestamp too new")

    key = secret_key(secret)
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in signatures.split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise Rejected("No matching signature found")


def check_case(case, i):
    """Exit with a message unless case has the shape described above."""
    where = "case %d" % (i + 1)
    if not isinstance(case, dict):
        fail("%s is not an object" % where)
    if case.get("name") is not None:
        where += " (%s)" % case["name"]
    req = case.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("headers"), dict):
        fail('%s: "request" must be an object with "headers"' % where)
    if not all(isinstance(v, str) for v in req["headers"].values()):
        fail("%s: header values must be strings" % where)
    if not isinstance(req.get("body_b64"), str):
        fail('%s: "request.body_b64" must be a base64 string' % where)
    try:
        base64.b64decode(req["body_b64"], validate=True)
    except (binascii.Error, ValueError):
        fail('%s: "request.body_b64" is not base64' % where)
    secrets = case.get("secrets")
    if (not isinstance(secrets, list) or not secrets
            or not all(isinstance(s, str) for s in secrets)):
        fail('%s: "secrets" must be a non-empty array of strings' % where)
    if case.get("payload", "buffer") != "buffer":
        fail('%s: only "payload": "buffer" is supported' % where)


def verify_case(case):
    """The verdict for each secret of a case."""
    body = base64.b64decode(case["request"]["body_b64"])
    results = []
    for secret in case["secrets"]:
        try:
            verify(secret, case["request"]["headers"], body)
            results.append({"ok": True})
        except Rejected as err:
            results.append({"ok": False, "error": str(err)})
    return results


def main(argv):
    text = False
    files = []
    for arg in argv:
        if arg == "--text":
            text = True
        elif arg in ("-h", "--help"):
            print("usage: python3 verify.py [--text] [FILE]")
            return 0
        elif arg.startswith("--"):
            fail("unknown option %s" % arg)
        else:
            files.append(arg)
    if len(files) > 1:
        fail("give at most one input file")

    try:
        if not files or files[0] == "-":
            doc = json.load(sys.stdin)
        else:
            with open(files[0], encoding="utf-8") as f:
                doc = json.load(f)
    except (OSError, ValueError) as err:
        fail("cannot read the input: %s" % err)

    if isinstance(doc, dict) and isinstance(doc.get("cases"), list):
        cases = doc["cases"]
    elif isinstance(doc, dict) and "request" in doc:
        cases = [doc]
    else:
        fail('input must hold "cases" or be a single case with "request"')
    for i, case in enumerate(cases):
        check_case(case, i)

    out = [{"name": case.get("name", "case %d" % (i + 1)),
            "results": verify_case(case)}
           for i, case in enumerate(cases)]
    if text:
        for case in out:
            for i, r in enumerate(case["results"]):
                print("%s secret %d: %s" % (
                    case["name"], i + 1,
                    "ok" if r["ok"] else "rejected: " + r["error"]))
    else:
        print(json.dumps({"verifier": "python hmac", "cases": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
