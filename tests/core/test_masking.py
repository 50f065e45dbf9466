"""Masks for personal data and the structlog processor that applies them."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from etcwallet.core.masking import (
    mask_bank_card,
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
        ("customer_id", "0b8f"), ("idempotency_key", "k-1"), ("name", "transfer"), ("card_no", "1234"),
        ("bank_card_type", "debit"), ("amount", 12345), ("japan", "x"), ("spinner", "x"),
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
