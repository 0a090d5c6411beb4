"""Short ids people can type back: the shortest prefix of at least 8 characters that no other id of
the repository shares (as git shortens commit hashes). docs/commands.md, "Ids", says why 8."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

MIN_PREFIX = 8


def shortest_prefixes(shown: Iterable[UUID], known: Iterable[UUID]) -> dict[UUID, str]:
    """For each shown id, its shortest prefix (>= 8 characters) shared by no other id in `shown` or
    `known`. `known` holds every id of the repository that shares a shown id's first 8 hex digits."""
    texts = sorted({str(i) for i in (*shown, *known)})
    prefixes = {}
    for index, text in enumerate(texts):
        neighbours = texts[max(0, index - 1):index] + texts[index + 1:index + 2]
        common = max((_common_length(text, other) for other in neighbours), default=0)
        prefixes[text] = _cut(text, max(MIN_PREFIX, common + 1))
    return {i: prefixes[str(i)] for i in shown}


def _common_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):  # up to the shorter one
        if x != y:
            break
        length += 1
    return length


def _cut(text: str, length: int) -> str:
    """Never end on a dash: the prefix grows to the next hex digit."""
    while length < len(text) and text[length - 1] == "-":
        length += 1
    return text[:length]
