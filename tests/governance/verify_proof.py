#!/usr/bin/env python3
"""Re-checks the votes of a Custos proof file (custos-proof/v1) with an implementation that
shares no code with Custos: the statement bytes are rebuilt from the proof's JSON fields as
docs/governance.md describes them, and each signature is verified with Python's `cryptography`
(OpenSSL): Ed25519 (RFC 8032) or ECDSA P-256 with SHA-256 over r || s.

    python3 verify_proof.py PROOF.json [--keys KEYS.json]

KEYS.json, when given, maps each approver principal to the list of its enrolled public keys
(the policy's [approver_keys]); a vote by any other key then fails. Exit 0 when every vote
verifies, 1 otherwise, 2 on unusable input. Prints one line per vote.
"""

import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def s(text):
    b = text.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def lst(items):
    return struct.pack(">I", len(items)) + b"".join(s(x) for x in items)


def vote_statement(proof, vote):
    return (
        s("custos/vote/v1")
        + s(proof["custody"])
        + s(proof["request_id"])
        + s(proof["requester"])
        + s(proof["wallet"])
        + s(proof["payload_sha256"])
        + lst(proof["intent_lines"])
        + s(vote["approver"])
        + s(vote["key"])
        + s(vote["decision"])
        + s(vote["reason"])
        + s(str(vote["at"]))
    )


def verify(key_text, message, signature):
    alg, _, body = key_text.partition(":")
    raw = bytes.fromhex(body)
    if alg == "ed25519":
        ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
    elif alg == "p256":
        if len(signature) != 64:
            raise InvalidSignature()
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError(f"unknown key algorithm {alg!r}")


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--keys"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        proof = json.load(f)
    enrolled = None
    if len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            enrolled = json.load(f)
    if proof.get("format") != "custos-proof/v1":
        print(f"FAIL not a custos-proof/v1 file: {proof.get('format')!r}")
        return 1
    failures = 0
    for i, vote in enumerate(proof["votes"], 1):
        who = f"vote {i} ({vote['decision']} by {vote['approver']})"
        if not vote.get("key") or not vote.get("signature"):
            print(f"FAIL {who}: unsigned")
            failures += 1
            continue
        message = vote_statement(proof, vote)
        if bytes.fromhex(vote["statement"]) != message:
            print(f"FAIL {who}: the recorded statement differs from the one rebuilt from the fields")
            failures += 1
            continue
        if enrolled is not None and vote["key"] not in enrolled.get(vote["approver"], []):
            print(f"FAIL {who}: key {vote['key']} is not enrolled for the approver")
            failures += 1
            continue
        try:
            verify(vote["key"], message, bytes.fromhex(vote["signature"]))
        except (InvalidSignature, ValueError) as e:
            print(f"FAIL {who}: the signature does not verify ({type(e).__name__})")
            failures += 1
            continue
        print(f"ok   {who}: {vote['key'].split(':')[0]} signature verifies")
    if failures:
        print(f"{failures} vote(s) failed")
        return 1
    print(f"{len(proof['votes'])} vote(s) verified independently")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
