"""Go's ``encoding/json`` and ``time.ParseDuration`` as Ollama meets them, in Go's words.

Ollama binds a request body with gin's ``ShouldBindJSON`` and answers the decoder's error text as
``400 {"error": "..."}``; clients show that text, so the simulator reproduces it for the common
cases: malformed JSON (``invalid character 'x' looking for beginning of value``, ``unexpected
EOF``), a value of the wrong type (``json: cannot unmarshal string into Go struct field
ChatRequest.messages of type []api.Message``) and a bad ``keep_alive`` (``time: invalid duration
"soon"``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_GO_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number"}
_LITERALS = {"n": "null", "t": "true", "f": "false"}
#: ``time.Duration`` as Go stores it: int64 nanoseconds; Ollama maps a negative keep_alive here.
FOREVER_S = (2**63 - 1) / 1e9
_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)?")


class GoDecodeError(ValueError):
    """Raised with the message Go's decoder gives for a body Ollama cannot bind."""


def decode_object(raw: bytes, target: str) -> dict[str, Any]:
    """``raw`` as a JSON object bound to Go type ``api.<target>``, or :class:`GoDecodeError`.

    An empty body is ``missing request body`` (gin's ``io.EOF``), ``null`` an empty object.
    """
    text = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise GoDecodeError("missing request body")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)  # Go's Decoder ignores trailing data
    except json.JSONDecodeError as exc:
        raise GoDecodeError(_syntax_error(exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GoDecodeError(
            f"json: cannot unmarshal {go_type(value)} into Go value of type api.{target}"
        )
    return value


def check_field(body: dict[str, Any], target: str, name: str, go_type_name: str) -> None:
    """Raise Go's type error when ``body[name]`` is present, not null, and not ``go_type_name``.

    ``go_type_name`` is the Go type: ``string``, or a slice such as ``[]api.Message``.
    """
    value = body.get(name)
    if value is None:
        return
    wanted = list if go_type_name.startswith("[]") else str
    if not isinstance(value, wanted):
        raise GoDecodeError(
            f"json: cannot unmarshal {go_type(value)} into Go struct field "
            f"{target}.{name} of type {go_type_name}"
        )


def go_type(value: Any) -> str:
    """The JSON kind Go names in an unmarshal error: object, array, string, bool or number."""
    return _GO_TYPES.get(type(value), "number")


def duration_s(value: Any) -> float:
    """An ``api.Duration`` (``keep_alive``) in seconds: a number of seconds or a Go duration.

    Negative means forever (:data:`FOREVER_S`), as Ollama has it; anything else that is not a
    number or a string is ``invalid duration``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise GoDecodeError("invalid duration")
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    return FOREVER_S if seconds < 0 else min(seconds, FOREVER_S)


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds: ``"5m"``, ``"1h30m"``, ``"-1s"``, ``"0"``."""
    rest, sign = text, 1.0
    if rest and rest[0] in "+-":
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise GoDecodeError(f"time: invalid duration {_go_string(text)}")
    total = 0.0
    while rest:
        part = _DURATION_PART.match(rest)
        if part is None:
            raise GoDecodeError(f"time: invalid duration {_go_string(text)}")
        number, unit = part.groups()
        if unit is None:
            raise GoDecodeError(f"time: missing unit in duration {_go_string(text)}")
        total += float(number) * _UNIT_S[unit]
        rest = rest[part.end() :]
    return sign * total if math.isfinite(total) else sign * FOREVER_S


def _go_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _syntax_error(exc: json.JSONDecodeError) -> str:
    """Go's ``encoding/json`` wording for the syntax error Python found."""
    if exc.pos >= len(exc.doc) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = exc.doc[exc.pos]
    if exc.msg == "Expecting value" and char in _LITERALS:
        return _bad_literal(exc.doc[exc.pos :], _LITERALS[char])
    where = {
        "Expecting property name enclosed in double quotes": (
            "looking for beginning of object key string"
        ),
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": _after_element(exc.doc, exc.pos),
    }.get(exc.msg, "looking for beginning of value")
    if exc.msg.startswith("Invalid control character"):
        where = "in string literal"
    return f"invalid character {_go_quote(char)} {where}"


def _bad_literal(text: str, literal: str) -> str:
    """Go's message for a broken ``null``/``true``/``false`` at the start of ``text``."""
    for index, expected in enumerate(literal):
        if index >= len(text):
            return "unexpected EOF"
        if text[index] != expected:
            bad, want = _go_quote(text[index]), _go_quote(expected)
            return f"invalid character {bad} in literal {literal} (expecting {want})"
    return f"invalid character {_go_quote(text[len(literal)])} after top-level value"


def _after_element(doc: str, pos: int) -> str:
    """Whether the missing ',' is inside an object or an array (the innermost open bracket)."""
    depth: list[str] = []
    in_string = escaped = False
    for char in doc[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth.append(char)
        elif char in "]}" and depth:
            depth.pop()
    return "after array element" if depth and depth[-1] == "[" else "after object key:value pair"


def _go_quote(char: str) -> str:
    """A character quoted as Go's ``quoteChar`` does: ``'x'``, ``'\\''``, ``'"'``."""
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return repr(char) if char.isprintable() else json.dumps(char).replace('"', "'")
