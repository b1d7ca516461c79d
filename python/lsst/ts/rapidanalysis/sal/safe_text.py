"""Text that any DDS string can carry and a person can read: escaped and length-bounded.

A message built from user input (an exception that quotes a command's field, say) may hold
lone surrogates, which UTF-8 cannot encode (writing it fails), NUL, which C readers take for
the end of the string, other control characters, or megabytes. `safe_text` makes any such
text fit for a DDS string field: the Controller passes every ack ``result`` through it, so a
command is always answered whatever its handler's message says.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["escape_text", "bound_text", "safe_text", "describe_exception"]

#: Control characters but newline and tab (C0, DEL, C1), and lone surrogates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape_one(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` with lone surrogates, NUL and other control characters (not newline or tab)
    written as Python escapes (``\\ud800``, ``\\x00``); everything else unchanged."""
    return _UNSAFE.sub(_escape_one, text)


def bound_text(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (at a character boundary), ending
    with `` … [N more bytes]`` when cut. ``text`` must be encodable (see `escape_text`)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    # The marker's length depends on the number it shows; reserve room for the largest one.
    reserve = len(f" … [{len(data)} more bytes]".encode())
    if reserve >= max_bytes:
        return data[:max_bytes].decode("utf-8", "ignore")
    kept = data[: max_bytes - reserve].decode("utf-8", "ignore")
    return f"{kept} … [{len(data) - len(kept.encode('utf-8'))} more bytes]"


def safe_text(value: Any, max_bytes: int) -> str:
    """Any value as text a DDS string can carry: ``str(value)`` (``repr`` if that fails),
    escaped and bounded to ``max_bytes`` UTF-8 bytes.

    Never raises.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        try:
            text = repr(value)
        except Exception:
            text = f"<unprintable {type(value).__name__}>"
    if not isinstance(text, str):  # a str subclass, or __str__ returning a non-str
        text = f"<unprintable {type(value).__name__}>"
    return bound_text(escape_text(str.__str__(text)), max_bytes)


def describe_exception(exc: BaseException) -> str:
    """An exception's message (its type name if the message is empty or cannot be made); never raises."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    if not isinstance(text, str) or not text:
        return type(exc).__name__
    return text
