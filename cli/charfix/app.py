"""The root of the command line: global options, the commands, and errors turned into exit codes."""

from __future__ import annotations

import gc
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from charfix import __version__
from charfix.commands.backfill import backfill_cli
from charfix.commands.complete_job import complete_job_cli
from charfix.commands.demo import demo_cli
from charfix.commands.diagnose import diagnose_cli
from charfix.commands.doctor import doctor_cli
from charfix.commands.history import history_cli
from charfix.commands.init import init_cli
from charfix.commands.link_character import link_character_cli
from charfix.commands.list_stuck import list_stuck_cli
from charfix.commands.repair import repair_cli
from charfix.commands.argv import normalize
from charfix.commands.report import report_cli
from charfix.commands.undo import undo_cli
from charfix.commands.user import user_cli
from charfix.errors import CharfixError, ExitStatus, UsageError
from charfix.parsing import parse_path
from charfix.runtime import Runtime
from charfix.ui.environment import Environment, PipeClosed

HELP = """Find character-portrait jobs whose image never reached the user's library, explain why, and repair them.

Point it at the database with SUPABASE_DB_URL, the config file or --db-url (a password given on the command line shows in the process list) and at storage with --storage-dir, or try it on the embedded demo with --demo.

Exit codes: 0 ok, 1 some repairs failed, 2 bad input, 3 configuration (also a key that is not a service key, a missing bucket), 4 not found, 5 database or storage error, 6 refused by a safety rule, 7 nothing written: the job needs a person, 70 internal error, 130 interrupted (SIGINT), 143 stopped by SIGTERM.

Example: charfix --demo list-stuck
"""

app = typer.Typer(
    name="charfix",
    help=HELP,
    no_args_is_help=True,
    # Plain help: Typer's Rich help imports rich.markdown and rich.traceback (0.3 s of a 0.5 s start-up;
    # bench/startup.py). Errors are then one plain line from Click, not a panel.
    rich_markup_mode=None,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"charfix {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db_url: Annotated[
        str | None,
        typer.Option("--db-url", metavar="URL", help="Postgres connection string [env: SUPABASE_DB_URL]. Prefer the variable or "
                     "the config file: other users can read a password given here in the process list.",
                     show_default=False),
    ] = None,
    storage_dir: Annotated[
        str | None,
        typer.Option("--storage-dir", metavar="PATH", help="Local storage root with one folder per bucket [env: CHARFIX_STORAGE_DIR].",
                     show_default=False),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Use the embedded demo database and storage.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="PATH", help="Config file [default: ~/.config/charfix/config.toml; env: CHARFIX_CONFIG].",
                     show_default=False),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors (passwords and keys masked).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    runtime: Runtime = ctx.obj
    if demo and (db_url is not None or storage_dir is not None):
        given = " and ".join(n for n, v in (("--db-url", db_url), ("--storage-dir", storage_dir)) if v is not None)
        raise UsageError(f"--demo runs on the embedded demo and cannot be used with {given}; use one or the other")
    runtime.flags = {"db_url": db_url, "storage_dir": parse_path(storage_dir, option="--storage-dir")}
    runtime.config_path = config
    runtime.demo = demo
    runtime.debug = debug
    runtime.env.command_prefix = _context_prefix(demo=demo, config=config, db_url=db_url, storage_dir=storage_dir)
    ctx.call_on_close(runtime.close)


def _context_prefix(*, demo: bool, config: Path | None, db_url: str | None, storage_dir: str | None) -> str:
    """`charfix` and the global options this run needed, so that every suggested command runs as
    printed (a password in --db-url is masked on output like every secret)."""
    words = ["charfix"]
    if demo:
        words.append("--demo")
    for option, value in (("--config", config), ("--db-url", db_url), ("--storage-dir", storage_dir)):
        if value is not None:
            words += [option, shlex.quote(str(value))]
    return " ".join(words)


app.command("list-stuck")(list_stuck_cli)
app.command("diagnose")(diagnose_cli)
app.command("complete-job")(complete_job_cli)
app.command("link-character")(link_character_cli)
app.command("backfill-portraits")(backfill_cli)
app.command("repair")(repair_cli)
app.command("doctor")(doctor_cli)
app.command("demo")(demo_cli)
app.command("user")(user_cli)
app.command("report")(report_cli)
app.command("history")(history_cli)
app.command("undo")(undo_cli)
app.command("init")(init_cli)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """The console script. Every error becomes one line on stderr and a documented exit code."""
    env = env or Environment()
    argv = normalize(sys.argv[1:] if argv is None else argv)
    runtime = Runtime(env=env, debug="--debug" in argv, argv=list(argv))
    try:
        result = app(args=argv, prog_name="charfix", standalone_mode=False, obj=runtime)
        return int(result or 0)
    except CharfixError as exc:
        if runtime.debug:
            env.traceback(exc)
        env.error(exc.message, hint=exc.hint)
        return int(exc.exit_status)
    except typer.Abort:
        env.error("interrupted")
        return int(ExitStatus.INTERRUPTED)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        # Click's own usage errors (an unknown option, a value out of range) in charfix's form: one
        # `error:` line and a `hint:` (docs/commands.md), not Click's usage block. env.error redacts:
        # the message may quote an option's value.
        ctx = getattr(exc, "ctx", None)
        hint = f"see {ctx.command_path} --help" if ctx is not None else None
        env.error(" ".join(exc.format_message().split()), hint=hint)
        return int(getattr(exc, "exit_code", ExitStatus.USAGE))
    except KeyboardInterrupt:
        env.error("interrupted")
        return int(ExitStatus.INTERRUPTED)
    except (PipeClosed, BrokenPipeError):
        # The reader closed the pipe (`| head`): it has what it wanted. Quiet and 0, as gh does;
        # stdout goes to /dev/null so that the interpreter's last flush does not complain.
        _silence_stdout()
        return int(ExitStatus.OK)
    except Exception as exc:  # a bug: still one line and its own exit code; --debug adds the traceback
        if runtime.debug:
            env.traceback(exc)
        hint = ("report it with the traceback above" if runtime.debug
                else "run again with --debug for the traceback, and report it")
        env.error(f"internal error: {type(exc).__name__}: {exc}", hint=hint)
        return int(ExitStatus.INTERNAL)
    finally:
        runtime.close()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (tests swap it): nothing will flush into a pipe
        pass


def run() -> None:
    # A scan builds a few hundred thousand short-lived models. At the default threshold (700
    # allocations) the cycle collector took 1.2 to 1.6 s of list-stuck's 6 s of CPU at 1,000,000 jobs;
    # at 10,000 it takes 0.5 s. Objects without cycles are freed as before, by reference counting.
    gc.set_threshold(10_000, 10, 10)
    sys.exit(main())
