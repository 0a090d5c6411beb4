"""Questions to the person at the terminal. The only importer of questionary."""

from __future__ import annotations

from collections.abc import Sequence

from charfix.models import Candidate
from charfix.ui.safe import terminal_text


def ask_confirm(question: str, *, default: bool = False) -> bool:
    import questionary

    answer = questionary.confirm(terminal_text(question), default=default).ask()
    if answer is None:  # Ctrl-C
        raise KeyboardInterrupt
    return bool(answer)


def ask_choice(question: str, choices: Sequence[tuple[str, str]]) -> str:
    """`choices` are (value, label); returns the value."""
    import questionary

    # Labels quote names and URLs; questionary shows them as typed, so they are made terminal-safe here.
    answer = questionary.select(terminal_text(question), choices=[questionary.Choice(terminal_text(label), value=value)
                                                         for value, label in choices]).ask()
    if answer is None:
        raise KeyboardInterrupt
    return answer


def ask_character(candidates: Sequence[Candidate]) -> str | None:
    """Offer the candidates (exact matches first); None if the person declines them all."""
    choices = [
        (str(c.id), f"{c.name}  ({'exact' if c.exact else 'near'}, created {c.created_at:%Y-%m-%d %H:%M:%S}, "
                    f"{c.seconds_after_job:+.0f}s after the job, image {c.image_url or 'none'})")
        for c in sorted(candidates, key=lambda c: (not c.exact, c.created_at))
    ]
    choices.append(("", "none of these: skip"))
    answer = ask_choice("Which character is this portrait for?", choices)
    return answer or None
