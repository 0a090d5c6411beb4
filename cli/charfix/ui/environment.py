"""The terminal the command runs in: one object carrying stdout, stderr and whether a person is there.

Tests swap it to capture output; commands never print except through it."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console

from charfix.config import mask_credentials
from charfix.ui.safe import json_text, terminal_markup, terminal_text


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        no_color = bool(os.environ.get("NO_COLOR"))
        # Piped output is for grep and logs: wide enough that table rows do not fold.
        width = None if _isatty(self.stdout) else 200
        self.out = Console(file=_Redacting(self.stdout, self.redact), no_color=no_color, highlight=False, width=width)
        # Errors are one line each, however narrow the terminal: they are read by people and by cron mail.
        self.err = Console(file=_Redacting(self.stderr, self.redact_message), no_color=no_color, highlight=False, stderr=True,
                           soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """Prompts only when a person is at both ends (as gh does)."""
        return _isatty(self.stdin) and _isatty(self.stdout)

    @property
    def stderr_is_terminal(self) -> bool:
        return _isatty(self.stderr)

    def print_json(self, data: Any) -> None:
        self.stdout.write(self.redact(json_text(data)) + "\n")
        self.stdout.flush()

    def print_json_lines(self, items) -> int:
        """A JSON array written item by item, so memory stays flat however long the list."""
        count = 0
        self.stdout.write("[")
        for item in items:
            text = json_text(item).replace("\n", "\n  ")
            self.stdout.write(("," if count else "") + "\n  " + self.redact(text))
            count += 1
        self.stdout.write("\n]\n" if count else "]\n")
        self.stdout.flush()
        return count

    def error(self, message: str, *, hint: str | None = None) -> None:
        # Messages quote names, keys and servers' answers: terminal-safe, and one line whatever they hold.
        self.err.print(f"[bold red]error:[/] {terminal_markup(self.redact_message(message))}", markup=True,
                       highlight=False)
        if hint:
            self.err.print(f"[dim]hint:[/] {terminal_markup(self.redact_message(hint))}", markup=True, highlight=False)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {terminal_markup(self.redact_message(message))}", markup=True,
                       highlight=False)

    def traceback(self, exc: BaseException) -> None:
        """`--debug`: the traceback, through the same redaction as every message (a libpq error
        quotes the whole connection string) and terminal-safe line by line."""
        text = "".join(traceback.format_exception(exc))
        lines = (terminal_text(line) for line in self.redact_message(text).splitlines())
        self.stderr.write("\n".join(lines) + "\n")
        self.stderr.flush()

    def redact(self, text: str) -> str:
        """Every secret charfix was given, masked (stdout: values stay exact otherwise)."""
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def redact_message(self, text: str) -> str:
        """Messages and tracebacks on stderr: also whatever looks like a credential (a URL's password,
        a key), since they may quote strings charfix was never told are secret."""
        return mask_credentials(self.redact(text))


class _Redacting:
    """A stream that masks every secret the environment knows of, whatever prints through it."""

    def __init__(self, stream: TextIO, redact: Callable[[str], str]):
        self.stream, self.redact = stream, redact

    def write(self, text: str) -> int:
        return self.stream.write(self.redact(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return _isatty(self.stream)

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
