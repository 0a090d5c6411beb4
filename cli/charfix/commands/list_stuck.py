"""`charfix list-stuck`: every portrait job whose portrait is not fully saved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from charfix.commands import options
from charfix.runtime import Runtime

if TYPE_CHECKING:
    from rich.console import RenderableType

    from charfix.queries.selection import Selection, Tally


def list_stuck(backends, selection: Selection, *, progress=None) -> tuple[list, Tally]:
    from charfix.queries.selection import Tally, selected

    tally = Tally()
    return list(selected(backends, selection, tally, progress=progress)), tally


def list_stuck_cli(
    ctx: typer.Context,
    since: options.Since = "7d",
    user: options.User = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", metavar="STATE", help="Only jobs in this state (repeatable): saved, in_progress, repairable, "
                     "needs_review, lost, failed, not_applicable."),
    ] = None,
    every_state: Annotated[bool, typer.Option("--all", help="Every portrait job, saved ones included.")] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    limit: options.Limit = None,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    character: Annotated[str | None, typer.Option("--character", metavar="NAME|ID", help="Only jobs about this character: its exact "
                                                  "name, or its id (near names are shown as hints).")] = None,
    summary_only: Annotated[bool, typer.Option("--summary", help="Counts by state and reason, and a bar per day of "
                                               "jobs needing attention, instead of the list.")] = False,
) -> None:
    """List portrait jobs whose portrait did not reach the library, with why and what would fix it.

    By default it shows what needs someone: repairable, needs_review, lost, and
    failed jobs whose status still claims queued or processing. On a terminal, a table that fits
    its width (long lists through $PAGER); piped, one line per job with a tab between fields.

    Example: charfix --demo list-stuck --since 3d --state repairable --json job_id,state,reasons
    """
    from charfix.queries.selection import Tally, backlog_line, build_selection, hidden_backlog, selected
    from charfix.queries.by_character import with_character
    from charfix.commands.summary import show_summary
    from charfix.queries.users import user_option

    runtime: Runtime = ctx.obj
    user = user_option(runtime, user)  # an email becomes the user's id
    output = options.json_output(json_fields, jq)
    selection = build_selection(
        now=runtime.now(), since=since, user=user, states=state, every_state=every_state,
        stuck_after=stuck_after, link_window=link_window, limit=limit, backends=runtime.backends,
    )
    selection = with_character(selection, character)
    if summary_only:
        return show_summary(runtime, selection, json_output=output is not None)
    # What --since hides (docs/commands.md): said on stderr off a terminal, so stdout stays the list.
    hidden = backlog_line(hidden_backlog(runtime.backends(), selection), since=selection.query.since,
                          now=selection.rules.now)
    if output is not None:
        # Streamed: a year of production jobs never sits in memory at once.
        output.print_list(runtime.env, (d.to_json() for d in selected(runtime.backends(), selection, Tally())))
        options.show_character_hint(runtime, selection)
        if hidden:
            runtime.env.warn(hidden)
        return
    from charfix.queries.scan import PAGE_SIZE
    from charfix.ui.progress import scan_progress

    with scan_progress(runtime.env, page_size=PAGE_SIZE) as progress:
        diagnoses, tally = list_stuck(runtime.backends(), selection, progress=progress)
    _render(runtime, diagnoses, tally, selection)
    options.show_character_hint(runtime, selection)
    if hidden:
        (runtime.env.out if runtime.env.stdout_is_terminal else runtime.env.err).print(hidden, highlight=False)


def _render(runtime: Runtime, diagnoses: list, tally: Tally, selection: Selection) -> None:
    from charfix.ui.render import summary

    env, now = runtime.env, selection.rules.now
    counts = summary(tally.by_state, shown=tally.shown, examined=tally.examined)
    if not env.stdout_is_terminal:
        # Piped: lines for grep and cut; the counts go to stderr so that every stdout line is a job.
        from charfix.ui.render import stuck_lines

        env.write_lines(stuck_lines(diagnoses, now=now))
        env.err.print(counts)
        return
    if not diagnoses:
        env.out.print("Nothing to do: no portrait job needs attention.")
        env.out.print(counts)
        return
    from charfix.queries.selection import short_ids
    from charfix.ui.pager import print_paged
    from charfix.ui.render import stuck_table

    width = env.out.width
    table, hidden = stuck_table(diagnoses, now=now, ids=short_ids(runtime.backends(), diagnoses), width=width)
    parts: list[RenderableType] = [table, counts]
    if hidden:
        parts.append(f"[dim]{' and '.join(hidden)} hidden at {width} columns; see {'them' if len(hidden) > 1 else 'it'} with --json or a wider terminal[/]")
    print_paged(env.out, *parts, terminal=True, redact=env.redact)
