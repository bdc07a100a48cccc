#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# An independent implementation of coffer's formats on python3-cryptography, for interop tests.
"""Independent implementation of coffer-v1, Cobblestone and velero-v1 for interop tests.

Written from the specifications only (c2sp.org/chunked-encryption and coffer's DESIGN.md), with
no code shared with coffer: HKDF-Expand(SHA-512) and AES-GCM come from the 'cryptography'
package. The C test tests/cli/cli_interop_test.c drives it.

usage:
  interop.py check-import
  interop.py selftest VECTORS_DIR
  interop.py coffer-decrypt KEYFILE IN OUT
  interop.py cobblestone-decrypt 128|256 KEYFILE CONTEXT IN OUT
  interop.py cobblestone-encrypt 128|256 KEYFILE CONTEXT IN OUT
  interop.py velero-decrypt KEYFILE IN OUT
  interop.py velero-encrypt KEYFILE IN OUT

Exit status: 0 on success, 1 when a decryption is refused (the reason on stderr), 2 on misuse.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import sys
import zlib

CHUNK = 16384
TAG = 16
SALT = 24
COMMIT = 32
NONCE = 12
MAGIC = b"COFFER\x00\x01"


class Refused(Exception):
    """A decryption that must fail (wrong key, tampering, truncation, trailing data)."""


def load_key(path):
    """Key file bytes: base64 or hex text of 16/24/32 bytes, else the raw bytes."""
    with open(path, "rb") as f:
        data = f.read()
    text = data[:-1] if data.endswith(b"\n") else data
    try:
        if len(text) in (32, 48, 64):
            raw = binascii.unhexlify(text)
            if len(raw) in (16, 24, 32):
                return raw
    except (binascii.Error, ValueError):
        pass
    try:
        if len(text) in (24, 32, 44):
            raw = base64.b64decode(text, validate=True)
            if len(raw) in (16, 24, 32):
                return raw
    except (binascii.Error, ValueError):
        pass
    return data


def c2sp_derive(key, salt, context):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    if len(key) not in (16, 32):
        raise Refused("input key must be 16 or 32 bytes, not %d" % len(key))
    label = b"c2sp.org/chunked-encryption@v1+AEAD_AES_%d_GCM" % (len(key) * 8)
    info = label + b"\x00" + salt + context
    okm = HKDFExpand(hashes.SHA512(), len(key) + NONCE + COMMIT, info).derive(key)
    return okm[: len(key)], okm[len(key) : len(key) + NONCE], okm[len(key) + NONCE :]


def chunk_nonce(base, i):
    n = int.from_bytes(base, "big") ^ i
    return n.to_bytes(NONCE, "big")


def c2sp_decrypt(key, context, ct):
    """c2sp.org/chunked-encryption decryption of a whole message."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(ct) < SALT + COMMIT:
        raise Refused("truncated: no salt and commitment")
    salt, commitment = ct[:SALT], ct[SALT : SALT + COMMIT]
    aead_key, base, expected = c2sp_derive(key, salt, context)
    if not hmac.compare_digest(expected, commitment):
        raise Refused("key commitment mismatch")
    aead = AESGCM(aead_key)
    body = memoryview(ct)[SALT + COMMIT :]
    out = bytearray()
    pos, i = 0, 0
    while len(body) - pos >= CHUNK + TAG:  # every full chunk; the final one is always shorter
        try:
            out += aead.decrypt(chunk_nonce(base, i), bytes(body[pos : pos + CHUNK + TAG]), None)
        except InvalidTag:
            raise Refused("chunk %d failed authentication" % i)
        pos += CHUNK + TAG
        i += 1
    rest = len(body) - pos
    if rest < TAG:
        raise Refused("truncated: the short final chunk is missing")
    try:
        out += aead.decrypt(chunk_nonce(base, i), bytes(body[pos:]), None)
    except InvalidTag:
        raise Refused("final chunk %d failed authentication" % i)
    return bytes(out)


def c2sp_encrypt(key, context, msg):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = os.urandom(SALT)
    aead_key, base, commitment = c2sp_derive(key, salt, context)
    aead = AESGCM(aead_key)
    out = bytearray(salt + commitment)
    nfull = len(msg) // CHUNK  # a multiple of CHUNK still ends with an empty final chunk
    for i in range(nfull + 1):
        out += aead.encrypt(chunk_nonce(base, i), msg[i * CHUNK : (i + 1) * CHUNK], None)
    return bytes(out)


def coffer_decrypt(key, data):
    """coffer-v1: "COFFER" 0 1 || u32be length || metadata, then Cobblestone-256, context = header."""
    if len(data) < 12 or data[:8] != MAGIC:
        raise Refused("not a coffer-v1 file")
    (mlen,) = struct.unpack(">I", data[8:12])
    if len(data) < 12 + mlen:
        raise Refused("truncated header")
    header = data[: 12 + mlen]
    meta = json.loads(header[12:].decode("utf-8"))
    if meta.get("isEncrypted") is not True or meta.get("format") != "coffer-v1":
        raise Refused("unexpected metadata %r" % meta)
    if len(key) != 32:
        raise Refused("coffer-v1 needs a 32-byte key")
    return c2sp_decrypt(key, header, data[12 + mlen :])


def velero_decrypt(key, data):
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(data) < NONCE + TAG:
        raise Refused("truncated")
    try:
        return AESGCM(key).decrypt(data[:NONCE], data[NONCE:], None)
    except InvalidTag:
        raise Refused("tag mismatch")


def velero_encrypt(key, msg):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, msg, None)


def selftest(vectors_dir):
    """Apply Wycheproof's c2sp vectors to this implementation, so that it is itself checked."""
    count = 0
    for bits in (128, 256):
        path = os.path.join(vectors_dir, "wycheproof_c2sp_chunked_encryption_aes_%d_gcm_test.json" % bits)
        with open(path) as f:
            doc = json.load(f)
        for group in doc["testGroups"]:
            for t in group["tests"]:
                key = bytes.fromhex(t["key"])
                ctx = bytes.fromhex(t["ctx"])
                ct = zlib.decompress(bytes.fromhex(t["ct"]))
                try:
                    if len(key) != bits // 8:
                        raise Refused("key size")
                    msg = c2sp_decrypt(key, ctx, ct)
                    ok = True
                except Refused:
                    ok = False
                if t["result"] == "valid":
                    if not ok or len(msg) != t["msgLength"] or hashlib.sha512(msg).hexdigest() != t["msgSha512"]:
                        sys.exit("selftest: %d-bit tcId %d: valid vector failed" % (bits, t["tcId"]))
                elif ok:
                    sys.exit("selftest: %d-bit tcId %d: invalid vector accepted" % (bits, t["tcId"]))
                count += 1
    print("selftest: %d vectors passed" % count)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "check-import":
            import cryptography  # noqa: F401
            from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand  # noqa: F401
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
        elif cmd == "selftest" and len(args) == 1:
            selftest(args[0])
        elif cmd == "coffer-decrypt" and len(args) == 3:
            write(args[2], coffer_decrypt(load_key(args[0]), read(args[1])))
        elif cmd == "cobblestone-decrypt" and len(args) == 5:
            key = load_key(args[1])
            if len(key) * 8 != int(args[0]):
                raise Refused("key size")
            write(args[4], c2sp_decrypt(key, args[2].encode(), read(args[3])))
        elif cmd == "cobblestone-encrypt" and len(args) == 5:
            key = load_key(args[1])
            if len(key) * 8 != int(args[0]):
                raise Refused("key size")
            write(args[4], c2sp_encrypt(key, args[2].encode(), read(args[3])))
        elif cmd == "velero-decrypt" and len(args) == 3:
            write(args[2], velero_decrypt(read(args[0]), read(args[1])))
        elif cmd == "velero-encrypt" and len(args) == 3:
            write(args[2], velero_encrypt(read(args[0]), read(args[1])))
        else:
            sys.stderr.write(__doc__)
            return 2
    except ImportError as e:
        sys.stderr.write("interop.py: %s\n" % e)
        return 3
    except Refused as e:
        sys.stderr.write("interop.py: refused: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
