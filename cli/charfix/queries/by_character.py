"""`list-stuck --character NAME|ID`: the jobs about one character ("my character Mandy has no picture").

A job is about a character when its diagnosis names it: the character it is (or would be) bound to,
the name it asked for, or an exact-name candidate. Names match exactly: the create-character dialog
stores the name as typed, and "Mandy" and "mandy " are different characters (docs/diagnosis.md).
Names that differ only in case, spacing or a typo are offered as hints, never matched.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field, fields
from uuid import UUID

from charfix.diagnosis.facts import normalized_name
from charfix.models import Diagnosis
from charfix.queries.selection import Selection

MAX_HINTS = 5
SHOWN_LIMIT = 60


@dataclass
class CharacterFilter:
    text: str
    character_id: UUID | None = None
    about: int = 0  # jobs about the character, whatever their state
    matched: int = 0  # of those, the ones the selection wants
    names_seen: Counter = field(default_factory=Counter)

    @classmethod
    def parse(cls, text: str) -> CharacterFilter:
        if not text.strip():
            from charfix.errors import UsageError

            raise UsageError("--character: the name is empty; give the character's name or id")
        try:
            return cls(text=text, character_id=UUID(text.strip()))
        except ValueError:
            return cls(text=text)

    def matches(self, diagnosis: Diagnosis) -> bool:
        names = {diagnosis.character_name, *(c.name for c in diagnosis.candidates)} - {None}
        self.names_seen.update(names)
        if self.character_id is not None:
            found = diagnosis.character_id == self.character_id or any(
                c.id == self.character_id for c in diagnosis.candidates)
        else:
            found = diagnosis.character_name == self.text or any(
                c.exact and c.name == self.text for c in diagnosis.candidates)
        self.about += found
        return found

    def near_names(self) -> list[str]:
        """Names seen in the window that a person may have meant: equal but for case and spaces
        first, then close spellings."""
        if self.character_id is not None:
            return []
        seen = [name for name in self.names_seen if name != self.text]
        wanted = normalized_name(self.text)
        same = sorted(name for name in seen if normalized_name(name) == wanted)
        close = difflib.get_close_matches(self.text, [n for n in seen if n not in same], n=MAX_HINTS, cutoff=0.75)
        return (same + close)[:MAX_HINTS]

    def hint(self) -> str | None:
        """One line for stderr when no job matched: what was looked for and what is near."""
        if self.matched:
            return None
        what = f"character id {self.character_id}" if self.character_id else f"the character name {_shown(self.text)!r}"
        if self.about:
            return f"{self.about} portrait job(s) in the window are about {what}, none in the states asked for; --all shows them"
        near = self.near_names()
        if not near:
            return f"no portrait job in the window is about {what}"
        return f"no portrait job in the window is about {what} (names match exactly); near: " + ", ".join(
            repr(_shown(name)) for name in near)


@dataclass(frozen=True)
class CharacterSelection(Selection):
    character: CharacterFilter | None = None

    def wants(self, diagnosis: Diagnosis) -> bool:
        if self.character is None:
            return super().wants(diagnosis)
        if not self.character.matches(diagnosis):
            return False
        wanted = super().wants(diagnosis)
        self.character.matched += wanted
        return wanted


def with_character(selection: Selection, text: str | None) -> Selection:
    """The selection, narrowed to the jobs about one character when `text` is given."""
    if text is None:
        return selection
    values = {f.name: getattr(selection, f.name) for f in fields(selection)}
    return CharacterSelection(**values, character=CharacterFilter.parse(text))


def character_hint(selection: Selection) -> str | None:
    character = getattr(selection, "character", None)
    return character.hint() if character is not None else None


def _shown(text: str) -> str:
    from charfix.ui.safe import terminal_excerpt  # docs/reliability.md, "What reaches the terminal"

    return terminal_excerpt(text, SHOWN_LIMIT, marker="...")
