"""`charfix doctor`: check configuration, connections, tables, columns, privileges, buckets, indexes."""

from __future__ import annotations

import typer

from charfix.commands import options
from charfix.errors import ExitStatus
from charfix.runtime import Runtime

MARKS = {"ok": "[green]✔[/]", "warn": "[yellow]![/]", "fail": "[red]✘[/]"}


def doctor_cli(ctx: typer.Context, json_fields: options.JsonFields = None, jq: options.Jq = None) -> None:
    """Check that charfix can see and change what it needs: configuration (and where each setting came
    from), the database, the four tables and every column charfix uses, privileges, the two buckets,
    and indexes that would speed up list-stuck (printed as SQL to run; never created).

    Exit code 0 when nothing failed (warnings allowed), 5 when a check failed.

    Example: charfix doctor --json
    """
    from charfix.doctor.run import run_doctor

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    checks = run_doctor(runtime.settings)
    if json_output is not None:
        json_output.print_list(runtime.env, (c.to_json() for c in checks.items))
    else:
        from charfix.ui.safe import terminal_markup

        # Details quote servers' answers (error messages, bucket names): terminal-safe, markup escaped.
        for check in checks.items:
            runtime.env.out.print(f"{MARKS[check.status]} {terminal_markup(check.name)}: {terminal_markup(check.detail)}")
            if check.fix:
                runtime.env.out.print(f"    [dim]fix:[/] {terminal_markup(check.fix)}")
    if checks.failed:
        raise typer.Exit(int(ExitStatus.BACKEND))
