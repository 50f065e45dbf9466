"""Identity's sub-packages reach each other through service functions: none names another's tables.

Each sub-package's SQL names only its own tables; what it needs of another's (a customer's factor counts,
an anonymized customer's factors and devices, a session's step-up) it asks that sub-package's service.
"""

from __future__ import annotations

import re
from pathlib import Path

import etcwallet.identity

IDENTITY = Path(etcwallet.identity.__file__).parent

TABLES = {
    "customers": {"customers", "customer_profiles", "payment_passwords"},
    "staff": {"staff", "outlets", "staff_changes", "staff_enrollment_codes"},
    "factors": {"totp_factors", "recovery_codes", "passkeys", "webauthn_challenges"},
    "sessions": {"sessions", "session_refresh_history"},
}
"""Who owns which table. ``login_tickets`` is written by both sign-ins, each on its own principal's rows."""

DEPARTURES = {
    # The hot path's look-up joins a session with its principal in one round trip, and a refresh checks
    # the principal is active in the same statement (docs/architecture.md).
    ("sessions", "store.py"): {"customers", "staff", "outlets"},
}


def sql_tables(text: str) -> set[str]:
    return set(re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([a-z_]+)\b", text))


def test_no_sub_package_names_another_ones_tables() -> None:
    trespasses = []
    for package in TABLES:
        others = set().union(*(tables for name, tables in TABLES.items() if name != package))
        for path in sorted((IDENTITY / package).glob("*.py")):
            named = sql_tables(path.read_text()) & others
            named -= DEPARTURES.get((package, path.name), set())
            trespasses += [f"{package}/{path.name}: {table}" for table in sorted(named)]
    assert trespasses == []


def test_the_check_sees_a_trespass() -> None:
    assert sql_tables('"SELECT count(*) FROM totp_factors t JOIN sessions s ON ..."') == {
        "totp_factors",
        "sessions",
    }
