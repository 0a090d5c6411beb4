"""Text from the database or a server made safe to show on a terminal: the one place it happens.

Names, URLs, keys, metadata and servers' error messages are written by app users (docs/reliability.md,
"What reaches the terminal"). Shown raw, an ESC sequence could clear the screen or write the clipboard
(OSC 52), a CR or line break could make `needs_review` read as `saved`, and a bidi control could
reorder a line. `terminal_text` turns every such character into a visible escape (`\\x1b`, `\\r`,
`\\u202e`); the rest of the text is unchanged. `--json` keeps exact values: `json_text` only writes
the same characters as JSON `\\u` escapes, which every JSON reader decodes back to the exact value.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from rich.markup import escape

NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
LINE_BREAKS = {"\u2028", "\u2029"}  # the C1 NEL (U+0085) is a control character already
# Zero-width joiners hold emoji sequences (👩‍💻) and some scripts together; they move no text.
JOINERS = {"\u200c", "\u200d"}


def unsafe(char: str) -> bool:
    """Control (C0, DEL, C1), line separator, format (bidi controls U+202A-E, U+2066-9, U+200E/F,
    U+061C, tag characters, ...) or lone surrogate: anything a terminal may act on or hide."""
    if char in JOINERS:
        return False
    return char in LINE_BREAKS or unicodedata.category(char) in ("Cc", "Cf", "Cs")


def visible(char: str) -> str:
    if char in NAMED:
        return NAMED[char]
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


def terminal_text(value: Any) -> str:
    """`value` as one line of plain text a terminal shows as written. Put it in a `rich.text.Text`
    (never in a markup string: use `terminal_markup` there) or hand it to questionary."""
    text = "" if value is None else str(value)
    if text.isprintable() and text.isascii():  # the common case, unchanged
        return text
    return "".join(visible(c) if unsafe(c) else c for c in text)


def terminal_markup(value: Any) -> str:
    """`terminal_text` for a Rich markup string: `[red]` or `[link=...]` in user text stays text."""
    return escape(terminal_text(value))


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """JSON holding the exact values, with the characters `terminal_text` escapes written as `\\u`
    escapes (json.dumps escapes C0 itself, but leaves DEL, C1, U+2028/9 and bidi controls raw)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    if text.isascii() and "\x7f" not in text:
        return text
    # json.dumps escaped every C0 character inside strings: those left are the layout's own newlines.
    return "".join(_json_escape(c) if c > "\x7e" and unsafe(c) else c for c in text)


def _json_escape(char: str) -> str:
    point = ord(char)
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000  # outside the BMP: a surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"
