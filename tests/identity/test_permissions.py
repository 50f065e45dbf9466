"""The permissions the domains gate on: exactly who holds each, and separation of duties between roles."""

from __future__ import annotations

import pytest

from etcwallet.identity.authz import MONEY_MOVERS, ROLE_PERMISSIONS, SEPARATION_OF_DUTIES, Permission, Role

NEW_PERMISSION_HOLDERS: dict[Permission, frozenset[Role]] = {
    Permission.ISSUANCE_STOCK: frozenset({Role.OUTLET_SUPERVISOR}),
    Permission.LOADS_RECONCILE: frozenset({Role.FINANCE}),
    Permission.LOADS_REFUND: frozenset({Role.FINANCE}),
    Permission.PAYMENTS_OPERATE: frozenset({Role.FINANCE}),
    Permission.RISK_CASES: frozenset({Role.RISK_OFFICER}),
    Permission.TOLLING_DISPUTES: frozenset({Role.SUPPORT_AGENT, Role.RISK_OFFICER}),
    Permission.CLIENTS_MANAGE: frozenset({Role.ADMINISTRATOR}),
}


def holders(permission: Permission) -> frozenset[Role]:
    return frozenset(role for role, perms in ROLE_PERMISSIONS.items() if permission in perms)


@pytest.mark.parametrize("permission", list(NEW_PERMISSION_HOLDERS), ids=str)
def test_each_domain_permission_is_held_by_exactly_its_roles(permission: Permission) -> None:
    assert holders(permission) == NEW_PERMISSION_HOLDERS[permission]


def test_the_permissions_carry_their_dotted_names() -> None:
    assert {p.value for p in NEW_PERMISSION_HOLDERS} == {
        "issuance.stock",
        "loads.reconcile",
        "loads.refund",
        "payments.operate",
        "risk.cases",
        "tolling.disputes",
        "clients.manage",
    }


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_no_role_holds_a_maker_and_its_checker(role: Role) -> None:
    held = ROLE_PERMISSIONS[role]
    for makers, checkers, why in SEPARATION_OF_DUTIES:
        assert not (held & makers and held & checkers), f"{role}: {sorted(held & (makers | checkers))}: {why}"


def test_administrators_stay_off_the_money() -> None:
    assert not ROLE_PERMISSIONS[Role.ADMINISTRATOR] & MONEY_MOVERS
    assert {Permission.LOADS_REFUND, Permission.PAYMENTS_OPERATE} <= MONEY_MOVERS


def test_the_separation_would_catch_a_role_holding_both_sides() -> None:
    """The check above can fail: finance given the audit log breaks the second pair."""
    widened = ROLE_PERMISSIONS[Role.FINANCE] | {Permission.AUDIT_READ}
    broken = [
        why for makers, checkers, why in SEPARATION_OF_DUTIES if widened & makers and widened & checkers
    ]
    assert broken == ["whoever moves money is not who reads the audit of it or investigates it"]
