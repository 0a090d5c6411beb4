"""`charfix list-stuck`: every portrait job whose portrait is not fully saved."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.by_character import show_character_hint, with_character
from charfix.commands import options
from charfix.commands.summary import show_summary
from charfix.models import Diagnosis
from charfix.runtime import Runtime
from charfix.scan import Backends
from charfix.selection import Selection, Tally, backlog_line, build_selection, hidden_backlog, selected
from charfix.users import user_option


def list_stuck(backends: Backends, selection: Selection) -> tuple[list[Diagnosis], Tally]:
    tally = Tally()
    return list(selected(backends, selection, tally)), tally


def list_stuck_cli(
    ctx: typer.Context,
    since: options.Since = "7d",
    user: options.User = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only jobs in this state (repeatable): saved, in_progress, repairable, "
                     "needs_review, lost, failed, not_applicable."),
    ] = None,
    every_state: Annotated[bool, typer.Option("--all", help="Every portrait job, saved ones included.")] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    limit: options.Limit = None,
    json_output: options.Json = False,
    character: Annotated[str | None, typer.Option("--character", help="Only jobs about this character: its exact "
                                                  "name, or its id (near names are shown as hints).")] = None,
    summary_only: Annotated[bool, typer.Option("--summary", help="Counts by state and reason, and a bar per day of "
                                               "jobs needing attention, instead of the list.")] = False,
) -> None:
    """List portrait jobs whose portrait did not reach the library, with why and what would fix it.

    By default it shows what needs someone: [b]repairable[/b], [b]needs_review[/b], [b]lost[/b], and
    [b]failed[/b] jobs whose status still claims queued or processing.

    Example: [cyan]charfix --demo list-stuck --since 3d --state repairable --json[/cyan]
    """
    runtime: Runtime = ctx.obj
    user = user_option(runtime, user)  # an email becomes the user's id
    selection = build_selection(
        now=runtime.now(), since=since, user=user, states=state, every_state=every_state,
        stuck_after=stuck_after, link_window=link_window, limit=limit,
    )
    selection = with_character(selection, character)
    if summary_only:
        return show_summary(runtime, selection, json_output=json_output)
    # What --since hides (docs/commands.md): said on stderr with --json, so stdout stays the list.
    hidden = backlog_line(hidden_backlog(runtime.backends(), selection), since=selection.query.since,
                          now=selection.rules.now)
    if json_output:
        # Streamed: a year of production jobs never sits in memory at once.
        runtime.env.print_json_lines(d.to_json() for d in selected(runtime.backends(), selection, Tally()))
        show_character_hint(runtime, selection)
        if hidden:
            runtime.env.warn(hidden)
        return
    diagnoses, tally = list_stuck(runtime.backends(), selection)
    from charfix.ui.render import stuck_table, summary

    if diagnoses:
        runtime.env.out.print(stuck_table(diagnoses, now=selection.rules.now))
    else:
        runtime.env.out.print("Nothing to do: no portrait job needs attention.")
    runtime.env.out.print(summary(tally.by_state, shown=tally.shown, examined=tally.examined))
    show_character_hint(runtime, selection)
    if hidden:
        runtime.env.out.print(hidden, highlight=False)
