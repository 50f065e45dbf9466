"""The host's side of a tag, run against the virtual OBU: issue, read back, activate, and the faults a
counter meets (a torn write, a second tag in the field, a damaged tag)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcwallet.issuance.chip.apdu import Response, StatusWordError
from etcwallet.issuance.chip.emulator import EmulatedReader
from etcwallet.issuance.chip.files import ObuVehicleFile, TamperStatus
from etcwallet.issuance.chip.host import MalformedAnswer
from etcwallet.issuance.chip.keys import SoftwareKeyService
from etcwallet.issuance.chip.obu_emulator import ObuEmulator, TamperSwitch
from etcwallet.issuance.chip.obu_host import (
    TagChanged,
    activate,
    confirm_tag,
    decrypt_vehicle_file,
    issue,
    issue_system_file,
    obu_identity,
    parse_system_file,
    read_system,
    read_system_file_command,
    read_vehicle,
    read_vehicle_file_command,
    select_mf,
    select_vehicle_df,
    set_tamper,
    write_dates_and_tamper,
    write_tamper,
    write_vehicle_file,
)
from etcwallet.issuance.chip.reader import CardRemoved
from etcwallet.issuance.codes import PlateColour, UserType, VehicleClass
from tests.issuance.chip.obu_parts import (
    GANSU,
    MASTER,
    OBU_NUMBER,
    OTHER_MASTER,
    OTHER_OBU_NUMBER,
    VEHICLE,
    new_tag,
    system_file,
)

h = bytes.fromhex
KEYS = SoftwareKeyService(MASTER)
IDENTITY = obu_identity(GANSU, OBU_NUMBER)


def in_field(tag: ObuEmulator) -> EmulatedReader:
    reader = EmulatedReader()
    reader.insert(tag)
    return reader


class RecordingReader:
    """A reader that is not the emulator's: it hands bytes to a tag and keeps every command it carried."""

    def __init__(self, tag: ObuEmulator) -> None:
        self.tag = tag
        self.sent: list[bytes] = []

    async def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.tag.process(apdu)

    async def present(self) -> bool:
        return True


def test_commands_have_the_documented_headers() -> None:
    challenge = h("11223344")
    assert select_mf().to_bytes() == h("00A40000023F00")
    assert select_vehicle_df().to_bytes() == h("00A4000002DF01")
    assert read_system_file_command().to_bytes() == h("00B0810063")
    assert read_vehicle_file_command().to_bytes() == h("00B0810050")
    assert issue_system_file(KEYS, IDENTITY, system_file(), challenge=challenge).to_bytes()[:5] == h(
        "04D6810067"
    )
    assert write_vehicle_file(KEYS, IDENTITY, VEHICLE, challenge=challenge).to_bytes()[:5] == h("04D6810053")
    tamper = write_tamper(KEYS, IDENTITY, TamperStatus.ACTIVATED, challenge=challenge).to_bytes()
    assert tamper[:6] == h("04D6811A0501") and len(tamper) == 10
    dates = write_dates_and_tamper(
        KEYS,
        IDENTITY,
        signing_date=date(2025, 1, 1),
        expiry_date=date(2035, 1, 1),
        tamper=TamperStatus.REMOVED,
        challenge=challenge,
    ).to_bytes()
    assert dates[:14] == h("04D681120D" + "20250101" + "20350101" + "00") and len(dates) == 18


async def test_a_blank_tag_reads_as_not_issued() -> None:
    reading = await read_system(in_field(new_tag()))
    assert reading.obu_number == OBU_NUMBER and not reading.issued and reading.file is None
    assert await read_vehicle(in_field(new_tag()), KEYS, IDENTITY) is None


async def test_issue_then_read_back_and_decrypt() -> None:
    tag = new_tag()
    reader = RecordingReader(tag)
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert [apdu[:2] for apdu in reader.sent] == [
        h("00A4"),
        h("00B0"),
        h("0084"),
        h("04D6"),
        h("00A4"),
        h("0084"),
        h("04D6"),
    ]
    reading = await read_system(reader)
    assert reading.issued and reading.file == system_file()
    assert await read_vehicle(reader, KEYS, IDENTITY) == VEHICLE
    assert tag.state.vehicle_file == VEHICLE.to_bytes()


async def test_the_vehicle_file_does_not_decrypt_under_another_issuers_keys() -> None:
    tag = new_tag()
    reader = in_field(tag)
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    with pytest.raises(MalformedAnswer):
        await read_vehicle(reader, SoftwareKeyService(OTHER_MASTER), IDENTITY)
    with pytest.raises(MalformedAnswer):
        decrypt_vehicle_file(KEYS, IDENTITY, challenge=h("00000001"), ciphertext=bytes(79))


async def test_another_issuers_keys_cannot_issue() -> None:
    tag = new_tag()
    with pytest.raises(StatusWordError) as refused:
        await issue(in_field(tag), SoftwareKeyService(OTHER_MASTER), system_file(), VEHICLE, issuer=GANSU)
    assert refused.value.sw == 0x9302 and tag.state == new_tag().state


def test_parse_system_file_refuses_what_is_not_a_system_file() -> None:
    with pytest.raises(StatusWordError):
        parse_system_file(Response.status(0x6A82))
    with pytest.raises(MalformedAnswer, match="99 bytes"):
        parse_system_file(Response(bytes(98), 0x9000))
    garbled = bytearray(system_file().to_bytes())
    garbled[18:22] = h("20241301")  # the 13th month
    with pytest.raises(MalformedAnswer, match="does not parse"):
        parse_system_file(Response(bytes(garbled), 0x9000))


async def test_issuance_cannot_write_activated_while_the_switch_is_released() -> None:
    tag = new_tag()
    with pytest.raises(StatusWordError) as refused:
        await issue(in_field(tag), KEYS, system_file(tamper=TamperStatus.ACTIVATED), VEHICLE, issuer=GANSU)
    assert refused.value.sw == 0x6982 and tag.state == new_tag().state


async def test_activation_needs_the_switch_pressed_and_releasing_it_marks_the_tag_removed() -> None:
    tag = new_tag()
    reader = in_field(tag)
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    with pytest.raises(StatusWordError) as refused:
        await activate(reader, KEYS, IDENTITY)
    assert refused.value.sw == 0x6982
    assert (await read_system(reader)).file == system_file()

    tag.press_switch()
    await activate(reader, KEYS, IDENTITY)
    activated = await read_system(reader)
    assert activated.file == replace(system_file(), tamper=TamperStatus.ACTIVATED)

    tag.release_switch()
    assert tag.state.switch is TamperSwitch.RELEASED
    assert (await read_system(reader)).file == system_file()  # removed: tamper 00 again
    tag.press_switch()
    await activate(reader, KEYS, IDENTITY)  # activation may be repeated
    assert tag.state.tamper == TamperStatus.ACTIVATED
    await set_tamper(reader, KEYS, IDENTITY, TamperStatus.REMOVED)
    assert tag.state.tamper == TamperStatus.REMOVED


async def test_a_damaged_tag_answers_6581_and_changes_nothing() -> None:
    tag = new_tag()
    tag.press_switch()
    tag.damage()
    before = replace(tag.state)
    reader = in_field(tag)
    with pytest.raises(StatusWordError) as refused:
        await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert refused.value.sw == 0x6581
    with pytest.raises(StatusWordError) as again:
        await activate(reader, KEYS, IDENTITY)
    assert again.value.sw == 0x6581
    assert tag.state == before
    assert not (await read_system(reader)).issued


async def test_a_second_tag_in_the_field_is_caught_before_any_write() -> None:
    first, second = new_tag(), new_tag(OTHER_OBU_NUMBER)
    reader = in_field(first)
    read_first = await read_system(reader)
    assert read_first.obu_number == OBU_NUMBER

    reader.enter(second)  # a second tag nearer the antenna answers from now on
    assert (await read_system(reader)).obu_number == OTHER_OBU_NUMBER
    with pytest.raises(TagChanged) as changed:
        await confirm_tag(reader, read_first.obu_number)
    assert changed.value.expected == OBU_NUMBER and changed.value.found == OTHER_OBU_NUMBER
    assert "6201000087654321" in changed.value.zh and "6201000087654321" in changed.value.en
    second.press_switch()
    with pytest.raises(TagChanged):
        await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    with pytest.raises(TagChanged):
        await activate(reader, KEYS, IDENTITY)
    assert first.state == new_tag().state
    assert second.state.system_file == new_tag(OTHER_OBU_NUMBER).state.system_file

    reader.take_out(second)
    assert (await confirm_tag(reader, read_first.obu_number)).obu_number == OBU_NUMBER
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert (await read_system(reader)).file == system_file()


# --- tears: 1 SELECT MF, 2 READ system, 3 GET CHALLENGE, 4 write system, 5 SELECT DF01, 6 GET CHALLENGE,
# 7 write vehicle (issue); 1 SELECT MF, 2 READ system, 3 GET CHALLENGE, 4 write tamper (set_tamper)


@pytest.mark.parametrize("applied", [True, False])
async def test_a_tear_on_the_system_file_write(applied: bool) -> None:
    tag = new_tag()
    reader = in_field(tag)
    tag.tear_after(4, applied=applied)
    with pytest.raises(CardRemoved):
        await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert not await reader.present()
    reader.insert(tag)
    reading = await read_system(reader)
    assert reading.obu_number == OBU_NUMBER
    assert reading.file == (system_file() if applied else None)
    assert await read_vehicle(reader, KEYS, IDENTITY) is None
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert (await read_system(reader)).file == system_file()
    assert await read_vehicle(reader, KEYS, IDENTITY) == VEHICLE


@pytest.mark.parametrize("applied", [True, False])
async def test_a_tear_on_the_vehicle_file_write(applied: bool) -> None:
    tag = new_tag()
    reader = in_field(tag)
    tag.tear_after(7, applied=applied)
    with pytest.raises(CardRemoved):
        await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    reader.insert(tag)
    assert (await read_system(reader)).file == system_file()
    assert await read_vehicle(reader, KEYS, IDENTITY) == (VEHICLE if applied else None)
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    assert await read_vehicle(reader, KEYS, IDENTITY) == VEHICLE


@pytest.mark.parametrize("applied", [True, False])
async def test_a_tear_on_the_tamper_byte_write(applied: bool) -> None:
    tag = new_tag()
    reader = in_field(tag)
    await issue(reader, KEYS, system_file(), VEHICLE, issuer=GANSU)
    tag.press_switch()
    tag.tear_on(0xD6, applied=applied)
    with pytest.raises(CardRemoved):
        await activate(reader, KEYS, IDENTITY)
    reader.insert(tag)
    reading = await read_system(reader)
    assert reading.file is not None
    assert reading.file.tamper == (TamperStatus.ACTIVATED if applied else TamperStatus.REMOVED)
    await activate(reader, KEYS, IDENTITY)
    assert (await read_system(reader)).file == replace(system_file(), tamper=TamperStatus.ACTIVATED)


_vins = st.text(st.sampled_from("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), min_size=17, max_size=17)
_vehicles = st.builds(
    ObuVehicleFile,
    plate=st.builds(
        lambda p, rest: p + rest,
        st.sampled_from(["甘A", "甘B", "京C", "新D", "蒙E"]),
        st.text(st.sampled_from("0123456789ABCDEFGHJK"), min_size=5, max_size=6),
    ),
    plate_colour=st.sampled_from(PlateColour),
    vehicle_class=st.sampled_from(VehicleClass),
    user_type=st.sampled_from(UserType),
    length_mm=st.integers(0, 0xFFFF),
    width_mm=st.integers(0, 0xFFFF),
    height_mm=st.integers(0, 0xFFFF),
    rated_load_kg=st.integers(0, 0xFFFFFF),
    curb_weight_kg=st.integers(0, 0xFFFFFF),
    gross_mass_kg=st.integers(0, 0xFFFFFF),
    rated_passengers=st.integers(0, 0xFF),
    vin=_vins,
    description=st.text(st.sampled_from("陇通货车客车张三ABC xyz-0123"), max_size=8),
    reserved=st.binary(min_size=14, max_size=14),
)


@settings(max_examples=40, deadline=None)
@given(_vehicles)
def test_any_vehicle_file_written_reads_back_equal(vehicle: ObuVehicleFile) -> None:
    async def scenario() -> ObuVehicleFile | None:
        reader = in_field(new_tag())
        await issue(reader, KEYS, system_file(), vehicle, issuer=GANSU)
        return await read_vehicle(reader, KEYS, IDENTITY)

    assert asyncio.run(scenario()) == vehicle
