#!/usr/bin/env python3
"""Independent Ethereum signing vectors for Custos's chain module.

Signs with eth-account (Python, eth-keys, RFC 6979) transactions, personal messages and EIP-712
typed data for the BIP39 test mnemonic "abandon x11 about", account m/44'/60'/0'/0/0, and writes
the inputs (as Custos takes them) and the expected outputs to JSON files next to this script.
Unsigned RLP is built here with the `rlp` package from the same fields, and its keccak256 is
checked against eth-account's signature by recovery, so the signing hash is independent too.

    python3 -m venv venv && venv/bin/pip install eth-account==0.14.0
    venv/bin/python generate.py
"""
import json
import os
import random

import eth_account
import rlp
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import keccak, to_checksum_address

HERE = os.path.dirname(os.path.abspath(__file__))
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
KEY = "0x1ab42cc412b618bdea3a599e3c9bae199ebf030895b039e9db1e30dafb12b727"

Account.enable_unaudited_hdwallet_features()
acct = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/0")
assert acct.key.hex().removeprefix("0x") == KEY[2:], "derived key differs from the documented one"
acct1 = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/1")
ADDRESS = acct.address

rng = random.Random(20240607)
USDC = to_checksum_address("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")


def q(n):
    return hex(n)


def rand_addr():
    return to_checksum_address(bytes(rng.getrandbits(8) for _ in range(20)))


def rand_bytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def erc20(selector, *words):
    return bytes.fromhex(selector) + b"".join(w.to_bytes(32, "big") for w in words)


def rand_data():
    kind = rng.choice(["empty", "empty", "random", "transfer", "approve", "transferFrom"])
    if kind == "empty":
        return b""
    if kind == "random":
        return rand_bytes(rng.choice([1, 3, 4, 36, 68, 100, 200]))
    amount = rng.choice([0, 1, 10**6, 2**256 - 1, rng.getrandbits(128)])
    a = int(rand_addr(), 16)
    if kind == "transfer":
        return erc20("a9059cbb", a, amount)
    if kind == "approve":
        return erc20("095ea7b3", a, amount)
    return erc20("23b872dd", int(rand_addr(), 16), a, amount)


def rand_access_list():
    return [
        {"address": rand_addr(), "storageKeys": ["0x" + rand_bytes(32).hex() for _ in range(rng.randint(0, 2))]}
        for _ in range(rng.randint(0, 2))
    ]


def unsigned_rlp(tx_type, f):
    to = bytes.fromhex(f["to"][2:]) if f.get("to") else b""
    al = [[bytes.fromhex(e["address"][2:]), [bytes.fromhex(k[2:]) for k in e["storageKeys"]]] for e in f.get("accessList", [])]
    if tx_type == 0:
        return rlp.encode([f["nonce"], f["gasPrice"], f["gas"], to, f["value"], f["data"], f["chainId"], 0, 0])
    if tx_type == 1:
        return b"\x01" + rlp.encode([f["chainId"], f["nonce"], f["gasPrice"], f["gas"], to, f["value"], f["data"], al])
    return b"\x02" + rlp.encode([f["chainId"], f["nonce"], f["maxPriorityFeePerGas"], f["maxFeePerGas"], f["gas"], to, f["value"], f["data"], al])


def transactions():
    out = []
    for i in range(48):
        tx_type = i % 3
        chain_id = rng.choice([1, 1, 1, 11155111, 137, 10, 8453, 2**32 + 7])
        f = {
            "nonce": rng.choice([0, 1, rng.getrandbits(16), 2**64 - 2]),
            "gas": rng.choice([21000, 65000, rng.getrandbits(24) + 21000]),
            "value": rng.choice([0, 0, 1, 10**18, rng.getrandbits(96), 2**256 - 1]),
            "data": rand_data(),
            "chainId": chain_id,
        }
        if rng.random() < 0.85:
            f["to"] = USDC if (f["data"] and rng.random() < 0.5) else rand_addr()
        if tx_type == 0 or tx_type == 1:
            f["gasPrice"] = rng.choice([0, 10**9, 20 * 10**9, rng.getrandbits(64)])
        else:
            f["maxFeePerGas"] = rng.choice([10**9, 30 * 10**9, rng.getrandbits(64)])
            f["maxPriorityFeePerGas"] = rng.choice([0, f["maxFeePerGas"], f["maxFeePerGas"] // 3])
        if tx_type in (1, 2):
            f["accessList"] = rand_access_list()

        sign_dict = dict(f)
        sign_dict["data"] = "0x" + f["data"].hex()
        if tx_type == 1:
            sign_dict["type"] = 1
        if tx_type == 2:
            sign_dict["type"] = 2
        if "to" not in f:
            sign_dict["to"] = b""
        signed = Account.sign_transaction(sign_dict, acct.key)

        raw_unsigned = unsigned_rlp(tx_type, f)
        signing_hash = keccak(raw_unsigned)
        v = signed.v
        y = (v - 35 - 2 * chain_id) if tx_type == 0 else v
        assert y in (0, 1)
        recovered = Account._recover_hash(signing_hash, vrs=(27 + y, signed.r, signed.s))
        assert recovered == ADDRESS, "unsigned rlp does not hash to what eth-account signed"

        # The JSON as a client sends it: hex quantities; vary the accepted spellings.
        j = {"nonce": q(f["nonce"]), "chainId": q(chain_id), "value": q(f["value"])}
        j["gasLimit" if rng.random() < 0.3 else "gas"] = q(f["gas"])
        j["input" if rng.random() < 0.3 else "data"] = "0x" + f["data"].hex()
        if "to" in f:
            j["to"] = f["to"] if rng.random() < 0.5 else f["to"].lower()
        elif rng.random() < 0.5:
            j["to"] = None
        if rng.random() < 0.5:
            j["from"] = ADDRESS
        for k in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
            if k in f:
                j[k] = q(f[k])
        if "accessList" in f:
            j["accessList"] = f["accessList"]
        if tx_type == 1 or rng.random() < 0.5:
            j["type"] = q(tx_type)
        out.append({
            "type": tx_type,
            "chain_id": chain_id,
            "json": j,
            "unsigned_rlp": "0x" + raw_unsigned.hex(),
            "signing_hash": "0x" + signing_hash.hex(),
            "raw_tx": "0x" + signed.raw_transaction.hex().removeprefix("0x"),
            "tx_hash": "0x" + signed.hash.hex().removeprefix("0x"),
        })
    return out


def messages():
    msgs = [b"hello world", b"", "Sign in to example.org\nNonce: 42".encode(), bytes(range(256)), "héllo ✓".encode(), b"0xdeadbeef"]
    msgs += [rand_bytes(rng.randint(1, 80)) for _ in range(6)]
    out = []
    for m in msgs:
        signed = Account.sign_message(encode_defunct(primitive=m), acct.key)
        out.append({
            "message_hex": "0x" + m.hex(),
            "hash": "0x" + signed.message_hash.hex().removeprefix("0x"),
            "signature": "0x" + signed.signature.hex().removeprefix("0x"),
        })
    return out


DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

MAIL = {
    "types": {
        "EIP712Domain": DOMAIN_TYPE,
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [
            {"name": "from", "type": "Person"},
            {"name": "to", "type": "Person"},
            {"name": "contents", "type": "string"},
        ],
    },
    "primaryType": "Mail",
    "domain": {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    },
    "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!",
    },
}

NESTED = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallets", "type": "address[]"}],
        "Group": [
            {"name": "name", "type": "string"},
            {"name": "members", "type": "Person[]"},
            {"name": "scores", "type": "uint256[2][]"},
            {"name": "tags", "type": "bytes32[]"},
            {"name": "flag", "type": "bool"},
            {"name": "blob", "type": "bytes"},
            {"name": "delta", "type": "int64"},
        ],
    },
    "primaryType": "Group",
    "domain": {"name": "Nested", "chainId": 1},
    "message": {
        "name": "Team",
        "members": [
            {"name": "Ann", "wallets": ["0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826", "0xDeaDbeefdEAdbeefdEadbEEFdeadbeEFdEaDbeeF"]},
            {"name": "Bo", "wallets": []},
        ],
        "scores": [[1, 2], [3, 115792089237316195423570985008687907853269984665640564039457584007913129639935]],
        "tags": ["0x" + "11" * 32, "0x" + "ab" * 32],
        "flag": True,
        "blob": "0xdeadbeef",
        "delta": -42,
    },
}

PERMIT = {
    "types": {
        "EIP712Domain": DOMAIN_TYPE,
        "Permit": [
            {"name": "owner", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ],
    },
    "primaryType": "Permit",
    "domain": {"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"},
    "message": {
        "owner": ADDRESS,
        "spender": "0x1111111254EEB25477B68fb85Ed929f73A960582",
        "value": "1000000",
        "nonce": 0,
        "deadline": 1900000000,
    },
}

PERMIT2_DOMAIN = {"name": "Permit2", "chainId": 1, "verifyingContract": "0x000000000022D473030F116dDEE9F6B43aC78BA3"}
PERMIT2_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

PERMIT_SINGLE = {
    "types": {
        "EIP712Domain": PERMIT2_DOMAIN_TYPE,
        "PermitSingle": [
            {"name": "details", "type": "PermitDetails"},
            {"name": "spender", "type": "address"},
            {"name": "sigDeadline", "type": "uint256"},
        ],
        "PermitDetails": [
            {"name": "token", "type": "address"},
            {"name": "amount", "type": "uint160"},
            {"name": "expiration", "type": "uint48"},
            {"name": "nonce", "type": "uint48"},
        ],
    },
    "primaryType": "PermitSingle",
    "domain": PERMIT2_DOMAIN,
    "message": {
        "details": {
            "token": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            "amount": "1461501637330902918203684832716283019655932542975",
            "expiration": 1900000000,
            "nonce": 3,
        },
        "spender": "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD",
        "sigDeadline": 1800000000,
    },
}

PERMIT_TRANSFER_FROM = {
    "types": {
        "EIP712Domain": PERMIT2_DOMAIN_TYPE,
        "PermitTransferFrom": [
            {"name": "permitted", "type": "TokenPermissions"},
            {"name": "spender", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ],
        "TokenPermissions": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}],
    },
    "primaryType": "PermitTransferFrom",
    "domain": PERMIT2_DOMAIN,
    "message": {
        "permitted": {"token": "0x6B175474E89094C44Da98b954EedeAC495271d0F", "amount": "5000000000000000000"},
        "spender": "0x00000000000000000000000000000000DeaDBeef",
        "nonce": "77",
        "deadline": 1750000000,
    },
}


def typed():
    out = []
    for name, data in [("mail", MAIL), ("nested", NESTED), ("eip2612_permit", PERMIT), ("permit2_single", PERMIT_SINGLE), ("permit2_transfer_from", PERMIT_TRANSFER_FROM)]:
        encoded = encode_typed_data(full_message=data)
        h = keccak(b"\x19" + encoded.version + encoded.header + encoded.body)
        signed = Account.sign_message(encoded, acct.key)
        assert signed.message_hash == h
        out.append({
            "name": name,
            "typed_data": data,
            # The exact JSON text (big integers as JSON numbers, which a parsed copy may not keep).
            "typed_data_json": json.dumps(data),
            "hash": "0x" + h.hex(),
            "signature": "0x" + signed.signature.hex().removeprefix("0x"),
        })
    return out


def write(name, payload):
    with open(os.path.join(HERE, name), "w") as fh:
        json.dump(payload, fh, indent=1)
        fh.write("\n")


meta = {
    "generator": "tests/data/ethereum/generate.py",
    "eth_account": eth_account.__version__ if hasattr(eth_account, "__version__") else "0.14.0",
    "mnemonic": MNEMONIC,
    "path": "m/44'/60'/0'/0/0",
    "address": ADDRESS,
    "address_index_1": acct1.address,
}
write("transactions.json", {"meta": meta, "vectors": transactions()})
write("messages.json", {"meta": meta, "vectors": messages()})
write("typed_data.json", {"meta": meta, "vectors": typed()})
print("address", ADDRESS)
