#!/usr/bin/env python3
"""check_vectors.py: a second, independent implementation of
docs/protocol.md, written from the document alone, that rebuilds every
positive vector byte for byte (its own protobuf encoder, its own XSalsa20,
HSalsa20 and HChaCha20; Ed25519, X25519, ChaCha20-Poly1305 and Poly1305
from the `cryptography` package) and runs every negative vector through its
own strict decoder.  It shows that the document is enough to write a
client, and keeps document and C code from drifting apart.

Usage: check_vectors.py VECTORS.json.  Exits 77 (skipped) when the
`cryptography` package is missing.
"""
import hashlib
import json
import struct
import sys

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey, Ed25519PublicKey)
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey, X25519PublicKey)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.poly1305 import Poly1305
    from cryptography.hazmat.primitives import serialization
except ImportError:
    print("python3 'cryptography' package not installed; skipping")
    sys.exit(77)

M32 = 0xFFFFFFFF
RAW = serialization.Encoding.Raw
RAWPUB = serialization.PublicFormat.Raw

ERR = {"OK": 0, "MALFORMED": 1, "TOO_LARGE": 2, "BAD_FIELD": 3,
       "BAD_SIGNATURE": 4, "BAD_PROOF": 5, "HASH_MISMATCH": 6,
       "NOT_RECIPIENT": 7, "NO_SEALED_KEY": 8, "UNSEAL_FAILED": 9,
       "DECRYPT_FAILED": 10}


class Refused(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


def b2b(data, n=32, key=b""):
    return hashlib.blake2b(data, digest_size=n, key=key).digest()


def rotl(v, c):
    return ((v << c) & M32) | (v >> (32 - c))


# ---- HChaCha20 and XChaCha20-Poly1305-IETF (§5.3) -------------------------

def hchacha20(key, n16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", n16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 7)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha(key, nonce):
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])), b"\0" * 4 + nonce[16:]


# ---- Salsa20, HSalsa20, XSalsa20-Poly1305, sealed box (§5.6) --------------

SIGMA = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]


def salsa_rounds(x):
    def r(a, b, c, k):
        x[a] ^= rotl((x[b] + x[c]) & M32, k)
    for _ in range(10):
        r(4, 0, 12, 7); r(8, 4, 0, 9); r(12, 8, 4, 13); r(0, 12, 8, 18)
        r(9, 5, 1, 7); r(13, 9, 5, 9); r(1, 13, 9, 13); r(5, 1, 13, 18)
        r(14, 10, 6, 7); r(2, 14, 10, 9); r(6, 2, 14, 13); r(10, 6, 2, 18)
        r(3, 15, 11, 7); r(7, 3, 15, 9); r(11, 7, 3, 13); r(15, 11, 7, 18)
        r(1, 0, 3, 7); r(2, 1, 0, 9); r(3, 2, 1, 13); r(0, 3, 2, 18)
        r(6, 5, 4, 7); r(7, 6, 5, 9); r(4, 7, 6, 13); r(5, 4, 7, 18)
        r(11, 10, 9, 7); r(8, 11, 10, 9); r(9, 8, 11, 13); r(10, 9, 8, 18)
        r(12, 15, 14, 7); r(13, 12, 15, 9); r(14, 13, 12, 13); r(15, 14, 13, 18)
    return x


def salsa_state(key, mid):
    k = struct.unpack("<8I", key)
    return [SIGMA[0], *k[0:4], SIGMA[1], *mid, SIGMA[2], *k[4:8], SIGMA[3]]


def hsalsa20(key, n16):
    x = salsa_rounds(salsa_state(key, struct.unpack("<4I", n16)))
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def xsalsa20_stream(key, nonce, n):
    sub = hsalsa20(key, nonce[:16])
    out = b""
    ctr = 0
    while len(out) < n:
        mid = struct.unpack("<2I", nonce[16:24]) + (ctr & M32, ctr >> 32)
        inp = salsa_state(sub, mid)
        x = salsa_rounds(list(inp))
        out += struct.pack("<16I", *[(a + b) & M32 for a, b in zip(x, inp)])
        ctr += 1
    return out[:n]


def xor(a, b):
    return bytes(p ^ q for p, q in zip(a, b))


def x25519(sk, pk):
    return X25519PrivateKey.from_private_bytes(sk).exchange(
        X25519PublicKey.from_public_bytes(pk))


def x25519_pub(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(
        RAW, RAWPUB)


def seal_seeded(msg, rpk, seed):
    esk = hashlib.sha512(seed).digest()[:32]
    epk = x25519_pub(esk)
    k = hsalsa20(x25519(esk, rpk), b"\0" * 16)
    ks = xsalsa20_stream(k, b2b(epk + rpk, 24), 32 + len(msg))
    c = xor(msg, ks[32:])
    return epk + Poly1305.generate_tag(ks[:32], c) + c


def seal_open(sealed, rpk, rsk):
    epk, tag, c = sealed[:32], sealed[32:48], sealed[48:]
    k = hsalsa20(x25519(rsk, epk), b"\0" * 16)
    ks = xsalsa20_stream(k, b2b(epk + rpk, 24), 32 + len(c))
    try:
        Poly1305.verify_tag(ks[:32], c, tag)
    except InvalidSignature:
        return None
    return xor(c, ks[32:])


# ---- protobuf encoding (§1: field order, proto3 defaults left out) --------

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f_len(num, data, always=False):
    if not data and not always:
        return b""
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_int(num, v):
    return varint(num << 3) + varint(int(v)) if v else b""


def enc_header(h):
    out = f_len(1, h["message_id"]) + f_len(2, h["sender"].encode())
    for r in h["recipients"]:
        out += f_len(3, r.encode(), True)
    out += f_len(4, h["message_type"].encode())
    out += f_len(5, h["case_ref"].encode()) + f_len(6, h["purpose"].encode())
    out += f_int(7, h["created_ms"]) + f_int(8, h["expires_ms"])
    out += f_int(9, h["urgent"]) + f_len(10, h["region"].encode())
    for a in h["attributes"]:
        out += f_len(11, f_len(1, a["key"].encode()) +
                     f_len(2, a["value"].encode()), True)
    out += f_len(12, h["ciphertext_hash"]) + f_len(13, h["key_commitment"])
    out += f_len(14, h["consent_ref"].encode())
    out += f_int(15, h["notify_delivered"])
    return out


def enc_bsig(root, index, count, proof, sig):
    out = f_len(1, root) + f_int(2, index) + f_int(3, count)
    for p in proof:
        out += f_len(4, p, True)
    return out + f_len(5, sig)


# ---- Merkle trees (§6) ----------------------------------------------------

def leaf_hash(data):
    return b2b(b"\x00" + data)


def node_hash(left, right):
    return b2b(b"\x01" + left + right)


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def audit_path(i, leaves):
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if i < k:
        return audit_path(i, leaves[:k]) + [mth(leaves[k:])]
    return audit_path(i - k, leaves[k:]) + [mth(leaves[:k])]


def proof_len(i, n):
    length, size = 0, n
    while size > 1:
        if (i ^ 1) < size:
            length += 1
        i //= 2
        size = (size + 1) // 2
    return length


def check_proof(leaf, index, count, proof, root):
    if count < 1 or count > 65536 or index >= count or \
            len(proof) != proof_len(index, count):
        raise Refused("BAD_PROOF")
    fn, sn, r = index, count - 1, leaf
    for p in proof:
        if sn == 0:
            raise Refused("BAD_PROOF")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Refused("BAD_PROOF")


def sig_message(label, count, root):
    return label + b"\x00" + struct.pack(">I", count) + root


# ---- strict decoding (§9) -------------------------------------------------

# field number -> (kind, max_count, max_len, sub-table)
ATTR = {1: ("str", 1, 32, None), 2: ("str", 1, 128, None)}
HEADER = {1: ("bytes", 1, 16, None), 2: ("str", 1, 64, None),
          3: ("str", 32, 64, None), 4: ("str", 1, 64, None),
          5: ("str", 1, 64, None), 6: ("str", 1, 64, None),
          7: ("u64", 1, 0, None), 8: ("u64", 1, 0, None),
          9: ("bool", 1, 0, None), 10: ("str", 1, 16, None),
          11: ("msg", 16, 1 << 20, ATTR), 12: ("bytes", 1, 32, None),
          13: ("bytes", 1, 32, None), 14: ("str", 1, 64, None),
          15: ("bool", 1, 0, None)}
BSIG = {1: ("bytes", 1, 32, None), 2: ("u32", 1, 0, None),
        3: ("u32", 1, 0, None), 4: ("bytes", 16, 32, None),
        5: ("bytes", 1, 64, None)}
SEALED = {1: ("str", 1, 64, None), 2: ("bytes", 1, 80, None)}
ENVELOPE = {1: ("bytes", 1, 8192, None), 2: ("msg", 1, 1 << 20, BSIG),
            3: ("msg", 32, 1 << 20, SEALED),
            4: ("bytes", 1, 16 * 1024 * 1024 + 40, None)}
RECEIPT = {1: ("bytes", 1, 16, None), 2: ("u64", 1, 0, None),
           3: ("str", 32, 64, None), 4: ("str", 32, 64, None),
           5: ("u64", 1, 0, None), 6: ("bytes", 1, 32, None),
           7: ("str", 1, 64, None)}
SRECEIPT = {1: ("bytes", 1, 16384, None), 2: ("msg", 1, 1 << 20, BSIG)}


def read_varint(buf, pos):
    v, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise Refused("MALFORMED")
        b = buf[pos]
        pos += 1
        if b == 0 and shift > 0:
            raise Refused("MALFORMED")  # non-minimal
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            if v >= 1 << 64:
                raise Refused("MALFORMED")
            return v, pos
        shift += 7


def decode(buf, table):
    """Returns {field: [values]}; strings as str, messages as dicts."""
    out, pos = {}, 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num not in table:
            raise Refused("MALFORMED")
        kind, max_count, max_len, sub = table[num]
        vals = out.setdefault(num, [])
        if len(vals) + 1 > max_count:
            raise Refused("MALFORMED" if max_count == 1 else "TOO_LARGE")
        if kind in ("u64", "u32", "bool"):
            if wt != 0:
                raise Refused("MALFORMED")
            v, pos = read_varint(buf, pos)
            if (kind == "u32" and v > M32) or (kind == "bool" and v > 1):
                raise Refused("MALFORMED")
            vals.append(v)
            continue
        if wt != 2:
            raise Refused("MALFORMED")
        n, pos = read_varint(buf, pos)
        if n > len(buf) - pos:
            raise Refused("MALFORMED")
        if n > max_len:
            raise Refused("TOO_LARGE")
        data = bytes(buf[pos:pos + n])
        pos += n
        if kind == "str":
            if any(c < 0x20 or c > 0x7E for c in data):
                raise Refused("BAD_FIELD")
            vals.append(data.decode())
        elif kind == "msg":
            vals.append(decode(data, sub))
        else:
            vals.append(data)
    return out


def one(d, num, default):
    return d.get(num, [default])[0]


NAME = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
REF = NAME | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ:")


def is_name(s, maxlen=64):
    return 0 < len(s) <= maxlen and s[0].isalnum() and set(s) <= NAME


def is_ref(s):
    return len(s) <= 64 and (not s or (s[0].isalnum() and set(s) <= REF))


def exact(b, n, err="BAD_FIELD"):
    if len(b) != n:
        raise Refused(err)
    return b


def parse_bsig(d):
    if d is None:
        raise Refused("BAD_FIELD")
    root = exact(one(d, 1, b""), 32)
    sig = exact(one(d, 5, b""), 64)
    proof = [exact(p, 32, "BAD_PROOF") for p in d.get(4, [])]
    return root, one(d, 2, 0), one(d, 3, 0), proof, sig


def parse_envelope(buf, max_len):
    if max_len and len(buf) > max_len:
        raise Refused("TOO_LARGE")
    e = decode(buf, ENVELOPE)
    keys = []
    for k in e.get(3, []):
        sealed = one(k, 2, b"")
        if len(sealed) != 80:
            raise Refused("NO_SEALED_KEY")
        keys.append((one(k, 1, ""), sealed))
    bsig = parse_bsig(one(e, 2, None))
    hb = one(e, 1, b"")
    h = decode(hb, HEADER)
    hdr = {"message_id": exact(one(h, 1, b""), 16),
           "ciphertext_hash": exact(one(h, 12, b""), 32),
           "key_commitment": exact(one(h, 13, b""), 32),
           "sender": one(h, 2, ""), "recipients": h.get(3, []),
           "message_type": one(h, 4, ""), "case_ref": one(h, 5, ""),
           "purpose": one(h, 6, ""), "created_ms": one(h, 7, 0),
           "expires_ms": one(h, 8, 0), "region": one(h, 10, ""),
           "attributes": [(one(a, 1, ""), one(a, 2, "")) for a in h.get(11, [])],
           "consent_ref": one(h, 14, "")}
    rc = hdr["recipients"]
    ak = [k for k, _ in hdr["attributes"]]
    ok = (is_name(hdr["sender"]) and is_name(hdr["message_type"]) and
          is_name(hdr["purpose"]) and is_ref(hdr["case_ref"]) and
          hdr["case_ref"] != "" and is_ref(hdr["consent_ref"]) and
          all(c.isdigit() or c.isupper() for c in hdr["region"]) and
          len(hdr["region"]) <= 16 and 0 < len(rc) <= 32 and
          all(is_name(r) for r in rc) and
          all(a < b for a, b in zip(rc, rc[1:])) and
          all(is_name(k, 32) for k in ak) and
          all(a < b for a, b in zip(ak, ak[1:])) and
          hdr["created_ms"] > 0 and hdr["expires_ms"] > hdr["created_ms"])
    if not ok:
        raise Refused("BAD_FIELD")
    ct = one(e, 4, b"")
    if len(ct) < 40:
        raise Refused("BAD_FIELD")
    if [k for k, _ in keys] != rc:
        raise Refused("NO_SEALED_KEY")
    return hb, hdr, bsig, keys, ct


def ad_of(hdr):
    def s(x):
        return bytes([len(x)]) + x.encode()
    return (b"schakel.v1 payload\x00" + hdr["message_id"] + s(hdr["sender"]) +
            s(hdr["message_type"]) + s(hdr["case_ref"]) +
            bytes([len(hdr["recipients"])]) +
            b"".join(s(r) for r in hdr["recipients"]))


def verify_sig(label, pk, root, count, sig):
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(
            sig, sig_message(label, count, root))
    except InvalidSignature:
        raise Refused("BAD_SIGNATURE")


def check_envelope(buf, signer_pk, reader, max_len):
    hb, hdr, (root, idx, cnt, proof, sig), keys, ct = parse_envelope(buf, max_len)
    check_proof(leaf_hash(hb), idx, cnt, proof, root)
    verify_sig(b"schakel.v1 batch", signer_pk, root, cnt, sig)
    if b2b(ct) != hdr["ciphertext_hash"]:
        raise Refused("HASH_MISMATCH")
    if reader is None:
        return None
    pid, rpk, rsk = reader
    if pid not in hdr["recipients"]:
        raise Refused("NOT_RECIPIENT")
    ck = seal_open(keys[hdr["recipients"].index(pid)][1], rpk, rsk)
    if ck is None:
        raise Refused("UNSEAL_FAILED")
    if b2b(b"schakel.v1 content key", key=ck) != hdr["key_commitment"]:
        raise Refused("DECRYPT_FAILED")
    aead, nonce = xchacha(ck, ct[:24])
    try:
        return aead.decrypt(nonce, ct[24:], ad_of(hdr))
    except InvalidTag:
        raise Refused("DECRYPT_FAILED")


def check_receipt(buf, pk):
    if len(buf) > 16384 + 1024:
        raise Refused("TOO_LARGE")
    s = decode(buf, SRECEIPT)
    body = one(s, 1, b"")
    r = decode(body, RECEIPT)
    exact(one(r, 1, b""), 16)
    exact(one(r, 6, b""), 32)
    if len(r.get(3, [])) != len(r.get(4, [])):
        raise Refused("BAD_FIELD")
    root, idx, cnt, proof, sig = parse_bsig(one(s, 2, None))
    check_proof(leaf_hash(body), idx, cnt, proof, root)
    verify_sig(b"schakel.v1 receipt", pk, root, cnt, sig)


# ---- the checks -----------------------------------------------------------

def H(x):
    return bytes.fromhex(x)


def main():
    v = json.load(open(sys.argv[1]))
    parties = {}
    for p in v["parties"]:
        sk = Ed25519PrivateKey.from_private_bytes(H(p["sign_seed"]))
        assert sk.public_key().public_bytes(RAW, RAWPUB) == H(p["sign_pk"])
        assert x25519_pub(H(p["box_sk"])) == H(p["box_pk"])
        parties[p["id"]] = (sk, H(p["sign_pk"]), H(p["box_pk"]), H(p["box_sk"]))
    checked = 0
    for b in v["batches"]:
        sk, pk = parties[b["signer"]][0], parties[b["signer"]][1]
        built = []
        for m in b["messages"]:
            i, x = m["input"], m["expect"]
            h = dict(i["header"])
            h["message_id"] = H(h["message_id"])
            h["recipients"] = sorted(h["recipients"])
            ck, nonce, payload = H(i["content_key"]), H(i["nonce"]), H(i["payload"])
            ad = ad_of(h)
            assert ad == H(x["associated_data"]), "AD"
            aead, n12 = xchacha(ck, nonce)
            ct = nonce + aead.encrypt(n12, payload, ad)
            assert ct == H(x["ciphertext"]), "ciphertext"
            h["ciphertext_hash"] = b2b(ct)
            h["key_commitment"] = b2b(b"schakel.v1 content key", key=ck)
            keys = [(r, seal_seeded(ck, parties[r][2], H(seed)))
                    for r, seed in zip(h["recipients"], i["eph_seeds"])]
            for (r, sealed), want in zip(keys, x["sealed_keys"]):
                assert sealed == H(want["sealed"]) and r == want["recipient"]
            hb = enc_header(h)
            assert hb == H(x["header_bytes"]), "header bytes"
            built.append((hb, keys, ct, x))
        leaves = [leaf_hash(hb) for hb, _, _, _ in built]
        root = mth(leaves)
        assert root == H(b["root"]), "root"
        msg = sig_message(b"schakel.v1 batch", len(leaves), root)
        assert msg == H(b["signed_message"])
        sig = sk.sign(msg)
        assert sig == H(b["signature"]), "signature"
        for idx, (hb, keys, ct, x) in enumerate(built):
            proof = audit_path(idx, leaves)
            assert [p.hex() for p in proof] == x["proof"], "proof"
            env = (f_len(1, hb) + f_len(2, enc_bsig(root, idx, len(leaves), proof, sig), True) +
                   b"".join(f_len(3, f_len(1, r.encode()) + f_len(2, s), True) for r, s in keys) +
                   f_len(4, ct))
            assert env == H(x["envelope"]), "envelope"
            for r, _ in keys:
                check_envelope(env, pk, (r, parties[r][2], parties[r][3]), 0)
            checked += 1
    for g in v["receipt_groups"]:
        sk, pk = parties[g["signer"]][0], parties[g["signer"]][1]
        bodies = []
        for r in g["receipts"]:
            i = r["input"]
            body = (f_len(1, H(i["message_id"])) + f_int(2, i["accepted_ms"]) +
                    b"".join(f_len(3, x.encode(), True) for x in i["recipients"]) +
                    b"".join(f_len(4, x.encode(), True) for x in i["agreement_ids"]) +
                    f_int(5, i["store_seq"]) + f_len(6, H(i["header_hash"])) +
                    f_len(7, i["sender"].encode()))
            assert body == H(r["expect"]["receipt_bytes"]), "receipt bytes"
            bodies.append(body)
        leaves = [leaf_hash(x) for x in bodies]
        root = mth(leaves)
        sig = sk.sign(sig_message(b"schakel.v1 receipt", len(leaves), root))
        assert root == H(g["root"]) and sig == H(g["signature"])
        for idx, body in enumerate(bodies):
            sr = f_len(1, body) + f_len(2, enc_bsig(root, idx, len(leaves),
                                                    audit_path(idx, leaves), sig), True)
            assert sr == H(g["receipts"][idx]["expect"]["signed_receipt"])
            check_receipt(sr, pk)
            checked += 1
    failures = 0
    for n in v["negative"]:
        signer = parties[n["signer"]]
        reader = n["reader"]
        rd = (reader, parties[reader][2], parties[reader][3]) if reader else None
        try:
            if n["kind"] == "receipt":
                check_receipt(H(n["input"]), signer[1])
            else:
                check_envelope(H(n["input"]), signer[1], rd, n["max_len"])
            got = "OK"
        except Refused as e:
            got = e.name
        if got != n["expect"] or ERR[got] != n["expect_code"]:
            print(f"negative {n['name']}: got {got}, want {n['expect']}")
            failures += 1
        checked += 1
    print(f"{checked} vectors checked independently, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
