"""The byte encodings the card and the OBU use: BCD digits and dates, GBK text, big-endian integers.

Every refusal is an :class:`InvalidField`: an :class:`~etcwallet.core.errors.InvalidValue` that also
names the field, so a bad value typed at the counter and a bad byte read from a chip read the same way.
"""

from __future__ import annotations

from datetime import date, time

from etcwallet.core.errors import DomainError, InvalidValue


class InvalidField(InvalidValue):
    """A value that does not fit its field: a stable code, a reason in zh-CN and English, and the field."""

    def __init__(self, field: str, code: str, zh: str, en: str) -> None:
        super().__init__(code, f"{field}：{zh}", f"{field}: {en}")
        self.field = field

    def error(self) -> DomainError:
        """The same refusal as a 422 domain error naming the field."""
        return self.at(self.field)


def require_length(field: str, data: bytes, length: int) -> bytes:
    """``data`` unchanged if it is exactly ``length`` bytes long."""
    if len(data) != length:
        raise InvalidField(
            field,
            "wrong_length",
            f"应为 {length} 字节，实为 {len(data)} 字节",
            f"must be {length} bytes, not {len(data)}",
        )
    return bytes(data)


def require_int(field: str, value: int, size: int) -> int:
    """``value`` unchanged if it fits an unsigned big-endian integer of ``size`` bytes."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise InvalidField(
            field,
            "out_of_range",
            f"应为 0 到 {(1 << (8 * size)) - 1} 的整数",
            f"must be an integer 0 to {(1 << (8 * size)) - 1}",
        )
    return value


def uint_bytes(field: str, value: int, size: int) -> bytes:
    """``value`` as ``size`` unsigned big-endian bytes."""
    return require_int(field, value, size).to_bytes(size, "big")


def digits(field: str, value: str, count: int) -> str:
    """``value`` unchanged if it is exactly ``count`` ASCII digits."""
    if not (isinstance(value, str) and len(value) == count and value.isascii() and value.isdigit()):
        raise InvalidField(field, "not_digits", f"应为 {count} 位数字", f"must be {count} digits")
    return value


def bcd_encode(field: str, value: str, size: int) -> bytes:
    """``2 * size`` decimal digits packed two to a byte, most significant first."""
    return bytes.fromhex(digits(field, value, 2 * size))


def bcd_decode(field: str, data: bytes) -> str:
    """The decimal digits of packed BCD; a nibble above 9 is refused."""
    text = bytes(data).hex()
    if not text.isdigit() and text:
        raise InvalidField(field, "not_bcd", "不是有效的BCD码", "is not valid BCD")
    return text


def date_bcd(field: str, value: date) -> bytes:
    """A date as 4 bytes of BCD ``YYYYMMDD``."""
    return bcd_encode(field, value.strftime("%Y%m%d").zfill(8), 4)


def bcd_date(field: str, data: bytes) -> date:
    """A date from 4 bytes of BCD ``YYYYMMDD``; an impossible date is refused."""
    text = bcd_decode(field, require_length(field, data, 4))
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InvalidField(
            field, "bad_date", f"不是有效的日期（{text}）", f"is not a valid date ({text})"
        ) from None


def time_bcd(field: str, value: time) -> bytes:
    """A time of day as 3 bytes of BCD ``hhmmss`` (whole seconds only)."""
    if value.microsecond:
        raise InvalidField(
            field, "fractional_seconds", "时间只能精确到秒", "a card time has whole seconds only"
        )
    return bcd_encode(field, value.strftime("%H%M%S"), 3)


def bcd_time(field: str, data: bytes) -> time:
    """A time of day from 3 bytes of BCD ``hhmmss``."""
    text = bcd_decode(field, require_length(field, data, 3))
    try:
        return time(int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise InvalidField(
            field, "bad_time", f"不是有效的时间（{text}）", f"is not a valid time ({text})"
        ) from None


def gbk_encode(field: str, value: str, size: int) -> bytes:
    """Text as GBK, padded with ``00`` to ``size`` bytes; text that GBK cannot spell or that is too long is refused."""
    if "\x00" in value:
        raise InvalidField(field, "nul_character", "不能包含空字符", "must not contain a NUL character")
    try:
        encoded = value.encode("gbk")
    except UnicodeEncodeError:
        raise InvalidField(
            field, "not_gbk", "包含GBK无法表示的字符", "holds a character GBK cannot encode"
        ) from None
    if len(encoded) > size:
        raise InvalidField(
            field, "too_long", f"GBK编码后超过 {size} 字节", f"is longer than {size} bytes in GBK"
        )
    return encoded.ljust(size, b"\x00")


def gbk_decode(field: str, data: bytes) -> str:
    """Text from a ``00``-padded (or ``00``-terminated) GBK field."""
    raw = bytes(data).split(b"\x00", 1)[0]
    try:
        return raw.decode("gbk")
    except UnicodeDecodeError:
        raise InvalidField(field, "not_gbk", "不是有效的GBK文本", "is not valid GBK text") from None


def ascii_encode(field: str, value: str, size: int) -> bytes:
    """Printable ASCII padded with ``00`` to ``size`` bytes."""
    if not (value.isascii() and value.isprintable()):
        raise InvalidField(field, "not_ascii", "只能包含可打印的ASCII字符", "must be printable ASCII")
    if len(value) > size:
        raise InvalidField(field, "too_long", f"超过 {size} 个字符", f"is longer than {size} characters")
    return value.encode("ascii").ljust(size, b"\x00")


def ascii_decode(field: str, data: bytes) -> str:
    """Text from a ``00``-padded ASCII field."""
    raw = bytes(data).split(b"\x00", 1)[0]
    if not (raw.isascii() and raw.decode("ascii").isprintable()):
        raise InvalidField(field, "not_ascii", "不是可打印的ASCII文本", "is not printable ASCII text")
    return raw.decode("ascii")
