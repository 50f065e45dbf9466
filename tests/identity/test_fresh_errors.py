"""Every refusal is a new exception object (issue 16, item 7).

An exception object raised a second time keeps the traceback of its first raise under the new one, and
with it the frames of the earlier request and their locals: a shared refusal such as "wrong password"
held every failed sign-in's password for as long as the process lived. Identity and the ledger build each
refusal from their error table when they raise it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import string
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType, TracebackType
from uuid import uuid4

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

import etcwallet
from etcwallet.app import Runtime, create_app
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.errors import DomainError, domain_problem
from etcwallet.identity.customers import service as customers
from etcwallet.identity.errors import IDENTITY_ERRORS, IdentityError
from etcwallet.identity.staff import service as staff
from etcwallet.ledger.errors import LEDGER_ERRORS, LedgerError
from etcwallet.platform.unit import UnitOfWork
from tests.identity.customer_helpers import new_phone


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


async def _refused(attempt: Callable[[str], Awaitable[object]], password: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await attempt(password)
    return caught.value


@pytest.mark.parametrize("who", ["customer", "staff"])
async def test_a_refusal_carries_no_frame_of_an_earlier_sign_in(
    who: str, pool: AsyncConnectionPool, keys: Keys
) -> None:
    """Two failed sign-ins: the second refusal's traceback holds only its own frames, none of the first's,
    and so not the first attempt's password."""

    async def attempt(password: str) -> object:
        if who == "customer":
            client = customers.Client("192.0.2.16", "pytest")
            return await customers.login_password(
                uow=UnitOfWork(pool), phone=new_phone(), password=password, client=client
            )
        name = f"nobody.{uuid4().hex[:10]}"
        return await staff.login_password(
            pool, cipher=keys.cipher, username=name, password=password, client=customers.Client(None, None)
        )

    passwords = ("First-secret-0416", "Second-secret-0416")
    first = await _refused(attempt, passwords[0])
    first_frames = list(_frames(first.__traceback__))
    second = await _refused(attempt, passwords[1])
    second_frames = list(_frames(second.__traceback__))

    assert first.code == second.code == "invalid_credentials"
    assert second is not first
    assert [f.f_code.co_name for f in second_frames] == [f.f_code.co_name for f in first_frames]
    assert not [f for f in second_frames if any(f is g for g in first_frames)]
    holding = [f.f_code.co_name for f in second_frames if passwords[0] in repr(list(f.f_locals.values()))]
    assert holding == []


async def test_requests_are_refused_with_objects_of_their_own(settings: Settings, runtime: Runtime) -> None:
    """Through the application, each request's refusal is an object of its own. (Starlette forgets a
    handled exception's traceback once it has answered, which hides a shared object between requests one
    after another, but not between requests at the same time: each raise of the shared object would add
    its frames to the traceback the other request is still carrying.)"""
    app = create_app(settings, runtime=runtime)
    handled: list[DomainError] = []

    async def recording(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        handled.append(exc)
        return await domain_problem(request, exc)

    app.exception_handlers[DomainError] = recording
    client = (f"10.{os.getpid() % 250}.{uuid4().int % 250}.{uuid4().int % 250}", 50000)
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        for password in ("First-secret-0416", "Second-secret-0416"):
            r = await c.post("/api/v1/customers/login", json={"phone": new_phone(), "password": password})
            assert r.status_code == 401 and r.json()["code"] == "invalid_credentials", r.text
    first, second = handled
    assert second is not first


def test_no_module_keeps_an_exception_object_to_raise() -> None:
    """A module-level exception instance is raised again and again: none may exist anywhere."""
    shared = []
    for info in pkgutil.walk_packages(etcwallet.__path__, "etcwallet."):
        module = importlib.import_module(info.name)
        shared += [f"{info.name}.{name}" for name, v in vars(module).items() if isinstance(v, BaseException)]
    assert shared == []


@pytest.mark.parametrize("key", sorted(IDENTITY_ERRORS))
def test_every_identity_refusal_builds_from_the_table(key: str) -> None:
    status, zh, en, field = IDENTITY_ERRORS[key]
    names = {n for text in (zh, en) for _, n, _, _ in string.Formatter().parse(text) if n}
    error = IdentityError(key, text={n: "X" for n in names})
    assert (error.code, error.status, error.field) == (key.partition("@")[0], status, field)
    assert "{" not in error.zh + error.en and error.zh != error.en
    assert IdentityError(key, text={n: "X" for n in names}) is not error


@pytest.mark.parametrize("key", sorted(LEDGER_ERRORS))
def test_every_ledger_refusal_builds_from_the_table(key: str) -> None:
    status, zh, en, field = LEDGER_ERRORS[key]
    names = {n for text in (zh, en) for _, n, _, _ in string.Formatter().parse(text) if n}
    error = LedgerError(key, text={n: 7 for n in names})
    assert (error.code, error.status, error.field) == (key, status, field)
    assert "{" not in error.zh + error.en
    assert error.at(3).en == error.en and error.at(3).extra["index"] == 3
