"""Shared parts for the OBU tests: one issuer and its master keys, tags fresh from the factory, sample files."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date

from etcwallet.issuance.chip.files import (
    IssuerId,
    ObuNumber,
    ObuSystemFile,
    ObuVehicleFile,
    TamperStatus,
)
from etcwallet.issuance.chip.keys import IssuerMasterKeys
from etcwallet.issuance.chip.obu_emulator import ObuEmulator
from etcwallet.issuance.codes import PlateColour, UserType, VehicleClass

h = bytes.fromhex
GANSU = IssuerId("甘肃", "62010001")
MASTER = IssuerMasterKeys(
    load=h("0123456789ABCDEFFEDCBA9876543210"),
    purchase=h("11111111111111112222222222222222"),
    tac=h("33333333333333334444444444444444"),
    maintenance=h("55555555555555556666666666666666"),
)
OTHER_MASTER = IssuerMasterKeys(
    load=h("00" * 16),
    purchase=h("11" * 16),
    tac=h("22" * 16),
    maintenance=h("77777777777777778888888888888888"),
)
OBU_NUMBER = ObuNumber("6201000012345678")
OTHER_OBU_NUMBER = ObuNumber("6201000087654321")


def counting_random() -> Callable[[int], bytes]:
    """Challenges 00000001, 00000002, …: distinct, and the same in every run."""
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


def new_tag(obu_number: ObuNumber = OBU_NUMBER) -> ObuEmulator:
    """A blank tag of the Gansu issuer, with predictable challenges."""
    return ObuEmulator.manufacture(obu_number, issuer=GANSU, master=MASTER, random=counting_random())


def system_file(
    obu_number: ObuNumber = OBU_NUMBER, tamper: TamperStatus = TamperStatus.REMOVED
) -> ObuSystemFile:
    """The system file issuance writes (tamper 00 until the tag is activated on the car)."""
    return ObuSystemFile(GANSU, 1, 0x40, obu_number, date(2024, 1, 1), date(2034, 1, 1), tamper)


VEHICLE = ObuVehicleFile(
    "甘A12345",
    PlateColour.YELLOW,
    VehicleClass.TRUCK_2,
    UserType.NORMAL,
    7000,
    2300,
    3000,
    5000,
    4000,
    9000,
    3,
    "1M8GDM9AXKP042788",
    "陇通货车",
)
