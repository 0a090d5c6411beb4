"""Rich renderings of diagnoses: the table of `list-stuck` and the story of `diagnose`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from charfix.advice import command_for, next_step
from charfix.models import Diagnosis, State
from charfix.ui.safe import terminal_text

STATE_STYLE = {
    State.SAVED: "green",
    State.IN_PROGRESS: "cyan",
    State.REPAIRABLE: "yellow",
    State.NEEDS_REVIEW: "magenta",
    State.LOST: "red",
    State.FAILED: "red",
    State.NOT_APPLICABLE: "dim",
}
STATE_ORDER = list(State)
SHORT_ID = 8  # like a short git hash: every command takes a unique prefix of a job id


def age(moment: datetime, now: datetime) -> str:
    return short_duration(max(0.0, (now - moment).total_seconds()))


def short_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def state_text(state: State) -> Text:
    return Text(state.value, style=STATE_STYLE[state])


def stuck_table(diagnoses: Sequence[Diagnosis], *, now: datetime) -> Table:
    table = Table(header_style="bold", pad_edge=False, expand=False)
    for column in ("job", "user", "age", "status", "state", "reasons", "next step"):
        # Codes never break mid-word; the free text of the last column folds instead.
        table.add_column(column, overflow="fold", no_wrap=column != "next step")
    for d in diagnoses:
        table.add_row(
            str(d.job_id)[:SHORT_ID],
            str(d.user_id)[:SHORT_ID],
            age(d.created_at, now),
            Text(terminal_text(d.status)),  # Text: a str cell would be read as markup
            state_text(d.state),
            "\n".join(d.codes) or "-",
            next_step(d),
        )
    return table


def summary(counts: Counter, *, shown: int, examined: int) -> Text:
    parts = [f"{counts[s]} {s.value}" for s in STATE_ORDER if counts.get(s)]
    text = Text(f"{shown} job(s) shown, {examined} portrait job(s) examined")
    if parts:
        text.append(": " + ", ".join(parts))
    return text


def render_story(console: Console, d: Diagnosis) -> None:
    head = Text.assemble(
        ("job ", "bold"), (str(d.job_id), "bold"), "\n",
        f"user {d.user_id} · status '{terminal_text(d.status)}' · created {d.created_at.isoformat(timespec='seconds')}\n",
        "state ", state_text(d.state),
    )
    if d.character_name:
        head.append(f" · character '{terminal_text(d.character_name)}'" + (f" ({d.character_id})" if d.character_id else ""))
    parts: list = [head]
    parts += _timeline(d) + _reasons(d) + _candidates(d) + _plan(d)
    if d.notes:
        parts.append(Text("notes", style="bold"))
        parts += [Text(f"  {terminal_text(n)}") for n in d.notes]
    command = command_for(d)
    if command:
        parts.append(Text.assemble(("run  ", "bold"), (terminal_text(command), "cyan")))
    console.print(Panel(Group(*parts), expand=False))


def _timeline(d: Diagnosis) -> list:
    rows = [Text("timeline", style="bold")]
    start = d.created_at
    for event in d.timeline:
        offset = (event.at - start).total_seconds()
        sign = "+" if offset >= 0 else "-"
        when = f"{event.at.isoformat(timespec='seconds')}  ({sign}{short_duration(abs(offset))})"
        rows.append(Text(f"  {when}  {terminal_text(event.what)}"))
    return rows


def _reasons(d: Diagnosis) -> list:
    if not d.reasons:
        return [Text("reasons  none: the portrait is where it belongs" if d.state == State.SAVED else "reasons  none")]
    rows = [Text("reasons", style="bold")]
    for reason in d.reasons:
        rows.append(Text.assemble("  ", (reason.code.value, "yellow"), f"  {terminal_text(reason.message)}"))
        for key, value in reason.evidence.items():
            rows.append(Text(f"      {terminal_text(key)}: {terminal_text(value)}", style="dim"))
    return rows


def _candidates(d: Diagnosis) -> list:
    if not d.candidates:
        return []
    table = Table("character", "name", "created", "after job", "match", "image", box=None, pad_edge=False)
    for c in d.candidates:
        # Text, not markup: names and URLs are user data and may hold [brackets].
        table.add_row(str(c.id), Text(terminal_text(c.name)), c.created_at.isoformat(timespec="seconds"),
                      f"{c.seconds_after_job:+.0f}s", "exact" if c.exact else "near", Text(terminal_text(c.image_url or "-")))
    return [Text("candidates", style="bold"), table]


def _plan(d: Diagnosis) -> list:
    if not d.plan:
        return []
    rows = [Text("plan", style="bold")]
    for number, step in enumerate(d.plan, 1):
        rows.append(Text.assemble(f"  {number}. ", (step.action.value, "green"), f"  {terminal_text(step.description)}"))
    return rows
