"""`charfix diagnose`: the full story of one or more jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from charfix.commands import options
from charfix.parsing import parse_job_ref
from charfix.runtime import Runtime

if TYPE_CHECKING:
    from charfix.diagnosis import Rules
    from charfix.models import Diagnosis
    from charfix.backends import Backends


def diagnose_jobs(backends: Backends, job_ids: Sequence, rules: Rules) -> list[Diagnosis]:
    from charfix.queries.scan import diagnose_ids

    return diagnose_ids(backends, job_ids, rules)


def diagnose_cli(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str], typer.Argument(help="One or more job ids, or unique prefixes of 8+ characters.", show_default=False)
    ],
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
) -> None:
    """Tell one job's story: timeline, each reason with its evidence, the plan, and the command to run.

    Example: charfix --demo diagnose 69e0cd17-5b4e-4b8a-a8b2-1333caa61c85
    """
    from charfix.queries.scan import resolve_job_ids
    from charfix.queries.selection import build_rules

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    refs = [parse_job_ref(text) for text in job_ids]
    rules = build_rules(now=runtime.now(), stuck_after=stuck_after, link_window=link_window)
    backends = runtime.backends()
    diagnoses = diagnose_jobs(backends, resolve_job_ids(backends, refs), rules)
    if json_output is not None:
        json_output.print_list(runtime.env, (d.to_json() for d in diagnoses))
        return
    from charfix.ui.render import render_story

    for diagnosis in diagnoses:
        render_story(runtime.env.out, diagnosis, prefix=runtime.env.command_prefix)
