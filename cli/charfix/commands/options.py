"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from charfix.errors import UsageError

if TYPE_CHECKING:
    from charfix.queries.selection import Selection
    from charfix.runtime import Runtime


def _named(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise UsageError("--operator: the name is empty; leave the option out to record your OS user")
    return value


Since = Annotated[
    str, typer.Option("--since", metavar="DURATION|DATE", help="How far back to look: a duration (7d, 36h, 90m) or a date (2026-11-01).")
]
User = Annotated[str | None, typer.Option("--user", metavar="EMAIL|ID", help="Only this user's jobs: a user id, a unique prefix of 8+ characters, or the email they sign in with.")]
StuckAfter = Annotated[
    str,
    typer.Option("--stuck-after", metavar="DURATION", help="A queued/processing job with no output older than this has failed "
                 "(1 minute to ten years)."),
]
LinkWindow = Annotated[
    str,
    typer.Option(
        "--link-window", metavar="DURATION",
        help="A name-only job links automatically only to a character created this soon after the job "
             "(1 minute to 7 days).",
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", metavar="N", min=1, help="Show at most this many jobs.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Write without asking (required when not on a terminal).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and write nothing.")]
Operator = Annotated[
    str | None, typer.Option("--operator", metavar="NAME", help="Name recorded in the audit log [default: your OS user].", show_default=False,
                             callback=_named)
]
AuditPath = Annotated[
    Path | None,
    typer.Option("--audit-log", metavar="PATH", help="Audit log file [default: ~/.local/state/charfix/audit.jsonl; env: CHARFIX_AUDIT_LOG].",
                 show_default=False),
]
NoSave = Annotated[bool, typer.Option("--no-save", help="Only fix the job itself; leave library and character alone.")]
JobRef = Annotated[str, typer.Argument(help="The job id (or a unique prefix of 8+ characters).", show_default=False)]
JsonFields = Annotated[
    str | None,
    typer.Option("--json", metavar="[FIELDS]", show_default=False,
                 help="Print JSON to stdout for scripts instead of tables; optionally only these fields, "
                      "comma-separated (an unknown one is refused, naming the fields there are)."),
]
Jq = Annotated[
    str | None,
    typer.Option("--jq", metavar="EXPR", show_default=False, help="Filter the JSON through a jq expression "
                 "(implies --json); strings print raw, as gh does."),
]


def json_output(fields: str | None, jq: str | None):
    """None for people (tables); otherwise what --json and --jq asked for."""
    if fields is None and jq is None:
        return None
    from charfix.ui.jsonout import JsonOutput

    return JsonOutput.parse(fields or "", jq)


def show_character_hint(runtime: Runtime, selection: Selection) -> None:
    """`--character` matched nothing: what was looked for and the names near it, on stderr so that
    `--json` output stays a clean list."""
    from charfix.queries.by_character import character_hint

    hint = character_hint(selection)
    if hint:
        runtime.env.err.print(f"hint: {hint}", markup=False, highlight=False)
