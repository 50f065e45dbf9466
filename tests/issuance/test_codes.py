"""The code tables of spec §9 with both names, and the provinces (the vehicle checks: test_vehicles.py)."""

from __future__ import annotations

from etcwallet.issuance.codes import (
    PROVINCES,
    CardType,
    ObuListReason,
    PlateColour,
    StatusListReason,
    UserType,
    VehicleClass,
)


def test_tables_hold_the_spec_codes_with_both_names() -> None:
    assert [int(c) for c in PlateColour] == [0, 1, 2, 3, 4, 5, 6, 7, 11, 12]
    assert PlateColour(4).zh == "渐变绿" and PlateColour.YELLOW_GREEN.en.startswith("yellow-green")
    assert (CardType.STORED_VALUE, CardType.ACCOUNT) == (22, 23) and CardType(22).zh == "储值卡"
    assert [int(u) for u in UserType] == [0, 6, 8, 10, 12, 14]
    assert [int(r) for r in StatusListReason] == [1, 6, 101, 102, 103, 104, 105]
    assert ObuListReason(3).zh == "无签注销"
    assert [int(v) for v in VehicleClass] == [1, 2, 3, 4, *range(11, 17), *range(21, 27)]
    assert (
        VehicleClass.TRUCK_2.text("zh-CN") == "二类货车"
        and VehicleClass.TRUCK_2.text("en") == "truck class 2"
    )
    assert len(PROVINCES) == 31 and PROVINCES["甘"] == (62, "甘肃")
