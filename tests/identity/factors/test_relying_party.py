"""Passkeys are bound to a relying party: production must name it rather than trust the Host header."""

from __future__ import annotations

import httpx

from etcwallet.app import Runtime, create_app
from etcwallet.core.config import Settings


async def _options(settings: Settings, runtime: Runtime) -> httpx.Response:
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evil.example") as c:
        return await c.post("/api/v1/customers/auth/passkey/options", json={})


async def test_production_without_a_configured_relying_party_refuses(
    runtime: Runtime, settings: Settings
) -> None:
    production = settings.model_copy(update={"env": "production"})
    r = await _options(production, runtime)
    assert r.status_code == 503
    assert r.json()["code"] == "passkeys_not_configured"


async def test_configured_relying_party_wins_over_the_host_header(
    runtime: Runtime, settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "env": "production",
            "webauthn_rp_id": "wallet.example.cn",
            "webauthn_origin": "https://wallet.example.cn",
        }
    )
    r = await _options(configured, runtime)
    assert r.status_code == 200, r.text
    assert r.json()["public_key"]["rpId"] == "wallet.example.cn"
