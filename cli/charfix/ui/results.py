"""Rendering what a repair did: one job's steps, or the backfill's summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from charfix.models import BackfillReport, JobResult, Outcome
from charfix.ui.render import plan_lines
from charfix.ui.safe import terminal_text

OUTCOME_STYLE = {
    Outcome.REPAIRED: "green",
    Outcome.ALREADY_FINE: "green",
    Outcome.PLANNED: "cyan",
    Outcome.SKIPPED: "yellow",
    Outcome.CHANGED: "yellow",
    Outcome.FAILED: "red",
}


def render_job_result(console: Console, result: JobResult) -> None:
    head = Text.assemble(("job ", "bold"), str(result.job_id), "  ", (result.outcome.value, OUTCOME_STYLE[result.outcome]))
    if result.state is not None:
        head.append(f"  (state {'is now' if result.outcome == Outcome.CHANGED else 'was'} {result.state.value})")
    console.print(head)
    verb = "would" if result.outcome == Outcome.PLANNED else "done:"
    for line in plan_lines(result.steps, verb=f"{verb} "):
        console.print(line, soft_wrap=not console.is_terminal)  # piped, keys and paths stay whole for grep
    if result.outcome == Outcome.ALREADY_FINE:
        console.print("  nothing to do: the portrait is already where it belongs")
    elif result.message:
        console.print(Text(f"  {terminal_text(result.message)}"))


def render_backfill_plan(console: Console, report: BackfillReport) -> None:
    """What a backfill would do, before it does it: jobs per state, then steps per action."""
    from collections import Counter

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("examined", str(report.examined))
    table.add_row("would repair (repairable)", str(len(report.planned)))
    table.add_row("already fine (saved)", str(report.already_fine))
    for state, count in sorted(report.skipped_by_state.items()):
        table.add_row(f"left alone ({state})", str(count))
    if report.capped:
        table.add_row("left for the next run (--max)", str(report.capped))
    actions = Counter(step.action.value for result in report.planned for step in result.steps)
    for action, count in sorted(actions.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(Text(f"  step {action}", style="green"), str(count))
    console.print(table)


def render_backfill(console: Console, report: BackfillReport, *, dry_run: bool) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("examined", str(report.examined))
    table.add_row("would repair" if dry_run else "repaired", str(len(report.planned if dry_run else report.repaired)))
    table.add_row("already fine", str(report.already_fine))
    for state, count in sorted(report.skipped_by_state.items()):
        table.add_row(f"skipped ({state})", str(count))
    if report.skipped_other:
        table.add_row("skipped (another run holds it)", str(len(report.skipped_other)))
    if report.changed:
        table.add_row("changed by someone else meanwhile", str(len(report.changed)))
    if report.capped:
        table.add_row("left for the next run (--max)", str(report.capped))
    table.add_row("failed", Text(str(len(report.failed)), style="red" if report.failed else ""))
    console.print(table)
    for result in report.failed:
        console.print(Text(f"  failed {result.job_id}: {terminal_text(result.message)}", style="red"))
    for result in report.changed:
        console.print(Text(f"  changed {result.job_id}: {terminal_text(result.message)}", style="yellow"))
    if not dry_run and not report.repaired and not report.failed:
        console.print("Nothing to repair: no write was made.")
