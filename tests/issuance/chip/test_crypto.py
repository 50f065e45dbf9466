"""The spec's test vectors (§11) and the properties of the diversification and the algorithm switch."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.issuance.chip import crypto

h = bytes.fromhex
DLK = h("00112233445566778899AABBCCDDEEFF")
DPK = h("FFEEDDCCBBAA99887766554433221100")
DTK = h("5A3C96E1F00D7B421D8E6B20C4A9F375")
TERMINAL = h("112233445566")
DATE, TIME = h("20240101"), h("120000")


@pytest.mark.parametrize(
    ("padding", "mac"), [(2, "2BC2D9EDE0CF31F6"), (1, "78DA3D3DEB48FD4D"), (3, "1789FED38FC05D1B")]
)
def test_retail_mac_vectors(padding: crypto.Padding, mac: str) -> None:
    key = h("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    assert crypto.retail_mac(key, b"hello world", padding=padding) == h(mac)


def test_retail_mac_without_padding() -> None:
    key = h("7CA110454A1A6E570131D9619DC1376E")
    assert crypto.retail_mac(key, b"Hello World !!!!", padding=0) == h("F09B856213BAB83B")
    with pytest.raises(ValueError, match="multiple of 8"):
        crypto.retail_mac(key, b"Hello World !!!", padding=0)


@pytest.mark.parametrize(
    ("key", "challenge", "data", "mac"),
    [
        ("FF" * 16, "44A47DEB", "04D600001411223344556677889900AABBCCDDEEFF", "F2F62231"),
        ("FF" * 16, "D0FE4FB9", "11223344556677889900AABBCCDDEEFF", "8D318577"),
        ("FF" * 16, "D0FE4FB9", "04B0000004", "F09C8A19"),
        (
            "36" * 16,
            "A3BBCFC8",
            "04D6950022000122000001FFFF01010000220000000000000620160101205012310000",
            "96E32EF1",
        ),
    ],
)
def test_line_protection_vectors(key: str, challenge: str, data: str, mac: str) -> None:
    assert crypto.line_protection_mac(h(key), h(challenge), h(data)) == h(mac)


def test_paddings() -> None:
    assert crypto.pad_method_1(b"") == bytes(8)
    assert crypto.pad_method_1(bytes(8)) == bytes(8)
    assert crypto.pad_method_2(bytes(8)) == bytes(8) + h("8000000000000000")
    assert crypto.pad_method_2(b"\x01" * 7) == b"\x01" * 7 + b"\x80"
    assert crypto.pad_method_3(b"abc") == (24).to_bytes(8, "big") + b"abc" + bytes(5)
    assert crypto.pad_method_2(b"x", 16) == b"x\x80" + bytes(14)


def test_tac_key_is_the_xor_of_the_dtk_halves() -> None:
    assert crypto.tac_key(DTK) == h("47B2FDC134A48837")


def test_load_vectors() -> None:
    session_key = crypto.load_session_key(DLK, h("12345678"), 1)
    assert session_key == h("AB1876F3F28947B0")
    assert crypto.load_mac1(session_key, old_balance=0, amount=0x2710, terminal_id=TERMINAL) == h("513BEA44")
    mac2 = crypto.load_mac2(session_key, amount=0x2710, terminal_id=TERMINAL, date=DATE, time=TIME)
    assert mac2 == h("BB016A2A")
    tac = crypto.load_tac(
        DTK, new_balance=0x2710, online_serial=1, amount=0x2710, terminal_id=TERMINAL, date=DATE, time=TIME
    )
    assert tac == h("DC684AE3")


@pytest.mark.parametrize(
    ("kind", "mac1", "tac"), [(0x06, "A07F3032", "F7A811B0"), (0x09, "0499D9DF", "366F5BCC")]
)
def test_purchase_vectors(kind: int, mac1: str, tac: str) -> None:
    session_key = crypto.purchase_session_key(DPK, h("A1B2C3D4"), 5, 0x123)
    assert session_key == h("E47DCDC06F1F2650")
    assert crypto.purchase_mac1(
        session_key, amount=1000, transaction_type=kind, terminal_id=TERMINAL, date=DATE, time=TIME
    ) == h(mac1)
    assert crypto.purchase_mac2(session_key, amount=1000) == h("F86E175E")
    assert crypto.purchase_tac(
        DTK,
        amount=1000,
        transaction_type=kind,
        terminal_id=TERMINAL,
        terminal_serial=0x123,
        date=DATE,
        time=TIME,
    ) == h(tac)


def test_purchase_refuses_other_transaction_types() -> None:
    with pytest.raises(ValueError, match="06 or 09"):
        crypto.purchase_mac1(
            bytes(8), amount=1, transaction_type=0x02, terminal_id=TERMINAL, date=DATE, time=TIME
        )


def test_bad_lengths_and_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="random"):
        crypto.load_session_key(DLK, b"\x01\x02\x03", 1)
    with pytest.raises(ValueError, match="online serial"):
        crypto.load_session_key(DLK, bytes(4), 0x10000)
    with pytest.raises(ValueError, match="amount"):
        crypto.load_mac1(bytes(8), old_balance=0, amount=-1, terminal_id=TERMINAL)
    with pytest.raises(ValueError, match="terminal id"):
        crypto.load_mac1(bytes(8), old_balance=0, amount=1, terminal_id=b"\x01")
    with pytest.raises(ValueError, match="challenge"):
        crypto.line_protection_mac(DLK, bytes(8), b"x")


# --- diversification ---------------------------------------------------------------------------------


def _ede(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


keys16 = st.binary(min_size=16, max_size=16)
factors = st.binary(min_size=8, max_size=8)


@given(key=keys16, factor=factors)
def test_diversification_is_the_pboc_construction(key: bytes, factor: bytes) -> None:
    sub = crypto.diversify(key, factor)
    assert len(sub) == 16
    assert sub[:8] == _ede(key, factor)
    assert sub[8:] == _ede(key, bytes(b ^ 0xFF for b in factor))
    assert crypto.diversify(key, factor) == sub  # deterministic


@given(key=keys16, first=factors, second=factors)
def test_different_factors_give_different_keys(key: bytes, first: bytes, second: bytes) -> None:
    if first != second:
        assert crypto.diversify(key, first) != crypto.diversify(key, second)


@given(first=keys16, second=keys16, factor=factors)
def test_different_masters_give_different_keys(first: bytes, second: bytes, factor: bytes) -> None:
    if first != second:
        assert crypto.diversify(first, factor) != crypto.diversify(second, factor)


def test_diversification_refuses_bad_lengths() -> None:
    with pytest.raises(ValueError, match="16-byte key"):
        crypto.diversify(bytes(8), bytes(8))
    with pytest.raises(ValueError, match="8-byte factor"):
        crypto.diversify(bytes(16), bytes(4))


# --- algorithm strategy --------------------------------------------------------------------------------


def test_algorithm_by_id() -> None:
    assert crypto.purse_algorithm(0x00) is crypto.TRIPLE_DES
    with pytest.raises(crypto.UnsupportedAlgorithm, match="unverified"):
        crypto.purse_algorithm(0x04)
    assert crypto.purse_algorithm(0x04, allow_unverified=True) is crypto.SM4
    with pytest.raises(crypto.UnsupportedAlgorithm, match="7F"):
        crypto.purse_algorithm(0x7F, allow_unverified=True)


def test_sm4_is_the_same_construction_with_16_byte_blocks() -> None:
    sm4 = crypto.SM4
    session_key = crypto.load_session_key(DLK, h("12345678"), 1, sm4)
    assert len(session_key) == 16
    assert session_key == crypto.sm4_encrypt(DLK, h("12345678") + h("0001") + h("8000") + b"\x80" + bytes(7))
    assert len(crypto.diversify(DLK, bytes(8), sm4)) == 16
    assert crypto.tac_key(DTK, sm4) == DTK
    mac = crypto.load_mac1(session_key, old_balance=0, amount=1, terminal_id=TERMINAL, algorithm=sm4)
    assert len(mac) == 4
    assert mac != crypto.load_mac1(session_key, old_balance=0, amount=2, terminal_id=TERMINAL, algorithm=sm4)
