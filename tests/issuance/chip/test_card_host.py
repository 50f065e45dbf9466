"""The host side of a card's issuance against the emulated card: what is written is read back the same for
any vehicle and holder (hypothesis), a blank card reads as blank, and the card's refusals come through."""

from __future__ import annotations

import asyncio
import os
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcwallet.issuance.chip import card_host
from etcwallet.issuance.chip.apdu import StatusWordError
from etcwallet.issuance.chip.card_emulator import UserCardEmulator
from etcwallet.issuance.chip.emulator import EmulatedReader
from etcwallet.issuance.chip.files import CardholderFile, CardIssueFile, CardNumber, IssuerId
from etcwallet.issuance.chip.keys import IssuerMasterKeys, SoftwareKeyService
from etcwallet.issuance.chip.reader import CardRemoved
from etcwallet.issuance.codes import CardType, PlateColour, UserType, VehicleClass

GANSU = IssuerId("甘肃", "62010001")
MASTER = IssuerMasterKeys(*(os.urandom(16) for _ in range(4)))
KEYS = SoftwareKeyService(MASTER)
NUMBER = "62010101000000004242"

plates = st.builds(
    lambda province, letter, rest: province + letter + rest,
    st.sampled_from("甘京陇沪粤川"),
    st.sampled_from("ABCDEFGHJK"),
    st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=5, max_size=6),
)
names = st.text(alphabet="张王李赵欧阳明华建国志强秀英", min_size=1, max_size=10)
id_numbers = st.text(alphabet="0123456789X", min_size=1, max_size=32)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2080, 12, 31))


def blank_card() -> tuple[UserCardEmulator, EmulatedReader]:
    card = UserCardEmulator.manufacture(NUMBER, CardType.STORED_VALUE, GANSU, MASTER)
    reader = EmulatedReader()
    reader.insert(card)
    return card, reader


def contents(
    plate: str, colour: PlateColour, klass: VehicleClass, start: date, name: str, id_number: str
) -> tuple[CardIssueFile, CardholderFile]:
    issue = CardIssueFile(
        issuer=GANSU,
        card_type=CardType.STORED_VALUE,
        card_version=0x40,
        card_number=CardNumber.parse(NUMBER),
        start_date=start,
        expiry_date=date(start.year + 10, start.month, min(start.day, 28)),
        plate=plate,
        user_type=UserType.NORMAL,
        plate_colour=colour,
        vehicle_class=klass,
    )
    return issue, CardholderFile(holder_flag=0, staff_flag=0, name=name, id_number=id_number, id_type=0)


@settings(max_examples=40, deadline=None)
@given(
    plate=plates,
    colour=st.sampled_from(list(PlateColour)),
    klass=st.sampled_from(list(VehicleClass)),
    start=days,
    name=names,
    id_number=id_numbers,
)
def test_what_the_host_writes_the_card_reads_back(
    plate: str, colour: PlateColour, klass: VehicleClass, start: date, name: str, id_number: str
) -> None:
    issue, holder = contents(plate, colour, klass, start, name, id_number)

    async def issue_and_read() -> card_host.CardReading:
        _card, reader = blank_card()
        blank = await card_host.read_card(reader)
        assert blank.issue is None and blank.holder is None and str(blank.card_number) == NUMBER
        await card_host.write_issuance(
            reader,
            KEYS,
            blank.identity,
            issue_content=issue.to_bytes()[20:43],
            holder_content=holder.to_bytes(),
        )
        return await card_host.read_card(reader)

    read = asyncio.run(issue_and_read())
    assert read.issue == issue and read.holder == holder and read.balance == 0


async def test_a_damaged_card_refuses_and_another_issuers_keys_fail_the_mac() -> None:
    issue, holder = contents(
        "甘A12345", PlateColour.BLUE, VehicleClass.PASSENGER_1, date(2026, 1, 1), "张三", "1"
    )
    card, reader = blank_card()
    identity = (await card_host.read_card(reader)).identity
    stranger = SoftwareKeyService(IssuerMasterKeys(*(os.urandom(16) for _ in range(4))))
    with pytest.raises(StatusWordError) as wrong_keys:
        await card_host.write_issuance(
            reader,
            stranger,
            identity,
            issue_content=issue.to_bytes()[20:43],
            holder_content=holder.to_bytes(),
        )
    assert wrong_keys.value.sw == 0x9302
    card.damage()
    with pytest.raises(StatusWordError) as damaged:
        await card_host.write_issuance(
            reader, KEYS, identity, issue_content=issue.to_bytes()[20:43], holder_content=holder.to_bytes()
        )
    assert damaged.value.sw == 0x6581
    assert (await card_host.read_card(reader)).issue is None


async def test_an_empty_slot_or_a_tear_raises_card_removed() -> None:
    with pytest.raises(CardRemoved):
        await card_host.read_card(EmulatedReader())
    card, reader = blank_card()
    card.tear_after(2, applied=True)
    with pytest.raises(CardRemoved):
        await card_host.read_card(reader)
    assert not await reader.present()
