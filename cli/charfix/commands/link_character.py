"""`charfix link-character`: tie a name-only job to its character, then save the portrait."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from charfix.commands import options
from charfix.commands.writing import WriteOptions, preview_then_write, where
from charfix.errors import UsageError
from charfix.parsing import parse_job_ref, parse_uuid
from charfix.runtime import Runtime

if TYPE_CHECKING:
    from uuid import UUID

    from charfix.backends import Backends
    from charfix.diagnosis import Rules


def link_character_cli(
    ctx: typer.Context,
    job_id: options.JobRef,
    character: Annotated[
        str | None,
        typer.Option("--character", metavar="ID", help="The character's id. On a terminal, leave it out to choose among the candidates.",
                     show_default=False),
    ] = None,
    no_save: options.NoSave = False,
    link_window: options.LinkWindow = "1h",
    dry_run: options.DryRun = False,
    yes: options.Yes = False,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Write the character's id into a name-only job's metadata (the name stays), then save the portrait
    unless --no-save. Only a character of the job's own user is ever accepted.

    Without --character, on a terminal, it offers the candidates: exact name matches first,
    then near matches (case, spaces), each with its creation time and current image.

    Example: charfix --demo link-character 4db0218b --character <id> --dry-run
    """
    from charfix.queries.scan import resolve_job_ids
    from charfix.queries.selection import build_rules
    from charfix.repair.operations import preview_link

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    ref = parse_job_ref(job_id)
    # `--character ""` is a mistake, not "no character": only leaving the option out offers the candidates.
    given = parse_uuid(character, what="character id") if character is not None else None
    rules = build_rules(now=runtime.now(), link_window=link_window)
    backends = runtime.backends()
    job = resolve_job_ids(backends, [ref])[0]
    chosen = given or _choose(runtime, backends, job, rules)
    if chosen is None:
        runtime.env.err.print("No character chosen; nothing written.")
        return
    # The checked preview: the job read once, the choice held to the ownership rule (exit 4 or 6).
    preview = preview_link(backends, job, chosen, rules=rules, save=not no_save, now=runtime.now)
    write_options = WriteOptions("link-character", dry_run, yes, json_output, audit_log, operator)
    preview_then_write(runtime, write_options, preview,
                       lambda planned: f"Link the character and apply these {len(planned.steps)} step(s) on {where(runtime)}?")


def _choose(runtime: Runtime, backends: Backends, job: UUID, rules: Rules) -> UUID | None:
    """No --character: the character the diagnosis found, or the person's pick among the candidates."""
    from charfix.queries.scan import diagnose_ids

    diagnosis = diagnose_ids(backends, [job], rules)[0]
    if diagnosis.character_id and not diagnosis.candidates:
        return diagnosis.character_id
    if not runtime.env.interactive:
        raise UsageError("--character is required when not on a terminal",
                         hint=f"see the candidates with: {runtime.env.command_prefix} diagnose {diagnosis.job_id}")
    if not diagnosis.candidates:
        raise UsageError(f"job {diagnosis.job_id} has no candidate characters; pass --character ID")
    from charfix.ui.prompts import ask_character
    from charfix.ui.render import render_story

    render_story(runtime.env.out, diagnosis, prefix=runtime.env.command_prefix)
    answer = ask_character(diagnosis.candidates)
    return parse_uuid(answer, what="character id") if answer else None
