"""JSON as a command's text field must hold it: no duplicate keys, finite numbers in ASCII digits.

Python's `json` accepts more than JSON: ``NaN`` and ``Infinity``, numbers too large for a float
(read as ``inf``), digits of other scripts in integers (``"١٢"``), and a key given twice (the last
one silently wins). A command field that says one thing and is read as another is refused here,
saying what is wrong, instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["StrictJsonError", "loads_strict", "quote"]

#: Longest text of a rejected value quoted in a message.
QUOTE_LEN = 80


class StrictJsonError(ValueError):
    """Text is not strict JSON; the message names the field and says what is wrong."""


def quote(value: Any) -> str:
    """``repr`` of a rejected value, cut to a readable length.

    ``repr`` escapes control characters and lone surrogates, so a message holding it can always
    be encoded and sent.
    """
    text = repr(value)
    return text if len(text) <= QUOTE_LEN else text[: QUOTE_LEN - 3] + "..."


def loads_strict(text: str, what: str) -> Any:
    """Parse ``text`` as strict JSON.

    Parameters
    ----------
    text : `str`
        The JSON text.
    what : `str`
        The field's name, for messages (e.g. ``"dataId"``).

    Returns
    -------
    value : `Any`
        The parsed value.

    Raises
    ------
    StrictJsonError
        Invalid JSON, a key given twice, NaN or Infinity, a number too large, non-ASCII digits,
        or nesting too deep; the message starts with ``what``.
    """

    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise StrictJsonError(f"{what} gives key {quote(key)} twice")
            result[key] = value
        return result

    def parse_constant(name: str) -> Any:
        raise StrictJsonError(f"{what} holds {name}, which is not a JSON value (JSON numbers are finite)")

    def parse_float(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise StrictJsonError(f"{what} holds the number {quote(number)}, which is too large")
        return value

    def parse_int(number: str) -> int:
        if not number.isascii():  # JSON digits are ASCII
            raise StrictJsonError(
                f"{what} holds the number {quote(number)}; JSON numbers are written with ASCII digits"
            )
        return int(number)

    try:
        return json.loads(
            text,
            object_pairs_hook=object_pairs,
            parse_constant=parse_constant,
            parse_int=parse_int,
            parse_float=parse_float,
        )
    except json.JSONDecodeError as e:
        raise StrictJsonError(f"{what} is not valid JSON ({e.msg} at character {e.pos}): {quote(text)}") from None
    except RecursionError:
        raise StrictJsonError(f"{what} is nested too deeply") from None
    except StrictJsonError:
        raise
    except ValueError as e:  # e.g. an integer with thousands of digits
        raise StrictJsonError(f"{what} is not usable JSON: {e}") from None
