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
import re
from typing import Any


NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Every character a terminal may act on or hide: controls (C0, DEL, C1), the line and paragraph
# separators, format characters (Unicode category Cf: bidi controls U+202A-E, U+2066-9, U+200E/F,
# U+061C, zero-width space, soft hyphen, BOM, tag characters, ...) and lone surrogates. Not the
# zero-width joiners U+200C/D: they hold emoji sequences (👩‍💻) and some scripts together and move no
# text. tests/test_terminal_safety.py checks this class against Python's Unicode database.
_BEYOND_C0 = (
    "\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b\u200e-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# In JSON: json.dumps escapes C0 inside strings itself, and the C0 left are the layout's newlines.
JSON_UNSAFE = re.compile(f"[{_BEYOND_C0}]")


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
    if text.isprintable():  # most names and keys: no control, format or separator character at all
        return text
    return UNSAFE.sub(lambda match: visible(match.group()), text)


def terminal_excerpt(value: Any, limit: int, *, marker: str = "…") -> str:
    """`terminal_text`, cut to at most `limit` characters (the cut marked) where one line must stay short."""
    text = terminal_text(value)
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


def terminal_markup(value: Any) -> str:
    """`terminal_text` for a Rich markup string: `[red]` or `[link=...]` in user text stays text."""
    from rich.markup import escape  # here, not at import: `charfix --help` never needs Rich's markup

    return escape(terminal_text(value))


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """JSON holding the exact values, with the characters `terminal_text` escapes written as `\\u`
    escapes (json.dumps escapes C0 itself, but leaves DEL, C1, U+2028/9 and bidi controls raw)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    # Printable (Python's sense) means no control, format, surrogate or separator character: most
    # output, checked at C speed; the regex search costs about 30 ns a character.
    if text.replace("\n", " ").isprintable():
        return text
    return JSON_UNSAFE.sub(lambda match: _json_escape(match.group()), text)


def _json_escape(char: str) -> str:
    point = ord(char)
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000  # outside the BMP: a surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"
