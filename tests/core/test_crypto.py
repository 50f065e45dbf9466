"""Field encryption, key rotation, look-up hashes, tokens and key loading."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.core.crypto import (
    FORMAT_VERSION,
    NONCE_SIZE,
    DecryptionError,
    FieldCipher,
    hash_token,
    keyed_hash,
    load_keys,
    new_token,
)

CTX = b"customer_profile.id_number"
K1 = bytes(range(32))
K2 = bytes(range(32, 64))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@given(st.text(max_size=200))
def test_round_trip(plaintext: str) -> None:
    cipher = FieldCipher(K1)
    assert cipher.decrypt(cipher.encrypt(plaintext, context=CTX), context=CTX) == plaintext


def test_blob_layout_and_random_nonce() -> None:
    cipher = FieldCipher(K1, key_id=7)
    a = cipher.encrypt("620102199001011234", context=CTX)
    b = cipher.encrypt("620102199001011234", context=CTX)
    assert a[0] == FORMAT_VERSION and a[1] == 7
    assert len(a) == 2 + NONCE_SIZE + len("620102199001011234") + 16
    assert a != b  # fresh nonce every time
    assert b"620102" not in a


def test_every_flipped_bit_is_detected() -> None:
    cipher = FieldCipher(K1)
    blob = cipher.encrypt("secret value", context=CTX)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[i] ^= bit
            with pytest.raises(DecryptionError):
                cipher.decrypt(bytes(tampered), context=CTX)


def test_truncated_and_unknown_version() -> None:
    cipher = FieldCipher(K1)
    blob = cipher.encrypt("x", context=CTX)
    with pytest.raises(DecryptionError, match="too short"):
        cipher.decrypt(blob[:10], context=CTX)
    with pytest.raises(DecryptionError, match="version"):
        cipher.decrypt(b"\x09" + blob[1:], context=CTX)


def test_wrong_context_and_wrong_key() -> None:
    blob = FieldCipher(K1).encrypt("13812345678", context=CTX)
    with pytest.raises(DecryptionError, match="authentication"):
        FieldCipher(K1).decrypt(blob, context=b"customer_profile.phone")
    with pytest.raises(DecryptionError, match="authentication"):
        FieldCipher(K2).decrypt(blob, context=CTX)  # same key id 1, different key


def test_context_is_required() -> None:
    with pytest.raises(ValueError):
        FieldCipher(K1).encrypt("x", context=b"")


def test_key_rotation() -> None:
    old = FieldCipher(K1, key_id=1)
    old_blob = old.encrypt("6222021234567890128", context=CTX)
    rotated = FieldCipher(K2, key_id=2, old_keys={1: K1})
    assert rotated.decrypt(old_blob, context=CTX) == "6222021234567890128"
    assert rotated.needs_rotation(old_blob)
    new_blob = rotated.encrypt("6222021234567890128", context=CTX)
    assert new_blob[1] == 2 and not rotated.needs_rotation(new_blob)
    assert rotated.primary_key_id == 2 and rotated.key_ids == {1, 2}
    # a process that has not learnt the new key says so plainly
    with pytest.raises(DecryptionError, match="key id 2"):
        old.decrypt(new_blob, context=CTX)
    # relabelling the key id byte does not help: the header is authenticated
    relabelled = bytes([new_blob[0], 1]) + new_blob[2:]
    with pytest.raises(DecryptionError):
        rotated.decrypt(relabelled, context=CTX)


def test_bad_keys_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(b"short")
    with pytest.raises(ValueError, match="one byte"):
        FieldCipher(K1, key_id=256)
    with pytest.raises(ValueError, match="different old key"):
        FieldCipher(K1, key_id=1, old_keys={1: K2})
    assert "K1" not in repr(FieldCipher(K1)) and b64(K1) not in repr(FieldCipher(K1))


def test_keyed_hash() -> None:
    a = keyed_hash("11010519491231002X", K1)
    assert len(a) == 32
    assert a == keyed_hash("11010519491231002X", K1)
    assert a == keyed_hash(" 11010519491231002x ", K1)  # normalized: whitespace, case
    assert a == keyed_hash("１１０１０５１９４９１２３１００２Ｘ", K1)  # full-width digits fold (NFKC)
    assert a != keyed_hash("11010519491231002X", K2)
    assert a != keyed_hash("110105194912310021", K1)
    with pytest.raises(ValueError):
        keyed_hash("x", b"short key")


def test_tokens() -> None:
    t1, t2 = new_token(), new_token()
    assert t1 != t2 and len(t1) >= 43
    assert len(new_token(16)) >= 21
    assert hash_token(t1) == hash_token(t1) and len(hash_token(t1)) == 32
    assert hash_token(t1) != hash_token(t2)


# --- load_keys -----------------------------------------------------------------------------------------


def test_load_keys_from_configuration(tmp_path: Path) -> None:
    keys = load_keys(
        f"3:{b64(K2)}", tmp_path, True, old_keys=f"1:{b64(K1)}, 2:{b64(bytes(32))}", lookup_key=b64(K1)
    )
    assert keys.cipher.primary_key_id == 3 and keys.cipher.key_ids == {1, 2, 3}
    assert keys.lookup_key == K1
    assert not (tmp_path / "keys.json").exists()
    blob = FieldCipher(K1, key_id=1).encrypt("v", context=CTX)
    assert keys.cipher.decrypt(blob, context=CTX) == "v"
    # no id prefix: key id 1; URL-safe base64 without padding works too
    plain = load_keys(base64.urlsafe_b64encode(K2).decode().rstrip("="), tmp_path, True, lookup_key=b64(K1))
    assert plain.cipher.primary_key_id == 1


def test_production_without_keys_exits(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="ETCW_ENCRYPTION_KEY and ETCW_LOOKUP_KEY"):
        load_keys(None, tmp_path, True)
    with pytest.raises(SystemExit, match="ETCW_LOOKUP_KEY"):
        load_keys(b64(K1), tmp_path, True)
    assert not (tmp_path / "keys.json").exists()


@pytest.mark.parametrize(
    ("enc", "old", "lookup", "message"),
    [
        ("not base64!!", None, b64(K1), "not valid base64"),
        (b64(b"too short"), None, b64(K1), "32 bytes"),
        ("999:" + b64(K1), None, b64(K1), "0 to 255"),
        (b64(K1), b64(K2), b64(K1), "id:base64"),
        (b64(K1), f"2:{b64(K2)},2:{b64(K2)}", b64(K1), "twice"),
        (b64(K1), f"1:{b64(K2)}", b64(K1), "different old key"),
        (b64(K1), None, b64(b"tiny"), "at least 32"),
    ],
)
def test_malformed_configuration_exits(
    tmp_path: Path, enc: str, old: str | None, lookup: str, message: str
) -> None:
    with pytest.raises(SystemExit, match=message) as err:
        load_keys(enc, tmp_path, True, old_keys=old, lookup_key=lookup)
    assert b64(K1) not in str(err.value)


def test_development_generates_keys_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = load_keys(None, data_dir, False)
    path = data_dir / "keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) == {"encryption_key", "lookup_key"}
    assert first.source == str(path)
    second = load_keys(None, data_dir, False)
    assert second.lookup_key == first.lookup_key
    blob = first.cipher.encrypt("persisted", context=CTX)
    assert second.cipher.decrypt(blob, context=CTX) == "persisted"
    assert [p.name for p in data_dir.iterdir()] == ["keys.json"]  # no temporary files left behind


def test_development_configuration_wins_over_file(tmp_path: Path) -> None:
    load_keys(None, tmp_path, False)
    keys = load_keys(b64(K2), tmp_path, False)
    assert keys.cipher.decrypt(FieldCipher(K2).encrypt("v", context=CTX), context=CTX) == "v"
    assert keys.lookup_key != K2  # the missing lookup key still came from the file


def test_development_keys_file_with_old_keys(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(
        json.dumps({"encryption_key": f"2:{b64(K2)}", "lookup_key": b64(K1), "old_keys": f"1:{b64(K1)}"})
    )
    keys = load_keys(None, tmp_path, False)
    assert keys.cipher.key_ids == {1, 2}


def test_development_corrupt_keys_file_exits(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"keys\.json"):
        load_keys(None, tmp_path, False)
    (tmp_path / "keys.json").write_text(json.dumps({"encryption_key": b64(K1)}))
    with pytest.raises(SystemExit, match="lookup_key"):
        load_keys(None, tmp_path, False)
