"""What people type into form fields, in the form the browser's fields take.

A date or time input holds one machine form (``2011-10-11``, ``20:04``), and
Chromium leaves the field empty, without a word, when it is given any other.
Pages and people write ``10/11/2011`` and ``8:04 PM``, so the model does too.
:func:`field_value` turns the common written forms into the field's own, and
says which form the field takes when it cannot; it never guesses silently
between two readings (a day-first date is only taken when it cannot be
month-first). :func:`key_sequence` splits a ``press`` argument into keys.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time

from harmony_agent.tools.base import ToolError

#: Input types whose value has one machine form; each with that form, for the error message.
FORMS = {
    "date": "YYYY-MM-DD (for example 2011-10-11)",
    "time": "HH:MM in 24 hours (for example 20:04)",
    "datetime-local": "YYYY-MM-DDTHH:MM (for example 2011-10-11T20:04)",
    "month": "YYYY-MM (for example 2011-10)",
    "week": "YYYY-Www (for example 2011-W41)",
}
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if len(text) == 2 and year < 70 else year + 1900 if len(text) == 2 else year


def parse_date(text: str) -> date | None:
    """A calendar date from the forms people write; None when it is none of them (or is not a real date)."""
    text = text.strip().rstrip(".")
    try:
        if m := re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", text):  # 2011-10-11, 2011/10/11
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if m := re.fullmatch(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})", text):  # 10/11/2011 (month first)
            first, second, year = int(m.group(1)), int(m.group(3)), _year(m.group(4))
            if first > 12 >= second:  # 25/12/2011 can only be day first
                first, second = second, first
            return date(year, first, second)
        words = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.lower().replace(",", " "))
        parts = words.split()
        if len(parts) == 4:  # a weekday in front: Tuesday October 11 2011
            parts = parts[1:]
        if len(parts) == 3:
            if parts[0] in _MONTHS and parts[1].isdigit() and parts[2].isdigit():  # October 11 2011
                return date(_year(parts[2]), _MONTHS[parts[0]], int(parts[1]))
            if parts[1] in _MONTHS and parts[0].isdigit() and parts[2].isdigit():  # 11 October 2011
                return date(_year(parts[2]), _MONTHS[parts[1]], int(parts[0]))
    except ValueError:  # 2011-02-30
        return None
    return None


def parse_time(text: str) -> time | None:
    """A time of day from the forms people write (``8:04 PM``, ``8pm``, ``20:04``, ``20:04:05``); None if none."""
    m = re.fullmatch(r"(\d{1,2})(?:[:.h](\d{2}))?(?::(\d{2}))?\s*([ap])?\.?\s*(?:m\.?)?", text.strip().lower())
    if not m or (m.group(2) is None and m.group(4) is None):  # a bare number is not a time
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    if m.group(4):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m.group(4) == "p" else 0)
    try:
        return time(hour, minute, second)
    except ValueError:
        return None


def _clock(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def field_value(kind: str, text: str) -> str:
    """``text`` in the form an input of type ``kind`` takes; a ToolError naming that form when it cannot be read."""
    if kind not in FORMS or not text.strip():
        return text
    stripped = text.strip()
    value: str | None = None
    if kind == "date":
        day = parse_date(stripped)
        value = day.isoformat() if day else None
    elif kind == "time":
        clock = parse_time(stripped)
        value = _clock(clock) if clock else None
    elif kind == "datetime-local":
        value = _datetime(stripped)
    elif kind == "month":
        value = _month(stripped)
    elif kind == "week":
        value = stripped.upper() if re.fullmatch(r"\d{4}-W\d{2}", stripped.upper()) else None
    if value is None:
        raise ToolError(f"this {kind} field cannot take {text!r}: write it as {FORMS[kind]}")
    return value


def _datetime(text: str) -> str | None:
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        pass
    for split in re.finditer(r"[ T,]+", text):  # the date, then the time: 10/11/2011 8:04 PM
        day, clock = parse_date(text[: split.start()]), parse_time(text[split.end() :])
        if day and clock:
            return f"{day.isoformat()}T{_clock(clock)}"
    return None


def _month(text: str) -> str | None:
    if m := re.fullmatch(r"(\d{4})[-/](\d{1,2})", text):
        year, month = int(m.group(1)), int(m.group(2))
    elif m := re.fullmatch(r"(\d{1,2})[-/](\d{4})", text):
        year, month = int(m.group(2)), int(m.group(1))
    elif (parts := text.lower().replace(",", " ").split()) and len(parts) == 2 and parts[0] in _MONTHS:
        if not parts[1].isdigit():
            return None
        year, month = _year(parts[1]), _MONTHS[parts[0]]
    else:
        return None
    return f"{year:04d}-{month:02d}" if 1 <= month <= 12 else None


def key_sequence(keys: str) -> list[str]:
    """The keys of a ``press``: one key or chord (``Enter``, ``Control+A``), or several separated by spaces
    (``ArrowDown ArrowDown Enter``). A lone space is the Space key."""
    if keys == " ":
        return [" "]
    sequence = keys.split()
    if not sequence:
        raise ToolError("press needs `key`, like Enter, Control+A or a sequence like `ArrowDown ArrowDown Enter`")
    return sequence
