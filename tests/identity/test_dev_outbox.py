"""The development SMS outbox is served only with ETCW_DEV_OUTBOX=1 and never in production, over HTTP and
on the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from etcwallet.app import Runtime, create_app
from etcwallet.core.config import Settings


async def test_outbox_answers_outside_production_and_validates_the_phone(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/dev/sms-outbox", params={"phone": "13900000000"})).status_code == 200
    r = await client.get("/api/v1/dev/sms-outbox", params={"phone": "12345678901"})
    assert r.status_code == 422 and r.json()["field"] == "phone"


@pytest.mark.parametrize(
    "change",
    [
        {"env": "production"},  # even with ETCW_DEV_OUTBOX=1
        {"env": "development", "dev_outbox": False},  # the default development mode
        {"env": "demo", "dev_outbox": False},
    ],
)
async def test_outbox_is_absent_unless_switched_on_outside_production(
    runtime: Runtime, settings: Settings, change: dict[str, object]
) -> None:
    assert settings.dev_outbox
    app = create_app(settings.model_copy(update=change), runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.get("/api/v1/dev/sms-outbox", params={"phone": "13900000000"})
    assert r.status_code == 404
    assert "/api/v1/dev/sms-outbox" not in app.openapi()["paths"]


def test_settings_read_the_switch_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCW_DEV_OUTBOX", raising=False)
    assert not Settings(env="development").serves_dev_outbox
    monkeypatch.setenv("ETCW_DEV_OUTBOX", "1")
    assert Settings(env="development").serves_dev_outbox
    assert not Settings(env="production").serves_dev_outbox


def test_cli_dev_command_needs_the_switch_and_is_absent_in_production() -> None:
    def help_text(env: str, outbox: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etcwallet.cli", "--help"],
            env=dict(os.environ, ETCW_ENV=env, ETCW_DEV_OUTBOX=outbox, COLUMNS="200"),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    assert " dev " in help_text("development", "1")
    assert " dev " not in help_text("development", "0")
    assert " dev " not in help_text("production", "1")
