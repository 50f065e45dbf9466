"""Machine clients' refusal codes, each with its HTTP status, a sentence in zh-CN and English, and its field."""

from __future__ import annotations

from typing import Any

from etcwallet.core.errors import DomainError

# code -> (status, zh, en, field the code is about)
CLIENT_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "machine_unauthenticated": (
        401,
        "此接口仅供机器客户端调用：请签名请求（X-Etcw-Client、X-Etcw-Timestamp、X-Etcw-Nonce、X-Etcw-Signature）或出示机器密钥",
        "this route is for machine clients: sign the request (X-Etcw-Client, X-Etcw-Timestamp, X-Etcw-Nonce, "
        "X-Etcw-Signature) or present a machine key",
        "X-Etcw-Signature",
    ),
    "machine_credentials_malformed": (
        401,
        "机器凭据格式错误",
        "the machine credentials are malformed",
        "X-Etcw-Signature",
    ),
    "client_unknown": (401, "机器客户端不存在", "no such machine client", "X-Etcw-Client"),
    "client_revoked": (401, "机器客户端已被吊销", "the machine client has been revoked", "X-Etcw-Client"),
    "signature_invalid": (
        401,
        "签名校验失败（方法、路径、时间戳、随机数或请求体与签名不符）",
        "the signature does not verify (method, path, timestamp, nonce or body differ from what was signed)",
        "X-Etcw-Signature",
    ),
    "timestamp_out_of_window": (
        401,
        "时间戳超出允许的时间窗口，请校准设备时钟",
        "the timestamp is outside the allowed window: check the device's clock",
        "X-Etcw-Timestamp",
    ),
    "request_replayed": (
        401,
        "该请求已被处理过（随机数重复使用）",
        "this request was already seen (the nonce was used before)",
        "X-Etcw-Nonce",
    ),
    "scope_missing": (
        403,
        "该机器客户端无权调用此接口",
        "this machine client's scopes do not allow this call",
        None,
    ),
    "client_not_found": (404, "机器客户端不存在", "machine client not found", "client_id"),
    "client_already_revoked": (
        409,
        "机器客户端已被吊销",
        "the machine client is already revoked",
        "client_id",
    ),
    "scope_not_allowed": (
        422,
        "此类客户端不能持有该权限范围",
        "this kind of client may not hold that scope",
        "scope",
    ),
    "scope_required": (422, "至少需要一个权限范围", "at least one scope is needed", "scope"),
    "name_invalid": (422, "名称须为 1 到 64 个字符", "the name must be 1 to 64 characters", "name"),
}


class ClientError(DomainError):
    """A refusal of the machine-client domain, built fresh from :data:`CLIENT_ERRORS` at every raise."""

    def __init__(self, code: str, *, field: str | None = None, **extra: Any) -> None:
        status, zh, en, default_field = CLIENT_ERRORS[code]
        super().__init__(code, status, zh, en, field=field or default_field, extra=dict(extra))
