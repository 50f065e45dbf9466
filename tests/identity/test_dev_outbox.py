"""The development SMS outbox exists outside production only, over HTTP and on the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from etcwallet.app import Runtime, create_app
from etcwallet.core.config import Settings


async def test_outbox_answers_outside_production_and_validates_the_phone(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/dev/sms-outbox", params={"phone": "13900000000"})).status_code == 200
    r = await client.get("/api/v1/dev/sms-outbox", params={"phone": "12345678901"})
    assert r.status_code == 422 and r.json()["field"] == "phone"


async def test_outbox_is_absent_in_production(runtime: Runtime, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"env": "production"}), runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.get("/api/v1/dev/sms-outbox", params={"phone": "13900000000"})
    assert r.status_code == 404
    assert "/api/v1/dev/sms-outbox" not in app.openapi()["paths"]


def test_cli_dev_command_is_absent_in_production() -> None:
    def help_text(env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etcwallet.cli", "--help"],
            env=dict(os.environ, ETCW_ENV=env, COLUMNS="200"), capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    assert " dev " in help_text("development")
    assert " dev " not in help_text("production")
