"""Rich renderings of diagnoses: the table of `list-stuck` and the story of `diagnose`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from charfix.ui.advice import command_for, next_step
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


def age(moment: datetime, now: datetime) -> str:
    return short_duration(max(0.0, (now - moment).total_seconds()))


def short_duration(seconds: float) -> str:
    # The unit is chosen after rounding, so that 7199.6 s reads "2h", never "120m".
    if round(seconds) < 120:
        return f"{seconds:.0f}s"
    if round(seconds / 60) < 120:
        return f"{seconds / 60:.0f}m"
    if round(seconds / 3600) < 48:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def state_text(state: State) -> Text:
    return Text(state.value, style=STATE_STYLE[state])


# Columns of list-stuck in the order they are given up when the terminal is too narrow: the job, its
# state and age always stay; reasons wrap one code per line rather than go.
COLUMNS = ("job", "state", "age", "reasons", "next step", "user", "status")
ORDER = ("job", "user", "age", "status", "state", "reasons", "next step")


def stuck_cells(d: Diagnosis, *, now: datetime, ids: dict) -> dict[str, str]:
    return {
        "job": ids.get(d.job_id, str(d.job_id)),
        "user": ids.get(d.user_id, str(d.user_id)),
        "age": age(d.created_at, now),
        "status": "-" if d.status is None else terminal_text(d.status),
        "state": d.state.value,
        "reasons": "\n".join(d.codes) or "-",
        "next step": terminal_text(next_step(d)),
    }


def stuck_table(diagnoses: Sequence[Diagnosis], *, now: datetime, ids: dict, width: int) -> tuple[Table, list[str]]:
    """The columns that fit `width` without breaking a word (ids, units and states stay whole), and
    the names of those left out."""
    rows = [stuck_cells(d, now=now, ids=ids) for d in diagnoses]
    kept = _fitting_columns(rows, width)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for column in kept:
        wraps = column == "next step"
        table.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ignore")
    for d, cells in zip(diagnoses, rows, strict=True):
        table.add_row(*(state_text(d.state) if c == "state" else Text(cells[c]) for c in kept))
    return table, [c for c in ORDER if c not in kept]


def _fitting_columns(rows: list[dict[str, str]], width: int) -> list[str]:
    """Columns by priority while their narrowest layout fits: a no-wrap cell needs its longest line,
    the wrapping one its longest word. Three characters part two columns (padding, rule, padding)."""
    kept: list[str] = []
    used = 0
    for column in COLUMNS:
        need = max([len(column)] + [_narrowest(column, r[column]) for r in rows])
        extra = need + (3 if kept else 0)
        if used + extra <= width:
            kept.append(column)
            used += extra
    return [c for c in ORDER if c in kept]


def _narrowest(column: str, cell: str) -> int:
    pieces = cell.split() if column == "next step" else cell.split("\n")
    return max((len(p) for p in pieces), default=0)


def stuck_lines(diagnoses: Sequence[Diagnosis], *, now: datetime) -> Iterator[str]:
    """One tab-separated line per job for grep, cut and awk: full ids, every reason on the line."""
    for d in diagnoses:
        cells = stuck_cells(d, now=now, ids={})
        cells["reasons"] = ",".join(d.codes) or "-"
        yield "\t".join(_one_field(cells[c]) for c in ORDER)


def _one_field(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines()) or "-"


def summary(counts: Counter, *, shown: int, examined: int) -> Text:
    parts = [f"{counts[s]} {s.value}" for s in STATE_ORDER if counts.get(s)]
    text = Text(f"{shown} job(s) shown, {examined} portrait job(s) examined")
    if parts:
        text.append(": " + ", ".join(parts))
    return text


def render_story(console: Console, d: Diagnosis, *, prefix: str = "charfix") -> None:
    """In a panel on a terminal (words wrap to its width, ids stay whole); plain lines when piped."""
    head = Text.assemble(
        ("job ", "bold"), (str(d.job_id), "bold"), "\n",
        f"user {d.user_id} · status '{terminal_text(d.status)}' · "
        f"created {d.created_at.isoformat(timespec='seconds')}\n",
        "state ", state_text(d.state),
    )
    if d.character_name:
        chosen = f" ({d.character_id})" if d.character_id else ""
        head.append(f" · character '{terminal_text(d.character_name)}'{chosen}")
    parts: list = [head]
    parts += _timeline(d) + _reasons(d) + _candidates(d) + _plan(d)
    if d.notes:
        parts.append(Text("notes", style="bold"))
        parts += [Text(f"  {terminal_text(n)}") for n in d.notes]
    command = command_for(d, prefix)
    if command:
        parts.append(Text.assemble(("run  ", "bold"), (terminal_text(command), "cyan")))
    if console.is_terminal:
        console.print(Panel(Group(*parts), expand=False))
    else:
        for part in parts:
            console.print(part)
        console.print()


def _timeline(d: Diagnosis) -> list:
    rows = [Text("timeline", style="bold")]
    start = d.created_at
    for event in d.timeline:
        offset = (event.at - start).total_seconds()
        sign = "+" if offset >= 0 else "-"
        rows.append(Text(f"  {event.at.isoformat(timespec='seconds')}  ({sign}{short_duration(abs(offset))})  "
                         f"{terminal_text(event.what)}"))
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
    """One line per candidate, its full id first (never cut: it is what --character takes); the
    details after it wrap at spaces on a narrow terminal."""
    if not d.candidates:
        return []
    rows = [Text("candidates", style="bold")]
    for c in d.candidates:
        rows.append(Text.assemble(
            f"  {c.id}  ", (terminal_text(c.name), "bold"),
            f"  {'exact' if c.exact else 'near'}  created {c.created_at.isoformat(timespec='seconds')} "
            f"({c.seconds_after_job:+.0f}s after the job)  image {terminal_text(c.image_url or '-')}"))
    return rows


def _plan(d: Diagnosis) -> list:
    if not d.plan:
        return []
    return [Text("plan", style="bold"), *plan_lines(d.plan, verb="")]


def plan_lines(steps, *, verb: str) -> list[Text]:
    """Numbered steps; the same lines in `diagnose`, the write prompts and --dry-run."""
    return [Text.assemble(f"  {number}. {verb}", (step.action.value, "green"), f"  {terminal_text(step.description)}")
            for number, step in enumerate(steps, 1)]
