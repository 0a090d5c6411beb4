"""Rendering `charfix user`: the user's jobs by state, characters and library portraits."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from charfix.diagnosis import facts as f
from charfix.models import ImageKind, State
from charfix.ui.render import STATE_ORDER, age, state_text, stuck_lines, stuck_table

if TYPE_CHECKING:  # the type the read side returns; the UI never calls it (tests/test_layers.py)
    from charfix.queries.user_view import UserView

IMAGE_LABEL = {
    ImageKind.NONE: ("no image", "red"),
    ImageKind.LIBRARY: ("library portrait", "green"),
    ImageKind.WORKSPACE: ("temporary workspace copy", "yellow"),
    ImageKind.PROVIDER_URL: ("provider URL: expires", "red"),
    ImageKind.SIGNED_URL: ("signed URL: expires", "red"),
    ImageKind.STORAGE_URL: ("public storage URL", "green"),
    ImageKind.OTHER_URL: ("external URL: may expire", "yellow"),
    ImageKind.OTHER: ("unrecognised value", "yellow"),
}
# Below this width a whole character id beside a folded storage key leaves a column a few letters wide.
WIDE = 120
SHOWN_LIMIT = 300  # a storage key is about 120 characters; a name longer than this is noise


def render_user(console: Console, view: UserView, *, now: datetime) -> None:
    head = Text.assemble(("user ", "bold"), (str(view.user_id), "bold"))
    if view.email:
        head.append(f"  {_shown(view.email)}")
    console.print(head)
    console.print(_jobs_line(view, now))
    if view.attention:
        # Full ids here (no repository at hand to shorten them safely); the columns fit the console.
        table, _hidden = stuck_table(view.attention, now=now, ids={}, width=console.width)
        console.print(table)
    console.print(Text("\nCharacters", style="bold"))
    detailed = console.width >= WIDE
    console.print(_characters(view, now, detailed=detailed) if view.characters else Text("  none"))
    if view.characters and not detailed:
        console.print(Text(f"image addresses hidden at {console.width} columns; see them with --json or a wider "
                           "terminal", style="dim"))
    console.print(Text("\nLibrary portraits (the Characters tab)", style="bold"))
    console.print(_library(view, now) if view.library else Text("  none"))


def user_lines(view: UserView, *, now: datetime) -> list[str]:
    """Piped: one tab-separated line per job, character and library row, whole ids, no box drawing
    (docs/commands.md, "Output"); Rich would expand the tabs, so these bypass it."""
    head = f"user {view.user_id}" + (f"  {_shown(view.email)}" if view.email else "")
    rows = [head, _jobs_line(view, now).plain, *stuck_lines(view.attention, now=now), "", "Characters"]
    for seen in view.characters:
        c = seen.character
        rows.append(_line(str(c.id), _shown(c.name), age(c.created_at, now) + " ago", str(seen.jobs),
                          IMAGE_LABEL[seen.image][0], _shown(seen.image_shown or "")))
    rows += ["", "Library portraits (the Characters tab)"]
    for item in view.library:
        cid, jid = f.row_character_id(item), f.row_job_id(item)
        name = view.character_names.get(cid) if cid else None
        rows.append(_line(str(item.id), age(item.created_at, now) + " ago", _shown(name) if name else str(cid or ""),
                          str(jid or ""), _shown(item.storage_path)))
    return rows


def _line(*cells: str) -> str:
    return "\t".join(" ".join(cell.replace("\t", " ").split()) or "-" for cell in cells)


def _jobs_line(view: UserView, now: datetime) -> Text:
    text = Text(f"{view.examined} portrait job(s) in the last {age(view.since, now)}")
    parts: list[str | Text] = []
    for state in STATE_ORDER:
        if view.by_state[state]:
            parts += [", " if parts else ": ", Text(f"{view.by_state[state]} "), state_text(State(state))]
    if parts:
        text.append_text(Text.assemble(*parts))
    if view.attention:
        text.append(f"; {len(view.attention)} need attention:")
    return text


def _characters(view: UserView, now: datetime, *, detailed: bool) -> Table:
    table = Table(header_style="bold", pad_edge=False)
    # Whole character ids, never folded: they are what `--character` takes (docs/commands.md, "Ids").
    table.add_column("character", no_wrap=True, min_width=36)
    for column in ("name", "created", "jobs", "image"):
        table.add_column(column, overflow="fold")
    for item in view.characters:
        c = item.character
        label, style = IMAGE_LABEL[item.image]
        shown = item.image_shown
        image = Text(label, style=style)
        if shown and detailed:
            image.append("\n" + _shown(shown), style="dim")
        table.add_row(str(c.id), Text(_shown(c.name)), age(c.created_at, now) + " ago", str(item.jobs), image)
    return table


def _library(view: UserView, now: datetime) -> Table:
    table = Table(header_style="bold", pad_edge=False)
    for column in ("row", "created", "character", "job", "storage path"):
        table.add_column(column, overflow="fold")
    for item in view.library:
        cid = f.row_character_id(item)
        name = view.character_names.get(cid) if cid else None
        character = Text(_shown(name)) if name else Text(str(cid)[:8] + " (not theirs or deleted)" if cid else "-",
                                                         style="yellow" if cid else "")
        jid = f.row_job_id(item)
        table.add_row(str(item.id)[:8], age(item.created_at, now) + " ago", character, str(jid)[:8] if jid else "-",
                      Text(_shown(item.storage_path)))
    return table


def _shown(text: str) -> str:
    from charfix.ui.safe import terminal_excerpt  # docs/reliability.md, "What reaches the terminal"

    return terminal_excerpt(text, SHOWN_LIMIT)
