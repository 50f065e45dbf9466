"""Fixtures of the identity tests: signed-in administrators."""

from __future__ import annotations

import httpx
import pytest

from etcwallet.identity.authz import Role
from tests.conftest import StaffFactory
from tests.identity.staff_helpers import me


@pytest.fixture
async def admin(make_staff: StaffFactory, client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A signed-in administrator whose session has stepped up (a role change asks for it): (headers, id)."""
    headers = await make_staff(Role.ADMINISTRATOR, step_up=True)
    return headers, (await me(client, headers))["id"]


@pytest.fixture
async def second_admin(make_staff: StaffFactory, client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """Another signed-in administrator, who approves what the first requests (stepped up, as the first):
    (headers, staff id)."""
    headers = await make_staff(Role.ADMINISTRATOR, step_up=True)
    return headers, (await me(client, headers))["id"]


@pytest.fixture
async def plain_admin(make_staff: StaffFactory, client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A signed-in administrator who has not stepped up: (headers, staff id)."""
    headers = await make_staff(Role.ADMINISTRATOR)
    return headers, (await me(client, headers))["id"]
