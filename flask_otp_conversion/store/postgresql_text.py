"""The PostgreSQL store's text escaping: what a Python string may hold and PostgreSQL text may not.

PostgreSQL text holds no NUL and no lone surrogate, which a Python string may: such characters (and the
backslash, the escape) are stored escaped, ``\\u0000``, and read back as they were.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile("[\\\\\x00\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(\\|u[0-9a-f]{4})")


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    return "\\\\" if char == "\\" else f"\\u{ord(char):04x}"


def _unescape(found: re.Match[str]) -> str:
    code = found.group(1)
    return "\\" if code == "\\" else chr(int(code[1:], 16))


def enc(text: str) -> str:
    """``text`` as PostgreSQL can store it (unchanged unless it holds a backslash, a NUL or a lone surrogate)."""
    if "\\" not in text and "\x00" not in text and (text.isascii() or _SPECIAL.search(text) is None):
        return text
    return _SPECIAL.sub(_escape, text)


def dec(text: str) -> str:
    return text if "\\" not in text else _ESCAPED.sub(_unescape, text)


def dec_optional(text: str | None) -> str | None:
    return None if text is None else dec(text)


__all__ = ["dec", "dec_optional", "enc"]
