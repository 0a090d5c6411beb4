"""`charfix user`: everything about one user's portraits, for a support ticket."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.commands import options
from charfix.parsing import parse_since
from charfix.runtime import Runtime
from charfix.selection import build_rules
from charfix.user_view import user_view
from charfix.users import looks_like_email, resolve_user


def user_cli(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(metavar="EMAIL|ID", help="The user's email address or user id.",
                                       show_default=False)],
    since: Annotated[str, typer.Option("--since", help="How far back to look for jobs: a duration (30d) or a date.")] = "30d",
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    json_output: options.Json = False,
) -> None:
    """Show one user's portrait jobs by state, their characters (which image each shows, and whether
    it will expire) and their library portraits. It writes nothing.

    Example: [cyan]charfix --demo user mandy@example.com[/cyan]
    """
    runtime: Runtime = ctx.obj
    now = runtime.now()
    rules = build_rules(now=now, stuck_after=stuck_after, link_window=link_window)
    start = parse_since(since, now=now)
    backends = runtime.backends()
    user_id = resolve_user(backends, who)
    view = user_view(backends, user_id, since=start, rules=rules,
                     email=who.strip() if looks_like_email(who) else None)
    if json_output:
        runtime.env.print_json(view.to_json())
        return
    from charfix.ui.user_render import render_user

    render_user(runtime.env.out, view, now=now)
