"""`charfix user`: everything about one user's portraits, for a support ticket."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.commands import options
from charfix.runtime import Runtime


def user_cli(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(metavar="EMAIL|ID", help="The user's email address, or user id (or its first 8+ characters).",
                                       show_default=False)],
    since: Annotated[str, typer.Option("--since", metavar="DURATION|DATE", help="How far back to look for jobs: a duration (30d) or a date.")] = "30d",
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
) -> None:
    """Show one user's portrait jobs by state, their characters (which image each shows, and whether
    it will expire) and their library portraits. It writes nothing.

    Example: charfix --demo user mandy@example.com
    """
    from charfix.parsing import parse_since
    from charfix.queries.selection import build_rules
    from charfix.queries.user_view import user_view
    from charfix.queries.users import looks_like_email, resolve_user, user_by_prefix

    runtime: Runtime = ctx.obj
    output = options.json_output(json_fields, jq)
    now = runtime.now()
    rules = build_rules(now=now, stuck_after=stuck_after, link_window=link_window)
    start = parse_since(since, now=now)
    backends = runtime.backends()
    user_id = resolve_user(backends, who, by_prefix=user_by_prefix(backends))
    view = user_view(backends, user_id, since=start, rules=rules,
                     email=who.strip() if looks_like_email(who) else None)
    if output is not None:
        output.print_one(runtime.env, view.to_json())
        return
    from charfix.ui.user_render import render_user, user_lines

    if not runtime.env.stdout_is_terminal:
        runtime.env.write_lines(user_lines(view, now=now))
        return
    render_user(runtime.env.out, view, now=now)
