"""`charfix init`: create charfix's own schema for the database audit trail, shown before it runs."""

from __future__ import annotations

import typer

from charfix.commands import options
from charfix.errors import ConfigError
from charfix.runtime import Runtime


def init_cli(ctx: typer.Context, dry_run: options.DryRun = False, yes: options.Yes = False) -> None:
    """Create the schema `charfix` and its table `charfix.audit`, so that every later writing run
    records its writes in the database, in the same transaction as the writes (docs/audit.md). The
    SQL is printed first; with the option --dry-run it is only printed, and nothing is written. Needs
    a database URL: over REST the audit log file is the only trail. Safe to run again.

    Example: charfix --demo init --dry-run
    """
    from charfix.commands.writing import approve_many, show_target, where
    from charfix.audit.database import SCHEMA_SQL, TABLE, installed

    runtime: Runtime = ctx.obj
    backends = runtime.backends()
    conn = backends.repository.connection()
    if conn is None:
        raise ConfigError("charfix init needs a database URL: over REST the audit log file is the only trail",
                          hint="set SUPABASE_DB_URL (or --db-url) to keep the trail in the database")
    if dry_run:
        show_target(runtime)
        runtime.env.out.print(SCHEMA_SQL, markup=False, highlight=False, end="")
        runtime.env.err.print("Nothing written (--dry-run).")
        return
    if installed(conn):
        runtime.env.err.print(f"{TABLE} is already there: the audit trail is in the database.")
        return

    def show() -> None:
        show_target(runtime)
        runtime.env.out.print(SCHEMA_SQL, markup=False, highlight=False, end="")

    if not approve_many(runtime, show, f"Create the schema charfix on {where(runtime)}?", yes=yes):
        runtime.env.err.print("Nothing written.")
        return
    import psycopg

    try:
        with conn.transaction():
            conn.execute(SCHEMA_SQL)
    except psycopg.Error as exc:
        from charfix.errors import BackendError

        raise BackendError(f"cannot create {TABLE}: {str(exc).strip().splitlines()[0]}; nothing was changed",
                           hint="connect as the database owner (the postgres role)") from exc
    runtime.env.err.print(f"Created {TABLE}: from now on, writing runs record their writes there.")
