"""云真机 callback encryption (vendor-formats.md §4b): AES-256-CBC, IV = the key's first
16 bytes, PKCS#7 padding to 32-byte blocks, the ciphertext base64-encoded.

Pure, and total: any malformation raises BadPayload, never anything else.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from receiver.errors import BadPayload

BLOCK = 32  # the vendor pads to 32 bytes, as WeChat does, not to AES's 16


def decode_key(key: str) -> bytes:
    """The 32 key bytes from the key as issued: 32 characters, or 43 of base64 (WeChat style)."""
    raw = key.strip()
    if len(raw.encode()) == 32:
        return raw.encode()
    unpadded = raw.rstrip("=")  # tolerate the 44-character form with its "=" kept
    if len(unpadded) == 43:
        try:
            decoded = base64.b64decode(unpadded + "=", validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) == 32:
            return decoded
    raise ValueError("the 云真机 encoding_aes_key must be 32 characters, or 43 of base64")


def _ciphertext_text(body: bytes) -> bytes:
    """The base64 text from a raw body, a JSON string, or {"encrypt": "..."}."""
    text = body.strip()
    if not text:
        raise BadPayload("The body is empty.", code="empty_body")
    if text[:1] in (b"{", b'"'):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise BadPayload("The body looks like JSON but is not valid JSON.",
                             code="invalid_json") from None
        if isinstance(obj, dict):
            obj = obj.get("encrypt")
        if not isinstance(obj, str):
            raise BadPayload('Expected base64 ciphertext, a JSON string or {"encrypt": "..."}.',
                             code="wrong_shape")
        text = obj.encode(errors="replace")  # a lone surrogate fails as base64, not here
    # Java's MIME encoders wrap base64 at 76 characters; the line breaks carry nothing.
    return b"".join(text.split())


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes) -> Cipher[modes.CBC]:
    """The key's cipher (the IV is fixed: the key's first 16 bytes), made once per key."""
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def decrypt(body: bytes, key: bytes) -> bytes:
    """The plaintext of an encrypted callback body."""
    try:
        ciphertext = base64.b64decode(_ciphertext_text(body), validate=True)
    except (binascii.Error, ValueError):
        raise BadPayload("The body is not base64 ciphertext.", code="decryption_failed") from None
    if not ciphertext or len(ciphertext) % 16:
        raise BadPayload("The ciphertext is not a whole number of AES blocks.",
                         code="decryption_failed")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise BadPayload("The body did not decrypt with the configured key (bad padding).",
                         code="decryption_failed")
    return plain[:-pad]


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    """The inverse of decrypt, base64 text out: what the vendor (or our simulator) sends."""
    pad = BLOCK - len(plaintext) % BLOCK
    padded = plaintext + bytes([pad]) * pad
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize())
