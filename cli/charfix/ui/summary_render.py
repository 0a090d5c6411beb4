"""Drawing `list-stuck --summary`: a table of state x reason and a bar per day, sized to the terminal."""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from charfix.models import State
from charfix.ui.render import STATE_STYLE, state_text

if TYPE_CHECKING:  # the type the read side returns; the UI never calls it (tests/test_layers.py)
    from charfix.queries.summary import Summary

MAX_ROWS = 31  # a longer window is drawn in buckets of several days
MAX_BAR = 60
EIGHTHS = " ▏▎▍▌▋▊▉█"
SPARK = "▁▂▃▄▅▆▇█"


def render_summary(console: Console, summary: Summary) -> None:
    console.print(Text(_heading(summary)))
    if summary.by_state:
        console.print(_reasons(summary))
    console.print(Text("\nJobs needing attention, by day the job was created (UTC)", style="bold"))
    buckets = _buckets(summary.per_day())
    console.print(Text("  " + sparkline([count for _, _, count in buckets]), style="magenta"))
    for line in bars(buckets, width=console.width):
        console.print(line, no_wrap=True, overflow="crop")


def summary_lines(summary: Summary) -> list[str]:
    """Piped: the heading, then `state<TAB>reason<TAB>jobs` (reason `all` for the state's total) and
    `date<TAB>jobs` for every day of the window; no box drawing, no bars (docs/commands.md, "Output")."""
    lines = [_heading(summary)]
    for state in State:
        if summary.by_state[state]:
            lines.append(f"{state.value}\tall\t{summary.by_state[state]}")
            lines += [f"{state.value}\t{reason}\t{n}" for reason, n in _by_count(summary, state)]
    lines += [f"{day.isoformat()}\t{count}" for day, count in summary.per_day()]
    return lines


def _heading(summary: Summary) -> str:
    return (f"{summary.examined} portrait job(s) examined since {summary.since:%Y-%m-%d %H:%M} UTC, "
            f"{sum(summary.by_state.values())} selected")


def _by_count(summary: Summary, state: State) -> list[tuple[str, int]]:
    return sorted(((reason, n) for (s, reason), n in summary.by_reason.items() if s == state),
                  key=lambda item: (-item[1], item[0]))


def _reasons(summary: Summary) -> Table:
    table = Table(header_style="bold", pad_edge=False)
    table.add_column("state")
    table.add_column("reason")
    table.add_column("jobs", justify="right")
    for state in State:
        if not summary.by_state[state]:
            continue
        table.add_row(state_text(state), Text("all", style="bold"), Text(str(summary.by_state[state]), style="bold"))
        for reason, count in _by_count(summary, state):
            table.add_row("", reason, str(count))
    return table


def _buckets(per_day: list[tuple[date, int]]) -> list[tuple[date, date, int]]:
    size = max(1, math.ceil(len(per_day) / MAX_ROWS))
    result = []
    for start in range(0, len(per_day), size):
        chunk = per_day[start:start + size]
        result.append((chunk[0][0], chunk[-1][0], sum(count for _, count in chunk)))
    return result


def sparkline(counts: list[int]) -> str:
    top = max(counts, default=0)
    if top == 0:
        return SPARK[0] * len(counts)
    # Zero is the baseline; any job lifts its day at least one step above it.
    return "".join(SPARK[min(len(SPARK) - 1, math.ceil(c / top * (len(SPARK) - 1)))] for c in counts)


def bars(buckets: list[tuple[date, date, int]], *, width: int) -> list[Text]:
    """One line per bucket: its days, a bar in eighths of a cell, its count; never wider than `width`."""
    top = max((count for _, _, count in buckets), default=0)
    labels = [_label(first, last) for first, last, _ in buckets]
    label_width = max((len(label) for label in labels), default=0)
    count_width = len(str(top))
    # "  label bar count", spaces between; on a wide or piped console the bars stay readable.
    room = max(1, min(MAX_BAR, width - label_width - count_width - 4))
    lines = []
    for label, (_, _, count) in zip(labels, buckets, strict=True):
        eighths = round(count / top * room * 8) if top else 0
        if count and eighths == 0:
            eighths = 1  # a day with a job is never drawn as empty
        bar = "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")
        line = Text(f"  {label:<{label_width}} ")
        line.append(bar.ljust(room), style=STATE_STYLE[State.NEEDS_REVIEW])
        line.append(f" {count:>{count_width}}")
        lines.append(line)
    return lines


def _label(first: date, last: date) -> str:
    if first == last:
        return f"{first:%a %m-%d}"
    return f"{first:%m-%d}..{last:%m-%d}"
