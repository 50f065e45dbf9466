"""Domain errors and their RFC 9457 problem+json answers, in the caller's language.

Services raise :class:`DomainError`; the application turns it, and every request-validation failure,
into a 4xx ``application/problem+json`` response that names the field and the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from etcwallet.core.i18n import Lang, negotiate, pick

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class FieldProblem:
    """One field that was wrong and why, as a stable code and a sentence in each language."""

    field: str
    code: str
    zh: str
    en: str

    def render(self, lang: Lang) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": pick(lang, self.zh, self.en)}


@dataclass
class DomainError(Exception):
    """A refusal a caller can act on: a stable code, an HTTP status, and text in zh-CN and English."""

    code: str
    status: int
    zh: str
    en: str
    field: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.en}"

    def problem(self, lang: Lang, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.code}",
            "title": pick(lang, self.zh, self.en),
            "status": self.status,
            "code": self.code,
        }
        if self.field:
            body["field"] = self.field
            body["errors"] = [{"field": self.field, "code": self.code, "message": body["title"]}]
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class InvalidValue(ValueError):
    """Raised by a schema validator: a reason in both languages for the field being validated."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.code, self.zh, self.en = code, zh, en

    def at(self, field: str) -> DomainError:
        """The same reason as a 422 domain error naming ``field`` (for values checked outside a schema)."""
        return DomainError(self.code, 422, self.zh, self.en, field=field)


class DomainHTTPError(StarletteHTTPException):
    """A :class:`DomainError` raised where only HTTP exceptions pass through unchanged.

    FastAPI turns any other exception raised while it reads a request body into a bare 400; this one it
    lets through, and :func:`http_problem` answers it as the domain error it carries.
    """

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.status, error.en)
        self.error = error


def problem_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


# Reasons for Pydantic's error types, so a validation answer reads well in both languages.
_REASONS: dict[str, tuple[str, str]] = {
    "missing": ("缺少必填字段", "field required"),
    "extra_forbidden": ("不允许的字段", "unknown field"),
    "int_type": ("必须是整数", "must be an integer"),
    "int_parsing": ("必须是整数", "must be an integer"),
    "int_from_float": ("必须是整数，不能有小数", "must be a whole number, not a fraction"),
    "greater_than": ("数值太小", "value too small"),
    "greater_than_equal": ("数值太小", "value too small"),
    "less_than": ("数值太大", "value too large"),
    "less_than_equal": ("数值太大", "value too large"),
    "string_type": ("必须是字符串", "must be a string"),
    "string_too_long": ("太长", "too long"),
    "string_too_short": ("太短", "too short"),
    "string_pattern_mismatch": ("格式不正确", "wrong format"),
    "uuid_parsing": ("不是有效的ID（UUID）", "not a valid id (UUID)"),
    "uuid_type": ("不是有效的ID（UUID）", "not a valid id (UUID)"),
    "bool_type": ("必须是布尔值", "must be true or false"),
    "bool_parsing": ("必须是布尔值", "must be true or false"),
    "model_type": ("必须是对象", "must be an object"),
    "dict_type": ("必须是对象", "must be an object"),
    "list_type": ("必须是数组", "must be an array"),
    "too_long": ("条目太多", "too many items"),
    "too_short": ("条目太少", "too few items"),
    "literal_error": ("不是允许的取值", "not an allowed value"),
    "enum": ("不是允许的取值", "not an allowed value"),
    "json_invalid": ("不是有效的JSON", "not valid JSON"),
    "datetime_parsing": ("不是有效的时间（ISO 8601）", "not a valid ISO 8601 time"),
    "datetime_from_date_parsing": ("不是有效的时间（ISO 8601）", "not a valid ISO 8601 time"),
    "timezone_aware": ("时间必须带时区", "time must carry a UTC offset"),
    "lone_surrogate": (
        "包含无效的Unicode字符（孤立的代理项 \\ud800–\\udfff）",
        "holds an invalid Unicode character (a lone surrogate, \\ud800-\\udfff)",
    ),
    "invalid_utf8": ("请求体不是有效的UTF-8编码", "the body is not valid UTF-8"),
    "json_too_deep": ("JSON嵌套层数太多", "the JSON is nested too deeply"),
    "number_too_long": ("数字位数太多，无法读取", "the number has too many digits to read"),
}


def field_problems(errors: Sequence[Any]) -> list[FieldProblem]:
    """Turn Pydantic's error list into field problems; locations skip the body/query prefix."""
    problems = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        kind = str(err.get("type", "value_error"))
        kind = "lone_surrogate" if kind == "string_unicode" else kind  # pydantic's name for the same fault
        if kind == "json_invalid":
            loc = []  # FastAPI puts the character position here; the whole body is what is wrong
        cause = (err.get("ctx") or {}).get("error")
        if kind == "value_error" and isinstance(cause, InvalidValue):
            problems.append(FieldProblem(".".join(loc) or "body", cause.code, cause.zh, cause.en))
            continue
        zh, en = _REASONS.get(kind, ("取值无效", str(err.get("msg", "invalid value"))))
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            limit = next(iter(err.get("ctx", {}).values()), None)
            if limit is not None:
                zh, en = f"{zh}（界限 {limit}）", f"{en} (limit {limit})"
        elif kind == "value_error":
            en = str(err.get("msg", en)).removeprefix("Value error, ")
            zh = en
        position = (err.get("ctx") or {}).get("position")
        if isinstance(position, int):
            zh, en = f"{zh}（第 {position} 字节处）", f"{en} (at byte {position})"
        problems.append(FieldProblem(".".join(loc) or "body", kind, zh, en))
    return problems


def validation_problem(problems: Sequence[FieldProblem], lang: Lang) -> dict[str, Any]:
    first = problems[0] if problems else FieldProblem("body", "invalid", "请求无效", "invalid request")
    return {
        "type": "/problems/validation",
        "title": pick(lang, "请求参数有误", "The request is invalid"),
        "status": 422,
        "code": "validation_failed",
        "field": first.field,
        "detail": f"{first.field}: {pick(lang, first.zh, first.en)}",
        "errors": [p.render(lang) for p in problems],
    }


async def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    """The problem+json answer for a domain refusal (with ``Retry-After`` when it says when to retry)."""
    lang = negotiate(request.headers.get("accept-language"))
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
    return problem_response(exc.status, exc.problem(lang, request.url.path), headers)


async def validation_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The 422 problem+json answer naming every field that failed validation.

    FastAPI hands a body it did not parse as JSON (another ``Content-Type``, or none) to validation as
    bytes; that is the wrong media type (415), not a wrong field.
    """
    lang = negotiate(request.headers.get("accept-language"))
    if isinstance(getattr(exc, "body", None), bytes | bytearray) and any(
        tuple(e.get("loc", ())) == ("body",) for e in exc.errors()
    ):
        from etcwallet.core.bodies import unsupported_media_type

        return await domain_problem(request, unsupported_media_type())
    return problem_response(422, validation_problem(field_problems(exc.errors()), lang))


async def unexpected_problem(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered as a 500 problem that reveals nothing internal."""
    logging.getLogger("etcwallet.errors").error(
        "unhandled error", exc_info=exc, extra={"path": request.url.path}
    )
    lang = negotiate(request.headers.get("accept-language"))
    body = {
        "type": "about:blank",
        "title": pick(lang, "服务器内部错误", "Internal server error"),
        "status": 500,
    }
    return problem_response(500, body)


_HTTP_TITLES = {
    401: ("需要登录或令牌无效", "Authentication required"),
    403: ("无权执行此操作", "Not allowed"),
    404: ("未找到", "Not found"),
    405: ("不支持该请求方法", "Method not allowed"),
    413: ("请求体太大", "Request body too large"),
    415: ("不支持的请求体类型", "Unsupported media type"),
}


def allowed_methods(request: Request) -> list[str]:
    """Every method the resource at the request's path has (the ``Allow`` header of a 405).

    Starlette's router names only the methods of the first route whose path matched, though several
    routes (one per method) may share a path. Of the templates that match, the most specific (fewest
    parameters) name the resource: ``/transfers/linked`` is not also ``/transfers/{transfer_id}``.
    """
    by_params: dict[int, set[str]] = {}
    for context in iter_route_contexts(request.app.routes):
        if context.path and context.methods:
            regex, _, params = compile_path(context.path)
            if regex.match(request.scope["path"]):
                by_params.setdefault(len(params), set()).update(context.methods)
    return sorted(by_params[min(by_params)]) if by_params else []


async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Plain HTTP errors (unknown route, wrong method, …) as problem+json."""
    if isinstance(exc, DomainHTTPError):
        return await domain_problem(request, exc.error)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI could not parse the body (bad UTF-8, nesting too deep, a number too long): say which
        from etcwallet.core.bodies import parse_failure

        return await validation_response(request, parse_failure(request.scope, exc.__cause__))
    lang = negotiate(request.headers.get("accept-language"))
    zh, en = _HTTP_TITLES.get(exc.status_code, ("请求失败", str(exc.detail)))
    body = {"type": "about:blank", "title": pick(lang, zh, en), "status": exc.status_code}
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    return problem_response(exc.status_code, body, headers)


async def problem_for(request: Request, exc: Exception) -> JSONResponse:
    """The answer the application's handlers give for ``exc``: for code that runs outside FastAPI's."""
    if isinstance(exc, DomainError):
        return await domain_problem(request, exc)
    if isinstance(exc, RequestValidationError):
        return await validation_response(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await http_problem(request, exc)
    return await unexpected_problem(request, exc)


def install_handlers(app: FastAPI) -> None:
    """Make every refusal problem+json: domain errors, validation failures and plain HTTP errors."""
    app.add_exception_handler(DomainError, domain_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_response)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_problem)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_problem)
