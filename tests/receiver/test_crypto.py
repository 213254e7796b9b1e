"""云真机 callback encryption (vendor-formats.md §4b): the published test vector, the body forms
the vendor may use, and that every malformed body is a BadPayload, never anything else."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from receiver import crypto
from receiver.errors import BadPayload

WEBHOOKS = Path(__file__).parents[1] / "data" / "webhooks"
KEY_TEXT = "replywindowTestVectorKey32bytes!"
KEY = KEY_TEXT.encode()
PLAIN = (WEBHOOKS / "yzj_test_vector_plain.json").read_bytes()
CIPHER = (WEBHOOKS / "yzj_test_vector_cipher.txt").read_bytes().strip()
# The same 32 key bytes in WeChat's 43-character base64 form.
KEY_43 = base64.b64encode(KEY).decode().rstrip("=")
RAW_CIPHER = base64.b64decode(CIPHER)


def _reencode(ciphertext: bytes) -> bytes:
    return base64.b64encode(ciphertext)


# -- the test vector ------------------------------------------------------------------------


def test_the_test_vector_decrypts_exactly() -> None:
    assert crypto.decrypt(CIPHER, KEY) == PLAIN
    assert json.loads(PLAIN)[0]["data"][0]["content"]["items"][0]["text"] == "你好"


def test_encrypt_reproduces_the_test_vector_byte_for_byte() -> None:
    assert crypto.encrypt(PLAIN, KEY) == CIPHER


def test_the_test_vector_is_padded_to_32_byte_blocks() -> None:
    assert len(PLAIN) == 239
    assert len(RAW_CIPHER) == 256  # 239 + 17 bytes of padding; AES-style 16 would give 240


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CIPHER, id="raw base64"),
        pytest.param(b"  \r\n" + CIPHER + b"\n", id="raw base64 with surrounding whitespace"),
        pytest.param(json.dumps(CIPHER.decode()).encode(), id="a JSON string"),
        pytest.param(json.dumps({"encrypt": CIPHER.decode()}).encode(), id='{"encrypt": ...}'),
        pytest.param(json.dumps({"encrypt": CIPHER.decode(), "appid": "x"}).encode(),
                     id='{"encrypt": ...} with other fields'),
        pytest.param(json.dumps({"encrypt": f" {CIPHER.decode()} "}).encode(),
                     id="padded JSON string value"),
        pytest.param(b"\n".join(CIPHER[i:i + 76] for i in range(0, len(CIPHER), 76)),
                     id="MIME base64 wrapped at 76 characters"),
    ],
)
def test_every_body_form_decrypts(body: bytes) -> None:
    assert crypto.decrypt(body, KEY) == PLAIN


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(KEY_TEXT, KEY, id="32 characters"),
        pytest.param(f"  {KEY_TEXT}\n", KEY, id="32 characters with whitespace"),
        pytest.param(KEY_43, KEY, id="43 characters of base64 (WeChat)"),
        pytest.param(KEY_43 + "=", KEY, id="44 characters, padding kept"),
    ],
)
def test_decode_key(key: str, expected: bytes) -> None:
    assert crypto.decode_key(key) == expected


def test_a_wechat_style_key_decrypts_what_its_bytes_encrypted() -> None:
    raw = bytes(range(32))
    key_43 = base64.b64encode(raw).decode().rstrip("=")
    assert len(key_43) == 43
    body = crypto.encrypt(PLAIN, raw)

    assert crypto.decrypt(body, crypto.decode_key(key_43)) == PLAIN


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("short", id="5 characters"),
        pytest.param(KEY_TEXT[:-1], id="31 characters"),
        pytest.param(KEY_TEXT + "x", id="33 characters"),
        pytest.param("!" * 43, id="43 characters, not base64"),
        pytest.param(base64.b64encode(b"x" * 31).decode().rstrip("="), id="base64 of 31 bytes"),
        pytest.param("k" * 64, id="64 characters"),
    ],
)
def test_decode_key_rejects_other_lengths(key: str) -> None:
    with pytest.raises(ValueError, match="32 characters"):
        crypto.decode_key(key)


# -- malformed bodies ------------------------------------------------------------------------


def _without_padding(padded: bytes) -> bytes:
    """Encrypt exactly these blocks, so a test can choose the padding bytes."""
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize())


@pytest.mark.parametrize(
    ("body", "key", "code"),
    [
        pytest.param(CIPHER, b"W" * 32, "decryption_failed", id="wrong key"),
        pytest.param(CIPHER, KEY[::-1], "decryption_failed", id="wrong key, reversed"),
        pytest.param(_reencode(RAW_CIPHER[:-16]), KEY, "decryption_failed",
                     id="truncated by a block"),
        pytest.param(_reencode(RAW_CIPHER[:16]), KEY, "decryption_failed",
                     id="truncated to one block"),
        pytest.param(CIPHER[:-5], KEY, "decryption_failed", id="truncated base64 text"),
        pytest.param(_reencode(RAW_CIPHER[:-3]), KEY, "decryption_failed",
                     id="not a multiple of 16"),
        pytest.param(_reencode(RAW_CIPHER + b"\x00"), KEY, "decryption_failed",
                     id="one byte too many"),
        pytest.param(_without_padding(b"x" * 31 + bytes([33])), KEY, "decryption_failed",
                     id="pad byte over 32"),
        pytest.param(_without_padding(b"x" * 31 + b"\x00"), KEY, "decryption_failed",
                     id="pad byte 0"),
        pytest.param(_without_padding(b"x" * 29 + b"\x02\x01\x03"), KEY, "decryption_failed",
                     id="pad bytes that disagree"),
        pytest.param(_without_padding(bytes([32]) * 16), KEY, "decryption_failed",
                     id="pad longer than the plaintext"),
        pytest.param(b"not base64 at all!", KEY, "decryption_failed", id="non-base64"),
        pytest.param("密文".encode(), KEY, "decryption_failed", id="non-ASCII"),
        pytest.param(b"\xff\xfe\xfd", KEY, "decryption_failed", id="invalid UTF-8"),
        pytest.param(b"[1, 2, 3]", KEY, "decryption_failed", id="plaintext JSON array"),
        pytest.param(b"====", KEY, "decryption_failed", id="only padding"),
        pytest.param(b"", KEY, "empty_body", id="empty"),
        pytest.param(b"  \r\n\t", KEY, "empty_body", id="whitespace only"),
        pytest.param(b'{"encrypt": 5}', KEY, "wrong_shape", id="encrypt is a number"),
        pytest.param(b'{"encrypt": null}', KEY, "wrong_shape", id="encrypt is null"),
        pytest.param(b'{"other": "x"}', KEY, "wrong_shape", id="no encrypt field"),
        pytest.param(b'{"type": "chatMsg"}', KEY, "wrong_shape", id="plaintext JSON object"),
        pytest.param(b'{"encrypt": ', KEY, "invalid_json", id="invalid JSON object"),
        pytest.param(b'"unterminated', KEY, "invalid_json", id="invalid JSON string"),
        pytest.param(b'{"a":' * 100_000, KEY, "invalid_json", id="nested too deeply"),
        pytest.param(b'"\\ud800"', KEY, "decryption_failed", id="lone surrogate"),
        pytest.param(b'{"encrypt": ""}', KEY, "decryption_failed", id="encrypt is empty"),
    ],
)
def test_a_malformed_body_is_a_bad_payload(body: bytes, key: bytes, code: str) -> None:
    with pytest.raises(BadPayload) as raised:
        crypto.decrypt(body, key)

    assert raised.value.code == code
    assert raised.value.status == 400
    assert raised.value.detail


# -- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [*range(101), 127, 128, 255, 256, 1000])
def test_round_trip_for_every_plaintext_length(length: int) -> None:
    plaintext = bytes((i * 7 + length) % 256 for i in range(length))
    body = crypto.encrypt(plaintext, KEY)
    ciphertext = base64.b64decode(body)

    # Always at least one byte of padding, so an exact multiple of 32 gets a full pad block.
    assert len(ciphertext) == (length // 32 + 1) * 32
    assert crypto.decrypt(body, KEY) == plaintext


@pytest.mark.parametrize("length", [0, 32, 64, 96])
def test_an_exact_multiple_of_32_gets_a_whole_block_of_padding(length: int) -> None:
    ciphertext = base64.b64decode(crypto.encrypt(b"a" * length, KEY))
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()

    assert padded == b"a" * length + bytes([32]) * 32
