"""Bodies that are too large, not JSON, or JSON no parser should swallow: each a 4xx problem naming the field.

Every case runs over the fast lane (``POST /api/v1/ledger/transfers``, served by ``HotRoutes``) and over
routes FastAPI serves. Size limits are checked at the ASGI level too: a body whose ``Content-Length`` is
over the limit must be refused without a single byte read, and a chunked body must stop being read at the
chunk that crosses the limit.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from etcwallet.core.bodies import MAX_BODY, MIB
from etcwallet.core.http import MAX_HOT_BODY

PROBLEM = "application/problem+json"
L = "/api/v1/ledger"
FAST = f"{L}/transfers"
NORMAL = f"{L}/accounts"
BATCH = f"{L}/transfers/batch"
EN = {"Accept-Language": "en"}


def problem(resp: httpx.Response, status: int, code: str, field: str) -> dict[str, Any]:
    """The answer is a problem with this status, naming ``field`` with ``code`` (in ``errors`` or on top)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].split(";")[0] == PROBLEM
    body: dict[str, Any] = resp.json()
    named = {(body.get("field"), body.get("code"))} | {
        (e["field"], e["code"]) for e in body.get("errors", [])
    }
    assert (field, code) in named, body
    return body


def transfer(**over: Any) -> dict[str, Any]:
    body = {
        "id": str(uuid4()),
        "debit_account_id": str(uuid4()),
        "credit_account_id": str(uuid4()),
        "amount": {"amount": 100, "currency": "CNY"},
        "code": "e2e",
    }
    return body | over


def account(**over: Any) -> dict[str, Any]:
    return {"id": str(uuid4()), "currency": "CNY", "code": "general", "owner": "bad-bodies"} | over


# --- size (issue 15, item 9) ---------------------------------------------------------------------------


async def asgi_post(
    app: FastAPI, path: str, chunks: int, chunk: bytes, content_length: int | None, token: str = ""
) -> tuple[int, dict[str, Any], int]:
    """POST straight through the ASGI interface: (status, problem, how many chunks the app pulled)."""
    headers = [(b"content-type", b"application/json"), (b"accept-language", b"en")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("10.66.0.1", 1),
        "server": ("test", 80),
    }
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert dict(start["headers"])[b"content-type"].startswith(PROBLEM.encode())
    return start["status"], json.loads(body), pulled


@pytest.mark.parametrize(("path", "limit"), [(NORMAL, MAX_BODY), (FAST, MAX_HOT_BODY), (BATCH, 8 * MIB)])
async def test_a_declared_length_over_the_limit_is_refused_unread(
    app: FastAPI, path: str, limit: int
) -> None:
    """An anonymous 200 MB POST is answered 413 at once: not one chunk of it is read."""
    status, body, pulled = await asgi_post(app, path, 3200, b"x" * 65536, content_length=200 * 1000 * 1000)
    assert status == 413
    assert (body["code"], body["field"], body["max_bytes"]) == ("body_too_large", "body", limit)
    assert str(limit) in body["title"]
    assert pulled == 0


@pytest.mark.parametrize(("path", "limit"), [(NORMAL, MAX_BODY), (FAST, MAX_HOT_BODY)])
async def test_a_chunked_body_stops_at_the_limit(
    app: FastAPI, finance_token: str, path: str, limit: int
) -> None:
    """Without Content-Length, reading stops with the chunk that crosses the limit, not at the end."""
    chunk = b" " * 16384
    status, body, pulled = await asgi_post(app, path, 3200, chunk, content_length=None, token=finance_token)
    assert status == 413
    assert body["code"] == "body_too_large"
    assert pulled == limit // len(chunk) + 1


async def test_the_limit_is_in_the_callers_language(anonymous: httpx.AsyncClient) -> None:
    big = b"{" + b" " * (MAX_BODY + 1) + b"}"
    zh = await anonymous.post(NORMAL, content=big, headers={"Content-Type": "application/json"})
    en = await anonymous.post(NORMAL, content=big, headers={"Content-Type": "application/json", **EN})
    assert problem(zh, 413, "body_too_large", "body")["title"].startswith("请求体太大")
    assert problem(en, 413, "body_too_large", "body")["title"].startswith("the request body is too large")


async def test_the_batch_route_takes_more_than_the_default(client: httpx.AsyncClient) -> None:
    """A batch over 1 MiB is read (and here refused for its content, not its size); over 8 MiB it is not."""
    padded = {"transfers": [transfer()], "padding": "x" * (MAX_BODY + 1000)}
    problem(await client.post(BATCH, json=padded), 422, "extra_forbidden", "padding")
    padded["padding"] = "x" * (8 * MIB)
    problem(await client.post(BATCH, json=padded), 413, "body_too_large", "body")


async def test_the_limits_are_documented(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert paths[BATCH]["post"]["x-max-body-bytes"] == 8 * MIB
    assert paths[FAST]["post"]["x-max-body-bytes"] == MAX_HOT_BODY
    assert "1048576" in paths[NORMAL]["post"]["responses"]["413"]["description"]


# --- bad JSON (issue 15, item 13) ---------------------------------------------------------------------


async def post_raw(client: httpx.AsyncClient, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return await client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("path", [FAST, NORMAL])
async def test_invalid_utf8_is_a_422_in_the_callers_language(client: httpx.AsyncClient, path: str) -> None:
    raw = json.dumps(transfer() if path == FAST else account()).encode().replace(b'"e2e"', b'"e\xff2e"')
    raw = raw.replace(b'"bad-bodies"', b'"bad\xfe-bodies"')
    zh = problem(await post_raw(client, path, raw), 422, "invalid_utf8", "body")
    en = problem(await post_raw(client, path, raw, **EN), 422, "invalid_utf8", "body")
    assert "UTF-8" in zh["errors"][0]["message"] and "不是有效的" in zh["errors"][0]["message"]
    assert en["errors"][0]["message"].startswith("the body is not valid UTF-8 (at byte ")


@pytest.mark.parametrize("path", [FAST, NORMAL])
async def test_json_nested_a_thousand_deep_is_a_422(client: httpx.AsyncClient, path: str) -> None:
    deep = "[" * 1000 + "]" * 1000
    raw = (
        json.dumps(transfer() if path == FAST else account())
        .replace('"e2e"', deep)
        .replace('"bad-bodies"', deep)
    )
    body = problem(await post_raw(client, path, raw.encode(), **EN), 422, "json_too_deep", "body")
    assert body["errors"][0]["message"] == "the JSON is nested too deeply"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (FAST, "amount.amount"),
        (BATCH, "transfers.1.amount.amount"),
        (f"{L}/transfers/{uuid4()}/post", "amount.amount"),
    ],
)
async def test_a_five_thousand_digit_amount_names_the_amount(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    if path == BATCH:
        doc: dict[str, Any] = {"transfers": [transfer(), transfer(amount={"amount": 7, "currency": "CNY"})]}
    elif path == FAST:
        doc = transfer(amount={"amount": 7, "currency": "CNY"})
    else:
        doc = {"id": str(uuid4()), "amount": {"amount": 7, "currency": "CNY"}}
    raw = json.dumps(doc).replace('"amount": 7', '"amount": ' + "9" * 5000)
    body = problem(await post_raw(client, path, raw.encode(), **EN), 422, "number_too_long", field)
    assert body["errors"][0]["message"] == "the number has too many digits to read"


@pytest.mark.parametrize(("path", "key"), [(FAST, "metadata"), (NORMAL, "metadata"), (NORMAL, "owner")])
async def test_a_lone_surrogate_names_its_field_without_a_codec_message(
    client: httpx.AsyncClient, path: str, key: str
) -> None:
    doc = transfer() if path == FAST else account()
    doc[key] = {"note": "SURROGATE"} if key == "metadata" else "SURROGATE"
    raw = json.dumps(doc).replace("SURROGATE", "a\\ud800b")
    resp = await post_raw(client, path, raw.encode(), **EN)
    body = problem(resp, 422, "lone_surrogate", key)
    assert "codec" not in resp.text and "utf-8" not in resp.text.lower().replace("valid utf-8", "")
    assert "surrogate" in body["errors"][0]["message"]
    zh = problem(await post_raw(client, path, raw.encode()), 422, "lone_surrogate", key)
    assert "代理项" in zh["errors"][0]["message"]


@pytest.mark.parametrize("path", [FAST, NORMAL])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_not_sent_as_json_is_a_415(
    client: httpx.AsyncClient, path: str, content_type: str | None
) -> None:
    raw = json.dumps(transfer() if path == FAST else account()).encode()
    request = client.build_request("POST", path, content=raw, headers=EN)
    request.headers.pop("Content-Type", None)
    if content_type is not None:
        request.headers["Content-Type"] = content_type
    body = problem(await client.send(request), 415, "unsupported_media_type", "Content-Type")
    assert "application/json" in body["title"]


async def test_json_with_a_charset_is_still_json(client: httpx.AsyncClient) -> None:
    raw = json.dumps(transfer()).encode()
    resp = await client.post(FAST, content=raw, headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 404, resp.text  # read and validated: the accounts do not exist


@pytest.mark.parametrize("at", ["99999999999", "1700000000", "1700000000.5", " 42 "])
async def test_a_number_is_not_a_time(client: httpx.AsyncClient, at: str) -> None:
    """``at=99999999999`` was read as epoch milliseconds; a time must be ISO 8601 with an offset."""
    resp = await client.get(f"{L}/accounts/{uuid4()}/balance", params={"at": at}, headers=EN)
    body = problem(resp, 422, "iso_time_required", "at")
    assert "ISO 8601" in body["errors"][0]["message"]
    zh = await client.get(f"{L}/accounts/{uuid4()}/balance", params={"at": at})
    assert "ISO 8601" in problem(zh, 422, "iso_time_required", "at")["errors"][0]["message"]
