"""The virtual OBU answers every command and every refusal as its module documents, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.emulator import ChipStore, ChipTorn, EmulatedReader
from etcwallet.issuance.chip.files import TAMPER_OFFSET, ObuVehicleFile, TamperStatus
from etcwallet.issuance.chip.obu_emulator import (
    ObuEmulator,
    ObuState,
    TamperSwitch,
    blank_system_file,
    obu_maintenance_key,
)
from etcwallet.issuance.chip.reader import CardRemoved
from tests.issuance.chip.obu_parts import GANSU, MASTER, OBU_NUMBER, VEHICLE, new_tag, system_file

h = bytes.fromhex
KEY = obu_maintenance_key(MASTER, GANSU, OBU_NUMBER)


def sw(answer: bytes) -> str:
    return answer[-2:].hex().upper()


def run(tag: ObuEmulator, apdu: str) -> bytes:
    return tag.transmit(h(apdu))


def secured(tag: ObuEmulator, offset: int, content: bytes, *, mac_key: bytes = KEY) -> bytes:
    """``04 D6 81 offset Lc`` content ‖ MAC under a fresh challenge, as the tag's data sheet says."""
    challenge = run(tag, "0084000004")[:4]
    header = bytes((0x04, 0xD6, 0x81, offset, len(content) + 4))
    return header + content + crypto.line_protection_mac(mac_key, challenge, header + content)


def test_a_blank_tag_knows_only_its_number() -> None:
    tag = new_tag()
    assert tag.kind == "tag" and tag.number == "6201000012345678"
    assert sw(run(tag, "00A40000023F00")) == "9000"
    answer = run(tag, "00B0810063")
    assert sw(answer) == "9000" and answer[:-2] == blank_system_file(OBU_NUMBER)
    assert answer[10:18] == h("6201000012345678") and answer[:10] == bytes(10)


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00A40000023F00", "9000"),
        ("00A4000002DF01", "9000"),
        ("00A4000002EF01", "9000"),
        ("00A40000021001", "6A82"),
        ("00A40400023F00", "6A86"),
        ("00A40000033F0000", "6700"),
        ("00A40000023F0000", "6700"),  # an Le on SELECT
        ("0084000004", "9000"),
        ("0084000008", "6700"),
        ("0084010004", "6A86"),
        ("00B0820063", "6A82"),  # another short file identifier
        ("00B0000063", "6A82"),  # "the selected EF" with none selected
        ("00B0050063", "6A86"),
        ("00B0816001", "9000"),
        ("00B0816004", "6700"),  # past the 99th byte
        ("00B08100", "6700"),  # no Le
        ("00B081000101", "6700"),  # data on a read
        ("00D681000100", "6982"),  # a plain write
        ("00D68100", "6700"),
        ("80A40000023F00", "6E00"),
        ("04A40000023F00", "6E00"),  # the secured class on a plain command
        ("00990000", "6D00"),
        ("00A4", "6700"),
        ("00A40000053F00", "6700"),  # Lc says more than came
    ],
)
def test_commands_and_refusals(apdu: str, status: str) -> None:
    tag = new_tag()
    assert sw(run(tag, apdu)) == status
    assert tag.state == new_tag().state  # no plain command changes what the tag keeps


def test_get_challenge_gives_the_random_bytes() -> None:
    tag = new_tag()
    assert run(tag, "0084000004") == h("000000019000")
    assert run(tag, "0084000004") == h("000000029000") and tag.challenge == h("00000002")


def test_select_ef01_lets_p1_00_read_it() -> None:
    tag = new_tag()
    assert sw(run(tag, "00A4000002EF01")) == "9000"
    assert run(tag, "00B000000A")[:-2] == bytes(10)


def test_the_vehicle_file_reads_only_encrypted_under_a_fresh_challenge() -> None:
    tag = new_tag()
    tag.state.vehicle_file = VEHICLE.to_bytes()
    run(tag, "00A4000002DF01")
    assert sw(run(tag, "00B0810050")) == "6985"
    challenge = run(tag, "0084000004")[:4]
    answer = run(tag, "00B0810050")
    assert sw(answer) == "9000" and len(answer) == 82
    plain = crypto.decrypt_padded(crypto.challenge_session_key(KEY, challenge), answer[:-2])
    assert ObuVehicleFile.from_bytes(plain) == VEHICLE
    assert sw(run(tag, "00B0810050")) == "6985"  # the challenge was spent
    run(tag, "0084000004")
    assert sw(run(tag, "00B0810040")) == "6700"
    assert sw(run(tag, "00B0811050")) == "6700"


def test_a_secured_write_with_the_right_mac_is_stored() -> None:
    tag = new_tag()
    run(tag, "00A40000023F00")
    assert sw(run(tag, secured(tag, 0, system_file().to_bytes()).hex())) == "9000"
    assert tag.state.system_file == system_file().to_bytes()
    run(tag, "00A4000002DF01")
    assert sw(tag.transmit(secured(tag, 0, VEHICLE.to_bytes()))) == "9000"
    assert tag.state.vehicle_file == VEHICLE.to_bytes()
    run(tag, "00A40000023F00")
    dates = h("20250101") + h("20350101") + b"\x00"
    command = secured(tag, 0x12, dates)
    assert command[:5] == h("04D681120D")
    assert sw(tag.transmit(command)) == "9000" and tag.state.system_file[18:27] == dates


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda tag: h("04D6810001") + bytes(1), "6700"),  # no room for a MAC
        (lambda tag: secured(tag, 0x60, bytes(4)), "6700"),  # past the end of the file
        (lambda tag: secured(tag, 0, bytes(1)) + b"\x00", "6700"),  # an Le
        (lambda tag: h("04D6810005") + bytes(5), "6985"),  # no challenge asked
        (lambda tag: secured(tag, 0, bytes(1), mac_key=bytes(16)), "9302"),
        (lambda tag: secured(tag, TAMPER_OFFSET, b"\x01"), "6982"),  # activated with the switch released
    ],
)
def test_refused_secured_writes_change_nothing(make: object, status: str) -> None:
    tag = new_tag()
    run(tag, "00A40000023F00")
    before = ObuState.from_dict(tag.to_state())
    assert callable(make)
    assert sw(tag.transmit(make(tag))) == status
    assert tag.state == before


def test_a_refused_write_spends_the_challenge() -> None:
    tag = new_tag()
    run(tag, "00A40000023F00")
    assert sw(tag.transmit(secured(tag, 0, bytes(1), mac_key=bytes(16)))) == "9302"
    assert tag.challenge is None
    assert sw(tag.transmit(h("04D6810005") + bytes(5))) == "6985"


def test_the_tamper_byte_follows_the_switch() -> None:
    tag = new_tag()
    run(tag, "00A40000023F00")
    tag.press_switch()
    command = secured(tag, TAMPER_OFFSET, b"\x01")
    assert command[:5] == h("04D6811A05")
    assert sw(tag.transmit(command)) == "9000" and tag.state.tamper == TamperStatus.ACTIVATED
    tag.release_switch()
    assert tag.state.switch is TamperSwitch.RELEASED and tag.state.tamper == TamperStatus.REMOVED
    assert run(tag, "00B0811A01") == h("009000")


def test_a_damaged_tag_answers_6581_and_keeps_its_files() -> None:
    tag = new_tag()
    tag.press_switch()
    tag.damage()
    run(tag, "00A40000023F00")
    before = ObuState.from_dict(tag.to_state())
    assert sw(tag.transmit(secured(tag, TAMPER_OFFSET, b"\x01"))) == "6581"
    assert tag.state == before
    assert sw(run(tag, "00B0810063")) == "9000"  # reads still work


def test_power_forgets_the_selection_and_the_challenge() -> None:
    tag = new_tag()
    run(tag, "00A4000002DF01")
    run(tag, "0084000004")
    tag.power_down()
    assert tag.challenge is None
    assert run(tag, "00B0810063")[:-2] == blank_system_file(OBU_NUMBER)  # the MF again


def test_snapshot_and_restore() -> None:
    tag = new_tag()
    shot = tag.snapshot()
    run(tag, "00A40000023F00")
    tag.press_switch()
    tag.transmit(secured(tag, TAMPER_OFFSET, b"\x01"))
    tag.restore(shot)
    assert tag.state.tamper == TamperStatus.REMOVED and tag.state.switch is TamperSwitch.RELEASED
    with pytest.raises(TypeError):
        tag.restore(object())


@pytest.mark.parametrize("applied", [True, False])
def test_a_tear_on_a_write_takes_effect_or_not(applied: bool) -> None:
    tag = new_tag()
    tag.press_switch()
    run(tag, "00A40000023F00")
    tag.tear_on(0xD6, applied=applied)
    with pytest.raises(ChipTorn):
        tag.transmit(secured(tag, TAMPER_OFFSET, b"\x01"))
    assert tag.state.tamper == (TamperStatus.ACTIVATED if applied else TamperStatus.REMOVED)
    assert tag.challenge is None


async def test_a_torn_tag_leaves_the_emulated_reader() -> None:
    tag = new_tag()
    reader = EmulatedReader()
    reader.insert(tag)
    tag.tear_after(1, applied=False)
    with pytest.raises(CardRemoved):
        await reader.transmit(h("00A40000023F00"))
    assert not await reader.present()
    reader.insert(tag)
    assert sw(await reader.transmit(h("00A40000023F00"))) == "9000"


def test_state_json_round_trip() -> None:
    tag = new_tag()
    tag.press_switch()
    tag.damage()
    tag.state.vehicle_file = VEHICLE.to_bytes()
    assert ObuState.from_json(tag.state.to_json()) == tag.state
    again = ObuEmulator.from_state(json.loads(json.dumps(tag.to_state())))
    assert again.state == tag.state and again.number == tag.number
    with pytest.raises(ValueError, match="16 bytes"):
        ObuState.blank(OBU_NUMBER, bytes(8))
    with pytest.raises(ValueError, match="99 bytes"):
        ObuState(OBU_NUMBER, KEY, bytes(98))


async def test_the_store_keeps_a_tag_across_restarts(tmp_path: Path) -> None:
    store = ChipStore(tmp_path, [ObuEmulator])
    tag = new_tag()
    store.add(tag)
    tag.press_switch()
    reader = EmulatedReader(store.get)
    reader.insert(tag)
    await reader.transmit(h("00A40000023F00"))
    challenge = (await reader.transmit(h("0084000004")))[:4]
    header = h("04D6811A05")
    mac = crypto.line_protection_mac(KEY, challenge, header + b"\x01")
    assert sw(await reader.transmit(header + b"\x01" + mac)) == "9000"
    assert store.numbers() == ["6201000012345678"]
    stored = json.loads((tmp_path / "6201000012345678.json").read_text())
    assert stored["kind"] == "tag" and "challenge" not in stored["state"]

    later = ChipStore(tmp_path, [ObuEmulator])
    kept = later.get("6201000012345678")
    assert isinstance(kept, ObuEmulator) and kept is not tag
    assert kept.state == tag.state and kept.state.tamper == TamperStatus.ACTIVATED
    assert kept.state.switch is TamperSwitch.PRESSED
    second = EmulatedReader(later.get)
    assert second.insert("6201000012345678") is kept
    kept.release_switch()
    assert ChipStore(tmp_path, [ObuEmulator]).get("6201000012345678").state.tamper == 0  # type: ignore[union-attr]
