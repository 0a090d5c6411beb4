"""`history` and `undo` for people: runs, writes and what changed (before -> after), terminal-safe."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from charfix.ui.safe import terminal_text

WIDTH = 60  # a value longer than this is cut: history is for reading, --json has everything


def render_history(console: Console, job_id: str, trail: str, runs: list[Any]) -> None:
    if not runs:
        console.print(f"No run of charfix touched job {job_id} (audit trail: {terminal_text(trail)}).",
                      markup=False, highlight=False)
        return
    console.print(f"job {job_id}: {len(runs)} run(s) (audit trail: {terminal_text(trail)})", markup=False,
                  highlight=False)
    for run in runs:
        info = run.info
        console.print("")
        console.print(f"run {info.run}  {_text(info.time)}  {_text(info.operator)}  {_text(info.command)}",
                      markup=False, highlight=False, style="bold")
        if info.command_line:
            console.print(f"  {terminal_text(info.command_line)}", markup=False, highlight=False)
        if info.reverts:
            console.print(f"  reverts run {terminal_text(info.reverts)}", markup=False, highlight=False)
        for write in run.writes:
            maybe = "" if write.landed else "  (announced; its outcome was never recorded)"
            console.print(f"  {terminal_text(write.step)}  {terminal_text(write.target)}{maybe}", markup=False,
                          highlight=False)
            for change in write.changes():
                name = f"{terminal_text(change['field'])}: " if change["field"] else ""
                console.print(f"      {name}{_value(change['before'])} -> {_value(change['after'])}", markup=False,
                              highlight=False)


def render_undo(console: Console, report: Any, *, dry_run: bool) -> None:
    for item in report.items:
        what = {"restore_row": "restore", "delete_row": "delete row", "delete_object": "delete object"}.get(
            item.action.value, "leave")
        line = f"{item.outcome.value:<15} {what} {terminal_text(item.record.target)}"
        if item.values:
            line += "  " + ", ".join(f"{terminal_text(k)}: {_value(item.expected.get(k))} -> {_value(v)}"
                                     for k, v in item.values.items() if item.expected.get(k) != v)
        if item.message:
            line += f"  ({terminal_text(item.message)})"
        console.print(line, markup=False, highlight=False)
    counts = {o: report.count(o) for o in type(report.items[0].outcome)} if report.items else {}
    shown = ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
    verb = "would revert" if dry_run else "reverted"
    console.print(f"run {report.run}: {shown or 'no write to undo'} ({verb} newest first)", markup=False,
                  highlight=False)


def _text(value: str | None) -> str:
    return terminal_text(value) if value else "?"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = terminal_text(text)
    return text if len(text) <= WIDTH else text[:WIDTH - 1] + "…"
