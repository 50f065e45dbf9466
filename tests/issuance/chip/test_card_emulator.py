"""The emulated user card: every command and refusal, the host loading and writing through an emulated
reader, the spec §11 e-purse vectors, tears on CREDIT FOR LOAD with the §7 decision, and persistence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcwallet.issuance.chip import apdu
from etcwallet.issuance.chip.apdu import Command, LoadInit, PurchaseInit, Response, StatusWord
from etcwallet.issuance.chip.card_emulator import (
    DEFAULT_PIN,
    CardState,
    UserCardEmulator,
    read_issue_file,
)
from etcwallet.issuance.chip.emulator import ChipStore, EmulatedReader
from etcwallet.issuance.chip.encoding import InvalidField
from etcwallet.issuance.chip.files import (
    CardholderFile,
    CardIssueFile,
    CardNumber,
    EntryExitRecord,
    IssuerId,
    LaneStatus,
    TransactionRecord,
)
from etcwallet.issuance.chip.host import (
    LoadRequest,
    authorize_load,
    confirm_load,
    parse_initialize_for_load,
    secure_update_0015,
    secure_update_binary,
)
from etcwallet.issuance.chip.keys import CardKeys, IssuerMasterKeys, SoftwareKeyService
from etcwallet.issuance.chip.reader import CardRemoved, exchange
from etcwallet.issuance.codes import CardType, PlateColour, TransactionType, UserType, VehicleClass

h = bytes.fromhex
GANSU = IssuerId("甘肃", "62010001")
NUMBER = CardNumber.parse("62012301000012345678")
TERMINAL = h("112233445566")
WHEN = datetime(2024, 1, 1, 12, 0, 0)
MASTER = IssuerMasterKeys(
    load=h("0123456789ABCDEFFEDCBA9876543210"),
    purchase=h("11111111111111112222222222222222"),
    tac=h("33333333333333334444444444444444"),
    maintenance=h("55555555555555556666666666666666"),
)
SERVICE = SoftwareKeyService(MASTER)
ISSUED = CardIssueFile(
    issuer=GANSU,
    card_type=CardType.STORED_VALUE,
    card_version=0x40,
    card_number=NUMBER,
    start_date=date(2024, 1, 1),
    expiry_date=date(2034, 1, 1),
    plate="甘A12345",
    user_type=UserType.NORMAL,
    plate_colour=PlateColour.BLUE,
    vehicle_class=VehicleClass.PASSENGER_1,
)


def counting_random() -> Callable[[int], bytes]:
    """Distinct, repeatable randoms: 00000001, 00000002, …"""
    counter: Iterator[int] = count(1)
    return lambda size: next(counter).to_bytes(size, "big")


def new_card(**options: object) -> UserCardEmulator:
    return UserCardEmulator.manufacture(
        NUMBER,
        CardType.STORED_VALUE,
        GANSU,
        MASTER,
        random=counting_random(),
        **options,  # type: ignore[arg-type]
    )


def send(card: UserCardEmulator, command: Command | bytes | str) -> Response:
    raw = h(command) if isinstance(command, str) else command
    return Response.parse(card.transmit(raw.to_bytes() if isinstance(raw, Command) else raw))


def sw(card: UserCardEmulator, command: Command | bytes | str) -> int:
    return send(card, command).sw


def opened(card: UserCardEmulator | None = None, *, pin: bool = True) -> UserCardEmulator:
    """A card powered up with the ETC application selected (and its PIN verified)."""
    card = card or new_card()
    card.power_up()
    assert sw(card, apdu.select_aid()) == StatusWord.OK
    if pin:
        assert sw(card, apdu.verify_pin(DEFAULT_PIN)) == StatusWord.OK
    return card


def load(card: UserCardEmulator, amount: int, *, when: datetime = WHEN, terminal: bytes = TERMINAL) -> bytes:
    """A whole load through the host code; the TAC it verified."""
    request = LoadRequest(card=card.identity, amount=amount, terminal_id=terminal)
    answer = parse_initialize_for_load(send(card, request.initialize_command()).expect_ok())
    credit = authorize_load(SERVICE, request, answer, when=when)
    return confirm_load(SERVICE, credit, send(card, credit.command).expect_ok()).tac


def record(card: UserCardEmulator, number: int) -> TransactionRecord:
    return apdu.read_transaction_record(send(card, apdu.read_record_0018(number)))


# --- manufacture and the blank 0015 ------------------------------------------------------------------


def test_a_blank_card_from_stock() -> None:
    card = opened(pin=False)
    raw = send(card, apdu.read_binary_0015()).expect_ok()
    assert raw[:20] == GANSU.to_bytes() + h("1640") + h("6201") + h("2301000012345678")
    assert raw[20:] == bytes(30)
    with pytest.raises(InvalidField):
        CardIssueFile.from_bytes(raw)
    contents = read_issue_file(raw)
    assert (contents.issuer, contents.card_type, contents.card_version) == (
        GANSU,
        CardType.STORED_VALUE,
        0x40,
    )
    assert contents.card_number == NUMBER and contents.personalised is None
    assert contents.identity == card.identity
    assert card.state.keys == SERVICE.derive_card_keys(contents.identity)
    assert send(card, apdu.read_binary_0016()).expect_ok() == bytes(55)
    assert apdu.Balance.from_response(send(card, apdu.get_balance())).balance == 0
    assert (card.kind, card.number) == ("card", str(NUMBER))


def test_read_issue_file_reads_an_issued_card_whole() -> None:
    assert read_issue_file(ISSUED.to_bytes()).personalised == ISSUED
    with pytest.raises(InvalidField):
        read_issue_file(bytes(49))


# --- selection, files, refusals ------------------------------------------------------------------------


def test_selection() -> None:
    card = new_card()
    card.power_up()
    assert sw(card, apdu.read_binary_0015()) == StatusWord.FILE_NOT_FOUND  # the MF holds no 0015
    assert sw(card, apdu.get_balance()) == StatusWord.CONDITIONS_NOT_SATISFIED
    assert sw(card, apdu.select_aid(h("A00000000386980702"))) == StatusWord.FILE_NOT_FOUND
    assert sw(card, apdu.select_df(h("1002"))) == StatusWord.FILE_NOT_FOUND
    assert sw(card, "00A4010C021001") == StatusWord.WRONG_P1P2
    assert sw(card, apdu.select_df()) == StatusWord.OK
    assert sw(card, apdu.read_binary_0015()) == StatusWord.OK
    assert sw(card, apdu.select_df(h("3F00"))) == StatusWord.OK
    assert sw(card, apdu.read_binary_0015()) == StatusWord.FILE_NOT_FOUND
    assert sw(card, apdu.select_aid()) == StatusWord.OK
    card.power_down()
    card.power_up()
    assert sw(card, apdu.read_binary_0015()) == StatusWord.FILE_NOT_FOUND


def test_read_binary_with_offsets() -> None:
    card = opened(pin=False)
    assert send(card, "00B0950802").expect_ok() == h("1640")
    assert send(card, "00B0950A0A").expect_ok() == h("62012301000012345678")
    assert send(card, "00B0963101").expect_ok() == h("00")
    assert sw(card, "00B0953101") == StatusWord.OK
    assert sw(card, "00B0953102") == StatusWord.WRONG_LENGTH
    assert sw(card, "00B0960038") == StatusWord.WRONG_LENGTH
    assert sw(card, "00B0970001") == StatusWord.FILE_NOT_FOUND
    assert sw(card, "00B0150001") == StatusWord.WRONG_P1P2
    assert sw(card, "00B09500") == StatusWord.WRONG_LENGTH


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("90B0950001", StatusWord.CLASS_NOT_SUPPORTED),
        ("805C000204", StatusWord.OK),
        ("005C000204", StatusWord.CLASS_NOT_SUPPORTED),
        ("80FF000000", StatusWord.INSTRUCTION_NOT_SUPPORTED),
        ("00CA000000", StatusWord.INSTRUCTION_NOT_SUPPORTED),
        ("00B0", StatusWord.WRONG_LENGTH),
        ("805C00020400", StatusWord.WRONG_LENGTH),
        ("805C000208", StatusWord.WRONG_LENGTH),
        ("805C000104", StatusWord.WRONG_P1P2),
        ("0084000008", StatusWord.WRONG_LENGTH),
        ("0084010004", StatusWord.WRONG_P1P2),
        ("805000020A0100000001112233445510", StatusWord.WRONG_LENGTH),
        ("805002020B010000000111223344556610", StatusWord.WRONG_P1P2),
        ("805000020B01000000011122334455660F", StatusWord.WRONG_LENGTH),
        ("805000020B020000000111223344556610", StatusWord.KEY_INDEX_NOT_SUPPORTED),
        ("805001020B410000000011223344556610", StatusWord.WRONG_LENGTH),
        ("805001020B41000000001122334455660F", StatusWord.KEY_INDEX_NOT_SUPPORTED),
        ("805200000B2024010112000000000000", StatusWord.WRONG_LENGTH),
        ("805201000B202401011200000000000004", StatusWord.WRONG_P1P2),
        ("805200000B202401011200000000000004", StatusWord.CONDITIONS_NOT_SATISFIED),
        ("805401000F000000012024010112000000000000", StatusWord.WRONG_LENGTH),
        ("805401000F00000001202401011200000000000008", StatusWord.CONDITIONS_NOT_SATISFIED),
        ("805A0002020001", StatusWord.WRONG_LENGTH),
        ("805A000202000108", StatusWord.PROOF_NOT_AVAILABLE),
        ("805A000402000108", StatusWord.WRONG_P1P2),
        ("805A010202000108", StatusWord.WRONG_P1P2),
        ("00B200C417", StatusWord.WRONG_P1P2),
        ("00B201C517", StatusWord.WRONG_P1P2),
        ("00B201CC17", StatusWord.FILE_NOT_FOUND),
        ("00B201C418", StatusWord.WRONG_LENGTH),
        ("00B201C417", StatusWord.RECORD_NOT_FOUND),
        ("00D6950001AA", StatusWord.SECURITY_STATUS_NOT_SATISFIED),
        ("00D6970001AA", StatusWord.FILE_NOT_FOUND),
        ("04D6950004AABBCCDD", StatusWord.WRONG_LENGTH),
        ("04D6953205AA00000000", StatusWord.WRONG_LENGTH),
        ("04D6953105AA00000000", StatusWord.CONDITIONS_NOT_SATISFIED),
        ("04D6150005AA00000000", StatusWord.WRONG_P1P2),
        ("80DCAAC82BAA2900" + "00" * 40, StatusWord.CONDITIONS_NOT_SATISFIED),
        ("80DCAAC92BAA2900" + "00" * 40, StatusWord.WRONG_P1P2),
        ("0020000001" + "12", StatusWord.WRONG_LENGTH),
    ],
)
def test_refusals(command: str, expected: StatusWord) -> None:
    card = opened()
    before = card.to_state()
    assert sw(card, command) == expected
    assert card.to_state() == before or expected == StatusWord.OK


# --- PIN ---------------------------------------------------------------------------------------------------


def test_pin_counts_down_and_blocks() -> None:
    card = opened(pin=False)
    request = LoadRequest(card=card.identity, amount=1, terminal_id=TERMINAL)
    assert sw(card, request.initialize_command()) == StatusWord.SECURITY_STATUS_NOT_SATISFIED
    assert sw(card, apdu.verify_pin("654321")) == 0x63C2
    assert sw(card, apdu.verify_pin(DEFAULT_PIN)) == StatusWord.OK  # a good PIN restores the tries
    assert card.state.pin_tries == 3
    assert sw(card, request.initialize_command()) == StatusWord.OK
    assert [sw(card, apdu.verify_pin("0000")) for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert sw(card, request.initialize_command()) == StatusWord.SECURITY_STATUS_NOT_SATISFIED
    assert sw(card, apdu.verify_pin(DEFAULT_PIN)) == 0x6983
    card.power_down()
    card.power_up()
    assert sw(card, apdu.verify_pin(DEFAULT_PIN)) == 0x6983  # the block survives power loss


def test_pin_status_is_lost_on_power_down_and_a_card_may_not_ask() -> None:
    card = opened()
    card.power_down()
    opened(card, pin=False)
    request = LoadRequest(card=card.identity, amount=1, terminal_id=TERMINAL)
    assert sw(card, request.initialize_command()) == StatusWord.SECURITY_STATUS_NOT_SATISFIED
    relaxed = opened(new_card(load_needs_pin=False), pin=False)
    assert sw(relaxed, request.initialize_command()) == StatusWord.OK
    odd = opened(new_card(pin="12345"), pin=False)
    assert sw(odd, apdu.verify_pin("12345")) == StatusWord.OK


# --- secured writes -------------------------------------------------------------------------------------


def test_issuance_writes_0015_with_the_hosts_mac() -> None:
    card = opened(pin=False)
    challenge = send(card, apdu.get_challenge()).expect_ok()
    command = secure_update_0015(
        SERVICE, card.identity, content=ISSUED.to_bytes()[20:43], challenge=challenge
    )
    assert command[:5] == h("04D695141B")
    assert sw(card, command) == StatusWord.OK
    raw = send(card, apdu.read_binary_0015()).expect_ok()
    assert CardIssueFile.from_bytes(raw) == ISSUED
    assert read_issue_file(raw).personalised == ISSUED
    assert sw(card, command) == StatusWord.CONDITIONS_NOT_SATISFIED  # the challenge was spent


def test_issuance_writes_0016() -> None:
    card = opened(pin=False)
    holder = CardholderFile(holder_flag=0, staff_flag=0, name="张三", id_number="620102199001011234")
    challenge = send(card, apdu.get_challenge()).expect_ok()
    command = secure_update_binary(
        SERVICE, card.identity, p1=0x96, offset=0, data=holder.to_bytes(), challenge=challenge
    )
    assert sw(card, command) == StatusWord.OK
    assert apdu.read_cardholder_file(send(card, apdu.read_binary_0016())) == holder
    challenge = send(card, apdu.get_challenge()).expect_ok()  # a write at an offset: the ID type alone
    command = secure_update_binary(
        SERVICE, card.identity, p1=0x96, offset=54, data=b"\x01", challenge=challenge
    )
    assert sw(card, command) == StatusWord.OK
    assert send(card, "00B0963601").expect_ok() == b"\x01"


def test_a_wrong_mac_a_stale_challenge_and_damage_write_nothing() -> None:
    card = opened(pin=False)
    content = ISSUED.to_bytes()[20:43]
    challenge = send(card, apdu.get_challenge()).expect_ok()
    other = SoftwareKeyService(
        IssuerMasterKeys(load=bytes(16), purchase=bytes(16), tac=bytes(16), maintenance=bytes(16))
    )
    before = card.to_state()
    assert sw(card, secure_update_0015(other, card.identity, content=content, challenge=challenge)) == 0x9302
    assert card.to_state() == before
    # a MAC made under an older challenge
    old = send(card, apdu.get_challenge()).expect_ok()
    send(card, apdu.get_challenge())
    assert sw(card, secure_update_0015(SERVICE, card.identity, content=content, challenge=old)) == 0x9302
    # the challenge does not survive leaving the field
    challenge = send(card, apdu.get_challenge()).expect_ok()
    card.power_down()
    opened(card, pin=False)
    command = secure_update_0015(SERVICE, card.identity, content=content, challenge=challenge)
    assert sw(card, command) == StatusWord.CONDITIONS_NOT_SATISFIED
    card.damage()
    challenge = send(card, apdu.get_challenge()).expect_ok()
    command = secure_update_0015(SERVICE, card.identity, content=content, challenge=challenge)
    assert sw(card, command) == StatusWord.MEMORY_FAILURE
    assert card.to_state() == {**before, "damaged": True}
    assert sw(card, apdu.read_binary_0015()) == StatusWord.OK  # reads still work


# --- load ---------------------------------------------------------------------------------------------


async def test_the_host_loads_and_issues_through_an_emulated_reader(tmp_path: Path) -> None:
    store = ChipStore(tmp_path, [UserCardEmulator])
    store.add(new_card())
    reader = EmulatedReader(store.get)
    card = reader.insert(str(NUMBER))
    assert isinstance(card, UserCardEmulator)

    async def ask(command: Command | bytes) -> Response:
        c = command if isinstance(command, Command) else Command.parse(command)
        return await exchange(reader, c)

    (await ask(apdu.select_aid())).expect_ok()
    identity = read_issue_file((await ask(apdu.read_binary_0015())).expect_ok()).identity
    challenge = (await ask(apdu.get_challenge())).expect_ok()
    (
        await ask(
            secure_update_0015(SERVICE, identity, content=ISSUED.to_bytes()[20:43], challenge=challenge)
        )
    ).expect_ok()
    (await ask(apdu.verify_pin(DEFAULT_PIN))).expect_ok()
    request = LoadRequest(card=identity, amount=10000, terminal_id=TERMINAL)
    answer = parse_initialize_for_load((await ask(request.initialize_command())).expect_ok())
    assert (answer.old_balance, answer.online_serial, answer.key_version, answer.algorithm_id) == (
        0,
        0,
        0x40,
        0,
    )
    credit = authorize_load(SERVICE, request, answer, when=WHEN)
    confirmation = confirm_load(SERVICE, credit, (await ask(credit.command)).expect_ok())
    assert confirmation.new_balance == 10000
    assert apdu.Balance.from_response(await ask(apdu.get_balance())).balance == 10000
    assert apdu.read_transaction_record(await ask(apdu.read_record_0018(1))) == TransactionRecord(
        serial=0,
        overdraw_limit=0,
        amount=10000,
        transaction_type=TransactionType.LOAD,
        terminal_id=TERMINAL,
        at=WHEN,
    )
    proof = apdu.TransactionProof.from_response(
        await ask(apdu.get_transaction_prove(TransactionType.LOAD, 1))
    )
    assert proof.tac == confirmation.tac and proof.mac == credit.mac2
    reader.remove()
    assert (
        CardIssueFile.from_bytes(ChipStore(tmp_path, [UserCardEmulator]).get(str(NUMBER)).state.issue_file)
        == ISSUED
    )  # type: ignore[union-attr]


def test_credit_refusals_change_nothing() -> None:
    card = opened()
    load(card, 500)
    request = LoadRequest(card=card.identity, amount=100, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(send(card, request.initialize_command()).expect_ok())
    credit = authorize_load(SERVICE, request, answer, when=WHEN)
    before = card.to_state()
    forged = credit.command[:12] + bytes(4) + credit.command[16:]
    assert sw(card, forged) == StatusWord.MAC_INVALID
    assert sw(card, credit.command) == StatusWord.CONDITIONS_NOT_SATISFIED  # the session closed
    # a MAC2 from an earlier session is no good in a new one
    send(card, request.initialize_command()).expect_ok()
    assert sw(card, credit.command) == StatusWord.MAC_INVALID
    # INITIALIZE alone changes nothing
    send(card, request.initialize_command()).expect_ok()
    assert card.to_state() == before
    # a damaged card takes no credit
    answer = parse_initialize_for_load(send(card, request.initialize_command()).expect_ok())
    credit = authorize_load(SERVICE, request, answer, when=WHEN)
    card.damage()
    assert sw(card, credit.command) == StatusWord.MEMORY_FAILURE
    assert card.to_state() == {**before, "damaged": True}


def test_a_load_that_would_overflow_the_purse_is_refused() -> None:
    card = opened()
    card.state.balance = 0xFFFFFFFF
    request = LoadRequest(card=card.identity, amount=1, terminal_id=TERMINAL)
    assert sw(card, request.initialize_command()) == StatusWord.CONDITIONS_NOT_SATISFIED


def test_the_log_is_cyclic_with_record_1_the_newest() -> None:
    card = opened()
    for amount in range(1, 13):
        load(card, amount)
    assert [record(card, n).amount for n in range(1, 11)] == list(range(12, 2, -1))
    assert [record(card, n).serial for n in (1, 10)] == [11, 2]
    assert sw(card, "00B20BC417") == StatusWord.RECORD_NOT_FOUND
    assert (card.state.balance, card.state.online_serial) == (78, 12)


def test_transaction_proof_is_for_the_last_load_only() -> None:
    card = opened()
    first = load(card, 100)
    assert send(card, apdu.get_transaction_prove(TransactionType.LOAD, 1)).expect_ok()[4:] == first
    second = load(card, 200)
    assert send(card, apdu.get_transaction_prove(TransactionType.LOAD, 2)).expect_ok()[4:] == second
    for serial in (1, 3):
        assert (
            sw(card, apdu.get_transaction_prove(TransactionType.LOAD, serial))
            == StatusWord.PROOF_NOT_AVAILABLE
        )
    assert sw(card, apdu.get_transaction_prove(TransactionType.PURCHASE, 2)) == StatusWord.PROOF_NOT_AVAILABLE


# --- the spec §11 e-purse vectors -------------------------------------------------------------------------

DLK = h("00112233445566778899AABBCCDDEEFF")
DPK = h("FFEEDDCCBBAA99887766554433221100")
DTK = h("5A3C96E1F00D7B421D8E6B20C4A9F375")


def vector_card(random: bytes, **state: int) -> UserCardEmulator:
    keys = CardKeys(load=DLK, purchase=DPK, tac=DTK, maintenance=bytes(16))
    issue_file = GANSU.to_bytes() + h("1640") + h("62012301000012345678") + bytes(30)
    card = UserCardEmulator(
        CardState(number=str(NUMBER), keys=keys, issue_file=issue_file, **state),  # type: ignore[arg-type]
        random=lambda size: random,
    )
    return opened(card)


def test_the_load_vector() -> None:
    card = vector_card(h("12345678"), online_serial=1)
    answer = LoadInit.from_response(send(card, apdu.initialize_for_load(1, 0x2710, TERMINAL)))
    assert answer == LoadInit(0, 1, 0x40, 0, h("12345678"), h("513BEA44"))
    assert send(card, apdu.credit_for_load(WHEN, h("BB016A2A"))).expect_ok() == h("DC684AE3")
    assert (card.state.balance, card.state.online_serial) == (0x2710, 2)


@pytest.mark.parametrize(
    ("capp", "mac1", "tac"),
    [(False, "A07F3032", "F7A811B0"), (True, "0499D9DF", "366F5BCC")],
)
def test_the_purchase_vectors(capp: bool, mac1: str, tac: str) -> None:
    card = vector_card(h("A1B2C3D4"), offline_serial=5, balance=5000)
    build = apdu.initialize_for_capp_purchase if capp else apdu.initialize_for_purchase
    answer = PurchaseInit.from_response(send(card, build(1, 0x3E8, TERMINAL)))
    assert answer == PurchaseInit(5000, 5, 0, 0x40, 0, h("A1B2C3D4"))
    entry = EntryExitRecord(
        entry_network="6201",
        station=12,
        lane=3,
        entry_time=datetime(2024, 1, 1, 3, 0, tzinfo=UTC),
        vehicle_class=VehicleClass.PASSENGER_1,
        lane_status=LaneStatus.ETC_ENTRY,
        flag_stations=bytes(9),
        collector=0,
        shift=1,
        plate="甘A12345",
    )
    if capp:
        assert sw(card, apdu.update_capp_data_cache(entry)) == StatusWord.OK
    debit = send(card, apdu.debit_for_purchase(0x123, WHEN, h(mac1))).expect_ok()
    assert debit == h(tac) + h("F86E175E")
    assert (card.state.balance, card.state.offline_serial) == (4000, 6)
    kind = TransactionType.CAPP_PURCHASE if capp else TransactionType.PURCHASE
    assert record(card, 1) == TransactionRecord(5, 0, 1000, kind, TERMINAL, WHEN)
    assert send(card, apdu.get_transaction_prove(kind, 6)).expect_ok() == h("F86E175E") + h(tac)
    assert card.state.entry_exit == (entry.to_bytes() if capp else bytes(43))


def test_purchase_refusals() -> None:
    card = vector_card(h("A1B2C3D4"), offline_serial=5, balance=999)
    assert sw(card, apdu.initialize_for_purchase(1, 1000, TERMINAL)) == StatusWord.INSUFFICIENT_BALANCE
    card.state.balance = 1000
    send(card, apdu.initialize_for_purchase(1, 1000, TERMINAL)).expect_ok()
    before = card.to_state()
    assert sw(card, "80DCAAC82BAA2900" + "00" * 40) == 0x6985
    assert sw(card, apdu.debit_for_purchase(0x123, WHEN, h("A07F3033"))) == StatusWord.MAC_INVALID
    assert (
        sw(card, apdu.debit_for_purchase(0x123, WHEN, h("A07F3032"))) == StatusWord.CONDITIONS_NOT_SATISFIED
    )
    send(card, apdu.initialize_for_capp_purchase(1, 1000, TERMINAL)).expect_ok()
    assert sw(card, "80DCAAC82BAB2900" + "00" * 40) == StatusWord.CONDITIONS_NOT_SATISFIED
    card.damage()
    send(card, apdu.initialize_for_purchase(1, 1000, TERMINAL)).expect_ok()
    assert sw(card, apdu.debit_for_purchase(0x123, WHEN, h("A07F3032"))) == StatusWord.MEMORY_FAILURE
    assert card.to_state() == {**before, "damaged": True}


# --- host and card agree ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    loads=st.lists(
        st.tuples(
            st.integers(1, 10_000_000),
            st.binary(min_size=6, max_size=6),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
                lambda moment: moment.replace(microsecond=0)
            ),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_card_and_host_agree(loads: list[tuple[int, bytes, datetime]]) -> None:
    card = opened()
    for number, (amount, terminal, when) in enumerate(loads):
        tac = load(card, amount, when=when, terminal=terminal)
        assert card.state.online_serial == number + 1
        assert record(card, 1) == TransactionRecord(number, 0, amount, TransactionType.LOAD, terminal, when)
        assert send(card, apdu.get_transaction_prove(TransactionType.LOAD, number + 1)).expect_ok()[4:] == tac
    assert card.state.balance == sum(amount for amount, _, _ in loads)


# --- tears and the spec §7 decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class InDoubt:
    """What the host persisted before sending CREDIT FOR LOAD (spec §7 step 1)."""

    card_number: str
    old_balance: int
    online_serial: int
    amount: int
    terminal_id: bytes
    at: datetime


async def decide(reader: EmulatedReader, doubt: InDoubt) -> tuple[str, bytes | None]:
    """Spec §7 steps 2-5 against the card in the reader: ``loaded`` (with the TAC), ``not_loaded`` or
    ``manual``."""

    async def ask(command: Command) -> Response:
        return await exchange(reader, command)

    (await ask(apdu.select_aid())).expect_ok()
    contents = read_issue_file((await ask(apdu.read_binary_0015())).expect_ok())
    if str(contents.card_number) != doubt.card_number:
        return "manual", None
    balance = apdu.Balance.from_response(await ask(apdu.get_balance())).balance
    (await ask(apdu.verify_pin(DEFAULT_PIN))).expect_ok()
    serial = LoadInit.from_response(
        await ask(apdu.initialize_for_load(1, 0, doubt.terminal_id))
    ).online_serial
    last = await ask(apdu.read_record_0018(1))
    if serial == doubt.online_serial and balance == doubt.old_balance:
        return "not_loaded", None
    newest = apdu.read_transaction_record(last) if last.ok else None
    expected = TransactionRecord(
        doubt.online_serial, 0, doubt.amount, TransactionType.LOAD, doubt.terminal_id, doubt.at
    )
    if (
        serial == doubt.online_serial + 1
        and balance == doubt.old_balance + doubt.amount
        and newest == expected
    ):
        proof = apdu.TransactionProof.from_response(
            await ask(apdu.get_transaction_prove(TransactionType.LOAD, serial))
        )
        return "loaded", proof.tac
    return "manual", None


@pytest.mark.parametrize("applied", [True, False])
async def test_a_torn_credit_is_decided_as_spec_7_says(applied: bool) -> None:
    card = opened()
    load(card, 300)
    card.power_down()
    reader = EmulatedReader()
    reader.insert(card)
    (await exchange(reader, apdu.select_aid())).expect_ok()
    (await exchange(reader, apdu.verify_pin(DEFAULT_PIN))).expect_ok()
    request = LoadRequest(card=card.identity, amount=5000, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(
        (await exchange(reader, Command.parse(request.initialize_command()))).expect_ok()
    )
    credit = authorize_load(SERVICE, request, answer, when=WHEN)
    doubt = InDoubt(str(NUMBER), answer.old_balance, answer.online_serial, 5000, TERMINAL, WHEN)
    card.tear_on(0x52, applied=applied)
    with pytest.raises(CardRemoved):
        await reader.transmit(credit.command)
    assert not await reader.present()
    assert (card.state.balance, card.state.online_serial) == ((5300, 2) if applied else (300, 1))
    reader.insert(card)
    verdict, tac = await decide(reader, doubt)
    if applied:
        assert verdict == "loaded" and tac is not None
        assert confirm_load(SERVICE, credit, tac).new_balance == 5300
        assert record(card, 1).amount == 5000
    else:
        assert (verdict, tac) == ("not_loaded", None)
        assert record(card, 1).amount == 300
        # loaded again with a fresh INITIALIZE: new random, new MAC2
        assert sw(card, credit.command) != StatusWord.OK
        load(card, 5000)
        assert (card.state.balance, card.state.online_serial) == (5300, 2)


async def test_another_load_in_between_is_for_manual_reconciliation() -> None:
    card = opened()
    request = LoadRequest(card=card.identity, amount=100, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(send(card, request.initialize_command()).expect_ok())
    doubt = InDoubt(str(NUMBER), answer.old_balance, answer.online_serial, 100, TERMINAL, WHEN)
    load(card, 700)
    card.power_down()
    reader = EmulatedReader()
    reader.insert(card)
    assert await decide(reader, doubt) == ("manual", None)


def test_a_tear_after_any_command_restores_everything_when_not_applied() -> None:
    card = opened()
    before = card.to_state()
    card.tear_after(2, applied=False)
    request = LoadRequest(card=card.identity, amount=100, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(send(card, request.initialize_command()).expect_ok())
    credit = authorize_load(SERVICE, request, answer, when=WHEN)
    with pytest.raises(Exception, match=str(NUMBER)):
        card.transmit(credit.command)
    assert card.to_state() == before
    assert sw(card, apdu.get_balance()) == StatusWord.CONDITIONS_NOT_SATISFIED  # the tear powered it down


# --- persistence ---------------------------------------------------------------------------------------


def test_the_store_keeps_everything(tmp_path: Path) -> None:
    store = ChipStore(tmp_path, [UserCardEmulator])
    card = opened()
    store.add(card)
    load(card, 1234)
    challenge = send(card, apdu.get_challenge()).expect_ok()
    send(
        card,
        secure_update_0015(SERVICE, card.identity, content=ISSUED.to_bytes()[20:43], challenge=challenge),
    ).expect_ok()
    send(card, apdu.initialize_for_purchase(1, 34, TERMINAL)).expect_ok()
    send(card, apdu.verify_pin("999999"))
    card.damage()
    send(card, apdu.get_balance())  # each command saves the card
    reloaded = ChipStore(tmp_path, [UserCardEmulator]).get(str(NUMBER))
    assert isinstance(reloaded, UserCardEmulator)
    assert reloaded.to_state() == card.to_state()
    assert reloaded.state == card.state
    assert reloaded.state.pin_tries == 2 and reloaded.state.damaged and reloaded.state.last_load is not None
    assert store.numbers() == [str(NUMBER)]
