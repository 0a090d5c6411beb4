"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

Since = Annotated[
    str, typer.Option("--since", help="How far back to look: a duration (7d, 36h, 90m) or a date (2026-11-01).")
]
User = Annotated[str | None, typer.Option("--user", help="Only this user's jobs (a user id).")]
StuckAfter = Annotated[
    str,
    typer.Option("--stuck-after", help="A queued/processing job with no output older than this has failed."),
]
LinkWindow = Annotated[
    str,
    typer.Option(
        "--link-window",
        help="A name-only job links automatically only to a character created this soon after the job.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout for scripts instead of tables.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many jobs.")]
