"""Masks for personal data and the structlog processor that applies them."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog

from etcwallet.core.config import Settings
from etcwallet.core.logging import configure_logging
from etcwallet.core.masking import (
    mask_bank_card,
    mask_card_numbers,
    mask_free_text,
    mask_id_number,
    mask_mapping,
    mask_name,
    mask_phone,
    mask_secrets_processor,
)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("620102199001011234", "6201**********1234"),
        ("11010519491231002X", "1101**********002X"),
        ("110105491231002", "1101*******1002"),  # 15-character (first-generation) ID
        ("6201 0219 9001 0112 34", "6201**********1234"),
        ("E12345678", "E1*****78"),  # passport: shorter values show less
        ("H1234567", "H1****67"),
        ("123", "***"),
        ("", ""),
    ],
)
def test_mask_id_number(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("+8613812345678", "+86*******5678"),
        ("12345", "1***5"),
        ("123", "***"),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("6222021234567890123", "6222 **** **** 0123"),
        ("4111 1111 1111 1111", "4111 **** **** 1111"),
        ("622202123456", "6222 **** **** 3456"),
        ("12345678", "**** 78"),
        ("123", "****"),
    ],
)
def test_mask_bank_card(value: str, masked: str) -> None:
    assert mask_bank_card(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [("张三丰", "张**"), ("张三", "张*"), ("欧阳修远", "欧***"), ("张", "*"), ("", ""), ("Li Lei", "L*****")],
)
def test_mask_name(value: str, masked: str) -> None:
    assert mask_name(value) == masked


def run(event: dict[str, Any]) -> dict[str, Any]:
    return dict(mask_secrets_processor(None, "info", dict(event)))


def test_processor_masks_personal_data() -> None:
    out = run(
        {
            "event": "customer registered 13812345678",
            "id_number": "620102199001011234",
            "customerIdNumber": "620102199001011234",
            "resident_id": "11010519491231002X",
            "phone": "13812345678",
            "mobile_phone": 13812345678,
            "bank_card": "6222021234567890123",
            "bank_card_no": "6222021234567890123",
            "real_name": "张三丰",
        }
    )
    assert out == {
        "event": "customer registered 13812345678",  # the message itself is the caller's responsibility
        "id_number": "6201**********1234",
        "customerIdNumber": "6201**********1234",
        "resident_id": "1101**********002X",
        "phone": "138****5678",
        "mobile_phone": "138****5678",
        "bank_card": "6222 **** **** 0123",
        "bank_card_no": "6222 **** **** 0123",
        "real_name": "张**",
    }


@pytest.mark.parametrize(
    "key",
    [
        "password", "new_password", "passwordHash", "payment_password", "pin", "token", "access_token",
        "refresh_token", "csrf_token", "secret", "totp_secret", "client_secret", "code", "sms_code",
        "otp_code", "verification_code", "otp", "api_key", "authorization", "cookie",
    ],
)  # fmt: skip
def test_processor_hides_secrets(key: str) -> None:
    assert run({"event": "e", key: "hunter2"})[key] == "***"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("status_code", 200), ("currency_code", "CNY"), ("error_code", "password_common"),
        ("token_expires_at", "2025-01-01T00:00:00+08:00"), ("password_changed_at", "2025-01-01"),
        ("customer_id", "0b8f"), ("idempotency_key", "k-1"), ("name", "transfer"),
        ("bank_card_type", "debit"), ("amount", 12345), ("japan", "x"), ("spinner", "x"),
        ("mac_address", "00:1a:2b:3c:4d:5e"), ("mk_id", 3), ("card_no_type", "stored_value"),
        ("machine", "lane"), ("tactic", "x"), ("stack", "x"), ("event_key", "k"),
        ("transfer_id", "0195f3a2-7c1e-7000-8000-123456789012"),
    ],
)  # fmt: skip
def test_processor_leaves_ordinary_fields(key: str, value: Any) -> None:
    assert run({"event": "e", key: value})[key] == value


def test_processor_nested_and_odd_values() -> None:
    out = run(
        {
            "event": "e",
            "body": {"phone": "13812345678", "password": "x", "items": [{"token": "t", "amount": 1}]},
            "tokens": ["a", "b"],
            "password": None,
            "phone_verified": True,
        }
    )
    assert out["body"] == {
        "phone": "138****5678",
        "password": "***",
        "items": [{"token": "***", "amount": 1}],
    }
    assert out["tokens"] == ["***", "***"]
    assert out["password"] is None and out["phone_verified"] is True


def test_mask_mapping_copies() -> None:
    data = {"phone": "13812345678", "note": "ok"}
    assert mask_mapping(data) == {"phone": "138****5678", "note": "ok"}
    assert data["phone"] == "13812345678"


def test_processor_in_structlog_chain() -> None:
    logger = structlog.wrap_logger(structlog.ReturnLogger(), processors=[mask_secrets_processor])
    args, kwargs = logger.info("login", phone="13812345678", password="hunter2")
    assert args == ()
    assert kwargs == {"event": "login", "phone": "138****5678", "password": "***"}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("客户来电13800138000要求冻结", "客户来电138****8000要求冻结"),
        ("手机 138 0013 8000，身份证110101199003074518", "手机 138****8000，身份证1101**********4518"),
        ("+86 138-0013-8000", "+86*******8000"),
        ("证件 11010119900307451x 核实", "证件 1101**********451x 核实"),
        ("旧证 110101900307451", "旧证 1101*******7451"),
        ("卡号6222020200001234567", "卡号6222***********4567"),
        ("护照E12345678，港澳通行证H1234567890", "护照E1*****78，港澳通行证H1*******90"),
        ("电话13800138000和13900139000", "电话138****8000和139****9000"),
        ("全角１３８００１３８０００", "全角138****8000"),
        ("tel:13800138000", "tel:138****8000"),
        # what is not a phone or ID number stays as written
        ("金额 100000 元，订单 2026-12-03，工单 A-17", "金额 100000 元，订单 2026-12-03，工单 A-17"),
        ("疑似盗刷，请联系客服", "疑似盗刷，请联系客服"),
    ],
)
def test_mask_free_text(text: str, masked: str) -> None:
    assert mask_free_text(text) == masked
    assert mask_free_text(masked) == masked  # idempotent: masking a masked text changes nothing


# --- key material, cryptograms and card numbers (issue 16 item 9) --------------------------------------

KEY_MATERIAL = [
    "master_key", "masterKey", "card_master_key", "mk", "mk_dcc", "mk_load", "MK_PURCHASE", "mkTac",
    "mac", "mac1", "MAC2", "mac_key", "tac", "kek", "transport_kek", "dek", "zmk", "tmk", "session_key",
    "secret", "hmac_secret", "webhook_secret", "client_secret", "clientSecret", "signature",
    "x_etcw_signature", "hmac", "pin_block", "track2",
]  # fmt: skip
CARD_KEYS = ["card_no", "cardNo", "card_number", "etc_card_no", "bank_card", "bank_card_no", "pan"]


@pytest.mark.parametrize("key", KEY_MATERIAL)
def test_processor_hides_key_material(key: str) -> None:
    assert run({"event": "e", key: "0123456789ABCDEF0123456789ABCDEF"})[key] == "***"
    assert run({"event": "e", key: b"\x01\x02"})[key] == "***"


@pytest.mark.parametrize("key", CARD_KEYS)
def test_processor_masks_card_numbers_by_key(key: str) -> None:
    assert run({"event": "e", key: "6222021234567890123"})[key] == "6222 **** **** 0123"
    assert run({"event": "e", key: 62220212345678901234})[key] == "6222 **** **** 1234"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("charged 6222021234567890123 ok", "charged 6222 **** **** 0123 ok"),
        ("卡号6222 0212 3456 7890 123，余额不足", "卡号6222 **** **** 0123，余额不足"),
        ("card=4111-1111-1111-1111", "card=4111 **** **** 1111"),
        ("ETC 卡 62010101220212345678 已圈存", "ETC 卡 6201 **** **** 5678 已圈存"),
        ("全角６２２２０２１２３４５６７８９０１２３", "全角6222 **** **** 0123"),
        # what is not a card number standing alone stays as written
        ("transfer 0195f3a2-7c1e-7000-8000-123456789012", "transfer 0195f3a2-7c1e-7000-8000-123456789012"),
        ("phone 13800138000, amount 100000, at 2026-12-03 10:00", "phone 13800138000, amount 100000, at 2026-12-03 10:00"),
        ("file batch_6222021234567890123.csv", "file batch_6222021234567890123.csv"),
        ("123456789012345 is fifteen digits", "123456789012345 is fifteen digits"),
        ("622202123456789012345 is twenty-one", "622202123456789012345 is twenty-one"),
    ],
)  # fmt: skip
def test_mask_card_numbers_in_free_text(text: str, masked: str) -> None:
    assert mask_card_numbers(text) == masked
    out = run({"event": text, "note": text, "items": [text, {"detail": text}]})
    assert out == {"event": masked, "note": masked, "items": [masked, {"detail": masked}]}


def test_logged_secrets_are_masked_in_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the configured pipeline (core/logging.py), structlog and the standard library alike: the
    rendered lines hold no secret, card number or key, and ordinary fields as they were."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level, structlog.get_config()
    try:
        configure_logging(Settings(log_format="json", log_level="INFO"))
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        secret = "0123456789ABCDEF0123456789ABCDEF"
        fields = {key: secret for key in KEY_MATERIAL} | {key: "6222021234567890123" for key in CARD_KEYS}
        ordinary = {"client_id": "0195f3a2-7c1e-7000-8000-123456789012", "status_code": 200, "kind": "lane"}
        structlog.get_logger("test").info("load 6222021234567890123", **fields, **ordinary)
        logging.getLogger("test.stdlib").info("load %s", "6222021234567890123", extra={**fields, **ordinary})
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2, stream.getvalue()
    for line in lines:
        assert line["event"] == "load 6222 **** **** 0123", line
        for key in KEY_MATERIAL:
            assert line[key] == "***", (key, line)
        for key in CARD_KEYS:
            assert line[key] == "6222 **** **** 0123", (key, line)
        for key, value in ordinary.items():
            assert line[key] == value, (key, line)
    assert secret not in stream.getvalue() and "6222021234567890123" not in stream.getvalue()
