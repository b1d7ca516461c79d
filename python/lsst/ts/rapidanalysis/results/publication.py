"""Writing a job's results to SAL topics so that nothing a write raises can lose anything else.

A finished job is published in parts (database rows, product announcements, telemetry samples,
then its one ``jobResult``), and each part must fail alone: a URL longer than its topic's field, a
pipeline's telemetry sample with a field of the wrong type or a name the topic does not have, a
string Cyclone DDS cannot encode. `write_sample` is how every part writes a topic:

- a string longer than its field is shortened, ending in ``…(truncated, N bytes)``, never dropped
  (field sizes come from the interface XML, through the topic's metadata);
- a string that is not valid UTF-8 (a lone surrogate from JSON) is written with the bad code
  points escaped (``\\ud800``) rather than failing;
- only the topic's public fields may be set: ``private_*`` and ``salIndex`` are the SAL layer's,
  and a value put there would be sent with every later sample of the topic;
- if the write still fails, the topic's sample is put back as it was, so that the next write of the
  topic (``poolStatus`` every second) is not poisoned by this one's values.

Every problem is returned (or raised, as `PublishError`) as one sentence saying what was not
published as it was and why; the CSC puts them in the log and in the job's ``jobResult``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["PublishError", "TRUNCATION_NOTE", "fit_text", "write_sample"]

#: What a shortened string ends with; ``{n}`` is the original length in bytes (UTF-8).
TRUNCATION_NOTE = "…(truncated, {n} bytes)"


class PublishError(RuntimeError):
    """A sample could not be written; the message says which topic and why."""


def _encodable(text: str) -> str:
    """``text`` as valid UTF-8: code points UTF-8 cannot encode (lone surrogates) escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fit_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` shortened to at most ``max_bytes`` bytes of UTF-8, saying so at its end.

    Parameters
    ----------
    text : `str`
        Any string (code points UTF-8 cannot encode are escaped first).
    max_bytes : `int`
        The field's size in bytes; 0 or less means unbounded.

    Returns
    -------
    text : `str`
        ``text`` itself if it fits, else its start (never a split character) followed by
        ``…(truncated, N bytes)``, N being the length of the whole text in bytes.
    truncated : `bool`
        Whether it was shortened.
    """
    text = _encodable(text)
    data = text.encode("utf-8")
    if max_bytes <= 0 or len(data) <= max_bytes:
        return text, False
    note = TRUNCATION_NOTE.format(n=len(data))
    room = max_bytes - len(note.encode("utf-8"))
    if room <= 0:  # a field too small for the note: as much of the note as fits
        return note.encode("utf-8")[:max_bytes].decode("utf-8", "ignore"), True
    return data[:room].decode("utf-8", "ignore") + note, True


def _field_sizes(topic: Any) -> dict[str, tuple[str, int]]:
    """Public fields of a topic: name → (IDL type, string size in bytes, 0 for unbounded)."""
    return {f.name: (f.idl_type, f.str_length if f.idl_type == "string" else 0) for f in topic.metadata.fields}


def write_sample(
    topic: Any, fields: Mapping[str, Any], *, force_output: bool | None = True, what: str = ""
) -> list[str]:
    """Set ``fields`` of ``topic`` and write it, isolating everything that can go wrong.

    Parameters
    ----------
    topic : `WriteTopic`
        A Controller's event or telemetry topic (``evt_x``/``tel_x``).
    fields : `dict`
        Public field values. A None in a float field is written as NaN (a measurement that is
        missing must not repeat the previous sample's value); in any other field it is left out.
    force_output : `bool` or None
        Passed to ``set_write`` (events: True writes even if nothing changed).
    what : `str`
        How to name this sample in messages (default the topic's name).

    Returns
    -------
    notes : `list` [`str`]
        One sentence per string that was shortened to fit its field.

    Raises
    ------
    PublishError
        If the sample was not written: a field the topic does not have (or a private one), a value
        of the wrong type or out of range, or a failed write. The topic's sample is as it was.
    """
    what = what or topic.name
    sizes = _field_sizes(topic)
    if not isinstance(fields, Mapping):
        raise PublishError(f"{what} rejected: fields must be a mapping of field names to values, not {fields!r:.80}")
    unknown = [str(name) for name in fields if name not in sizes]
    if unknown:
        raise PublishError(
            f"{what} rejected: no field(s) {', '.join(repr(n) for n in unknown)} "
            f"(private_* and salIndex are the SAL layer's); fields: {', '.join(sizes)}"
        )
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in fields.items():
        idl_type, size = sizes[name]
        if value is None:
            if idl_type in ("float", "double"):
                values[name] = math.nan
            continue
        if idl_type == "string" and isinstance(value, str):
            value, truncated = fit_text(value, size)
            if truncated:
                notes.append(f"{what}.{name} was shortened to fit its {size}-byte field ({value[-40:]!r})")
        values[name] = value
    saved = copy.copy(topic.data) if topic.has_data else None
    try:
        topic.set_write(force_output=force_output, **values)
    except Exception as e:
        # set() checks every value before it changes any, but a write that fails after it would
        # leave these values in the topic's sample, and every later write of the topic would fail.
        if saved is not None:
            topic.data = saved
        else:
            topic.data = topic.DataType()
        raise PublishError(f"{what} rejected: {type(e).__name__}: {e}") from e
    return notes
