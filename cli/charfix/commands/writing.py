"""What every writing command shares: confirmation (as gh does it) and the audit log."""

from __future__ import annotations

from pathlib import Path

from charfix.audit import AuditLog, default_audit_path, default_operator
from charfix.errors import UsageError
from charfix.runtime import Runtime


def confirm(runtime: Runtime, question: str, *, yes: bool) -> bool:
    """--yes answers for the person; otherwise ask, but only when a person is at the terminal."""
    if yes:
        return True
    if not runtime.env.interactive:
        raise UsageError("refusing to write without --yes: not running on a terminal, so nobody can confirm",
                         hint="add --yes, or --dry-run to see the plan")
    from charfix.ui.prompts import ask_confirm

    return ask_confirm(question)


def open_audit(runtime: Runtime, command: str, *, path: Path | None, operator: str | None) -> AuditLog:
    settings = runtime.settings
    chosen = path or settings.audit_log or default_audit_path()
    who = operator or settings.operator or default_operator()
    return AuditLog(path=chosen, operator=who, command=command).open()
