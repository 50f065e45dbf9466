"""The APDU codec: the spec's command bytes, the short cases, answers and status words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.issuance.chip import apdu
from etcwallet.issuance.chip.apdu import (
    Balance,
    Challenge,
    Command,
    LoadCredit,
    LoadInit,
    PurchaseDebit,
    PurchaseInit,
    Response,
    StatusWord,
    StatusWordError,
    TransactionProof,
)
from etcwallet.issuance.chip.encoding import InvalidField
from etcwallet.issuance.chip.files import EntryExitRecord, LaneStatus
from etcwallet.issuance.codes import TransactionType, VehicleClass

TERMINAL = bytes.fromhex("112233445566")
NOON = datetime(2024, 1, 1, 12)


@pytest.mark.parametrize(
    ("command", "hex_bytes"),
    [
        (apdu.select_aid(), "00A4040009A00000000386980701"),
        (apdu.select_df(), "00A40000021001"),
        (apdu.get_challenge(), "0084000004"),
        (apdu.verify_pin("123456"), "0020000003123456"),
        (apdu.verify_pin("12345"), "002000000312345F"),
        (apdu.get_balance(), "805C000204"),
        (apdu.initialize_for_load(1, 10000, TERMINAL), "805000020B010000271011223344556610"),
        (apdu.initialize_for_purchase(1, 1000, TERMINAL), "805001020B01000003E81122334455660F"),
        (apdu.initialize_for_capp_purchase(1, 1000, TERMINAL), "805003020B01000003E81122334455660F"),
        (apdu.credit_for_load(NOON, bytes.fromhex("BB016A2A")), "805200000B20240101120000BB016A2A04"),
        (
            apdu.debit_for_purchase(0x123, NOON, bytes.fromhex("A07F3032")),
            "805401000F0000012320240101120000A07F303208",
        ),
        (apdu.get_transaction_prove(TransactionType.LOAD, 2), "805A000202000208"),
        (apdu.read_record_0018(1), "00B201C417"),
        (apdu.read_binary_0015(), "00B0950032"),
        (apdu.read_binary_0016(), "00B0960037"),
        (apdu.secured_update_binary(0x01, 26, b"\x01", bytes(4)), "04D6811A050100000000"),
    ],
)
def test_builders_make_the_spec_bytes(command: Command, hex_bytes: str) -> None:
    assert command.to_bytes().hex().upper() == hex_bytes
    assert Command.parse(command.to_bytes()) == command


def test_update_capp_data_cache_carries_the_0019_record() -> None:
    record = EntryExitRecord(
        "6201",
        1,
        2,
        datetime(2024, 1, 1, tzinfo=UTC),
        VehicleClass.PASSENGER_1,
        LaneStatus.ETC_ENTRY,
        bytes(9),
        0,
        0,
        "甘A12345",
    )
    raw = apdu.update_capp_data_cache(record).to_bytes()
    assert raw[:8] == bytes.fromhex("80DCAAC82BAA2900") and len(raw) == 5 + 43


def test_the_secured_update_mac_covers_header_lc_and_data() -> None:
    # The spec's fourth line-protection vector: 0015 written from offset 0 with 30 bytes.
    data = bytes.fromhex("000122000001FFFF01010000220000000000000620160101205012310000")
    assert apdu.secured_update_mac_input(0x15, 0, data).hex().upper() == "04D6950022" + data.hex().upper()


@pytest.mark.parametrize(
    ("raw", "cla_ins", "data", "le"),
    [
        ("00A40000", (0, 0xA4), b"", None),
        ("0084000004", (0, 0x84), b"", 4),
        ("00B0950000", (0, 0xB0), b"", 256),
        ("00A40000021001", (0, 0xA4), b"\x10\x01", None),
        ("805C0002021001FF", (0x80, 0x5C), b"\x10\x01", 255),
    ],
)
def test_parse_reads_the_four_short_cases(
    raw: str, cla_ins: tuple[int, int], data: bytes, le: int | None
) -> None:
    command = Command.parse(bytes.fromhex(raw))
    assert (command.cla, command.ins, command.data, command.le) == (*cla_ins, data, le)
    assert command.to_bytes() == bytes.fromhex(raw)


@pytest.mark.parametrize("raw", ["00A400", "00A400000000", "00A40000051001", "00A4000002100102FF"])
def test_parse_refuses_lengths_that_fit_no_case(raw: str) -> None:
    with pytest.raises(InvalidField) as refused:
        Command.parse(bytes.fromhex(raw))
    assert refused.value.field == "apdu"


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
    st.none() | st.integers(1, 256),
)
def test_commands_round_trip(cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> None:
    command = Command(cla, ins, p1, p2, data, le)
    assert Command.parse(command.to_bytes()) == command


@given(st.binary(max_size=258), st.integers(0, 0xFFFF))
def test_responses_round_trip(data: bytes, sw: int) -> None:
    response = Response(data, sw)
    assert Response.parse(response.to_bytes()) == response


def test_status_words_carry_both_meanings() -> None:
    expected = {0x9000, 0x9302, 0x9401, 0x9403, 0x9406, 0x6982, 0x6985, 0x6A82, 0x6A83, 0x6A88}
    expected |= {0x6D00, 0x6700, 0x6A86, 0x6E00, 0x6581}
    assert {int(sw) for sw in StatusWord} == expected
    assert all(sw.zh and sw.en for sw in StatusWord)
    assert StatusWord.MAC_INVALID.text("zh-CN") == "MAC校验失败"


def test_a_refusal_raises_with_its_status_word() -> None:
    with pytest.raises(StatusWordError) as refused:
        TransactionProof.from_response(Response.status(StatusWord.PROOF_NOT_AVAILABLE))
    assert refused.value.status is StatusWord.PROOF_NOT_AVAILABLE and "9406" in str(refused.value)
    assert StatusWordError(0x6F00).status is None


def test_answers_decode_the_spec_layouts() -> None:
    init = LoadInit.from_response(Response(bytes.fromhex("000000000001010012345678513BEA44"), 0x9000))
    assert init == LoadInit(0, 1, 1, 0, bytes.fromhex("12345678"), bytes.fromhex("513BEA44"))
    purchase = PurchaseInit.from_bytes(bytes.fromhex("0000271000050000000100A1B2C3D4"))
    assert (purchase.balance, purchase.offline_serial, purchase.random) == (
        10000,
        5,
        bytes.fromhex("A1B2C3D4"),
    )
    assert Balance.from_bytes(bytes.fromhex("00002710")).balance == 10000
    assert PurchaseDebit.from_bytes(bytes(range(8))) == PurchaseDebit(bytes(range(4)), bytes(range(4, 8)))
    assert Challenge.from_bytes(bytes.fromhex("44A47DEB")).iv == bytes.fromhex("44A47DEB00000000")
    with pytest.raises(InvalidField):
        LoadCredit.from_bytes(bytes(3))


@given(
    st.builds(
        LoadInit,
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(min_size=4, max_size=4),
        st.binary(min_size=4, max_size=4),
    ),
    st.builds(
        PurchaseInit,
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(min_size=4, max_size=4),
    ),
)
def test_answers_round_trip(load: LoadInit, purchase: PurchaseInit) -> None:
    assert LoadInit.from_bytes(load.to_bytes()) == load
    assert PurchaseInit.from_bytes(purchase.to_bytes()) == purchase


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: apdu.verify_pin("12a4"), "pin"),
        (lambda: apdu.initialize_for_load(1, 1 << 32, TERMINAL), "amount"),
        (lambda: apdu.initialize_for_load(1, 1, bytes(5)), "terminal_id"),
        (lambda: apdu.credit_for_load(NOON, bytes(3)), "mac"),
        (lambda: apdu.read_record_0018(11), "record"),
        (lambda: Command(0, 0, 0, 0, bytes(256)), "data"),
        (lambda: Command(0, 0, 0, 0, le=0), "le"),
    ],
)
def test_builders_refuse_bad_values(build: object, field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        build()  # type: ignore[operator]
    assert refused.value.field == field
