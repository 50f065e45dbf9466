"""The host's side of a load and of a protected write, against a card model computing the card's side."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.host import (
    CardNotAuthenticated,
    LoadRequest,
    MalformedAnswer,
    TacInvalid,
    authorize_load,
    bcd_date_time,
    confirm_load,
    parse_initialize_for_load,
    secure_update_0015,
    secure_update_binary,
)
from etcwallet.issuance.chip.keys import CardIdentity, IssuerMasterKeys, SoftwareKeyService
from tests.issuance.chip.card_model import CardModel, CardRefusal

h = bytes.fromhex
ISSUER = h("B8CACBE062010001")
CARD = CardIdentity(issuer_id=ISSUER, application_serial=h("2301000012345678"))
TERMINAL = h("112233445566")
WHEN = datetime(2024, 1, 1, 12, 0, 0)
MASTER = IssuerMasterKeys(
    load=h("0123456789ABCDEFFEDCBA9876543210"),
    purchase=h("11111111111111112222222222222222"),
    tac=h("33333333333333334444444444444444"),
    maintenance=h("55555555555555556666666666666666"),
)


def _flip(value: bytes, bit: int) -> bytes:
    data = bytearray(value)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def test_parse_initialize_for_load() -> None:
    answer = parse_initialize_for_load(h("000000640007400012345678513BEA44"))
    assert (answer.old_balance, answer.online_serial, answer.key_version, answer.algorithm_id) == (
        100,
        7,
        0x40,
        0,
    )
    assert answer.random == h("12345678") and answer.mac1 == h("513BEA44")
    with pytest.raises(MalformedAnswer, match="16 bytes"):
        parse_initialize_for_load(bytes(15))


def test_commands_are_the_spec_bytes() -> None:
    request = LoadRequest(card=CARD, amount=0x2710, terminal_id=TERMINAL)
    assert request.initialize_command() == h("805000020B010000271011223344556610")
    assert bcd_date_time(WHEN) == (h("20240101"), h("120000"))
    with pytest.raises(ValueError, match="positive"):
        LoadRequest(card=CARD, amount=0, terminal_id=TERMINAL)


def test_a_load_end_to_end() -> None:
    service = SoftwareKeyService(MASTER)
    card = CardModel(service.derive_card_keys(CARD), balance=500, online_serial=3)
    request = LoadRequest(card=CARD, amount=10000, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(card.initialize_for_load(request.initialize_command(), h("CAFEBABE")))
    credit = authorize_load(service, request, answer, when=WHEN)
    assert credit.command[:5] == h("805200000B") and credit.command[5:12] == h("20240101120000")
    assert credit.command[-1] == 0x04 and credit.mac2 == credit.command[12:16]
    assert (credit.old_balance, credit.online_serial, credit.new_balance) == (500, 3, 10500)
    confirmation = confirm_load(service, credit, card.credit_for_load(credit.command))
    assert (confirmation.new_balance, confirmation.online_serial) == (10500, 3)
    assert (card.balance, card.online_serial) == (10500, 4)
    with pytest.raises(CardRefusal):  # MAC2 is good for one session only
        card.credit_for_load(credit.command)


def test_a_card_of_another_issuer_is_refused() -> None:
    stranger = CardModel(SoftwareKeyService(MASTER).derive_card_keys(CARD))
    ours = SoftwareKeyService(
        IssuerMasterKeys(load=bytes(16), purchase=bytes(16), tac=bytes(16), maintenance=bytes(16))
    )
    request = LoadRequest(card=CARD, amount=1, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(stranger.initialize_for_load(request.initialize_command(), bytes(4)))
    with pytest.raises(CardNotAuthenticated):
        authorize_load(ours, request, answer, when=WHEN)


def test_a_load_overflowing_the_purse_is_refused() -> None:
    request = LoadRequest(card=CARD, amount=2, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(h("FFFFFFFE000040000000000000000000"))
    with pytest.raises(MalformedAnswer, match="purse"):
        authorize_load(SoftwareKeyService(MASTER), request, answer, when=WHEN)


def test_tac_of_the_wrong_length_is_malformed() -> None:
    service = SoftwareKeyService(MASTER)
    card = CardModel(service.derive_card_keys(CARD))
    request = LoadRequest(card=CARD, amount=1, terminal_id=TERMINAL)
    answer = parse_initialize_for_load(card.initialize_for_load(request.initialize_command(), bytes(4)))
    credit = authorize_load(service, request, answer, when=WHEN)
    with pytest.raises(MalformedAnswer):
        confirm_load(service, credit, b"\x00\x01")


@settings(max_examples=60, deadline=None)
@given(
    master=st.binary(min_size=16, max_size=16),
    serial=st.binary(min_size=8, max_size=8),
    balance=st.integers(0, 0x7FFFFFFF),
    amount=st.integers(1, 0x7FFFFFFF),
    online_serial=st.integers(0, 0xFFFE),
    random=st.binary(min_size=4, max_size=4),
    terminal=st.binary(min_size=6, max_size=6),
    bit=st.integers(0, 31),
)
def test_card_and_host_agree_and_a_flipped_bit_is_refused(
    master: bytes,
    serial: bytes,
    balance: int,
    amount: int,
    online_serial: int,
    random: bytes,
    terminal: bytes,
    bit: int,
) -> None:
    service = SoftwareKeyService(
        IssuerMasterKeys(load=master, purchase=master[::-1], tac=master[8:] + master[:8], maintenance=master)
    )
    card_id = CardIdentity(issuer_id=ISSUER, application_serial=serial)
    card = CardModel(service.derive_card_keys(card_id), balance=balance, online_serial=online_serial)
    request = LoadRequest(card=card_id, amount=amount, terminal_id=terminal)
    raw = card.initialize_for_load(request.initialize_command(), random)
    answer = parse_initialize_for_load(raw)
    forged = parse_initialize_for_load(raw[:12] + _flip(raw[12:], bit))
    with pytest.raises(CardNotAuthenticated):
        authorize_load(service, request, forged, when=WHEN)
    credit = authorize_load(service, request, answer, when=WHEN)
    tac = card.credit_for_load(credit.command)  # the card accepts the host's MAC2
    assert card.balance == balance + amount and card.online_serial == online_serial + 1
    with pytest.raises(TacInvalid):
        confirm_load(service, credit, _flip(tac, bit))
    assert confirm_load(service, credit, tac).new_balance == balance + amount


# --- protected writes ------------------------------------------------------------------------------------


class FixedKeyService(SoftwareKeyService):
    """A key service whose every card has the maintenance key of the spec's vectors."""

    def __init__(self, key: bytes) -> None:
        super().__init__(IssuerMasterKeys(load=key, purchase=key, tac=key, maintenance=key))
        self._key = key

    def line_protection_mac(self, card: CardIdentity, *, challenge: bytes, data: bytes) -> bytes:
        return crypto.line_protection_mac(self._key, challenge, data)


def test_secure_update_binary_matches_the_spec_vector() -> None:
    command = secure_update_binary(
        FixedKeyService(b"\xff" * 16),
        CARD,
        p1=0x00,
        offset=0x00,
        data=h("11223344556677889900AABBCCDDEEFF"),
        challenge=h("44A47DEB"),
    )
    assert command == h("04D600001411223344556677889900AABBCCDDEEFFF2F62231")


def test_secure_update_0015_is_accepted_by_the_card() -> None:
    service = SoftwareKeyService(MASTER)
    card = CardModel(service.derive_card_keys(CARD))
    content = h("2024010120340101") + "甘A12345".encode("gbk").ljust(12, b"\x00") + h("000001")
    challenge = card.get_challenge(h("A3BBCFC8"))
    command = secure_update_0015(service, CARD, content=content, challenge=challenge)
    assert command[:5] == h("04D695141B") and len(command) == 5 + 23 + 4
    card.update_binary_protected(command)
    assert bytes(card.files[0x15][20:43]) == content
    card.get_challenge(h("A3BBCFC9"))  # a new challenge: the old MAC no longer verifies
    with pytest.raises(CardRefusal, match="6988"):
        card.update_binary_protected(command)
    with pytest.raises(ValueError, match="23 bytes"):
        secure_update_0015(service, CARD, content=content[:-1], challenge=challenge)
