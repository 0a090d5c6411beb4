"""The terminal the command runs in: one object carrying stdout, stderr and whether a person is there.

Tests swap it to capture output; commands never print except through it."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from charfix.config import mask_credentials
from charfix.ui.safe import json_text, terminal_markup, terminal_text

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 4096


class PipeClosed(Exception):
    """The reader of stdout went away (`| head`). Not an OSError on purpose: Click turns a broken
    pipe into exit 1, and app.main exits quietly with 0 instead."""


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    secrets: list[str] = field(default_factory=list)
    # How a suggested command starts: `charfix` plus the global options this run needed (app.py).
    command_prefix: str = "charfix"

    @cached_property
    def out(self) -> Console:
        """Built on first use: `charfix --help` never needs Rich's console (start-up time)."""
        from rich.console import Console

        no_color = bool(os.environ.get("NO_COLOR"))
        # Piped output is for grep and logs: lines never fold (and nothing piped pads to this width:
        # every piped rendering is plain lines, docs/commands.md "Piped output").
        width = None if _isatty(self.stdout) else PIPED_WIDTH
        return Console(file=_Redacting(self.stdout, self.redact).as_io(), no_color=no_color, highlight=False, width=width)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        # Errors are one line each, however narrow the terminal: they are read by people and by cron mail.
        return Console(file=_Redacting(self.stderr, self.redact_message).as_io(), no_color=bool(os.environ.get("NO_COLOR")),
                       highlight=False, stderr=True, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """Prompts only when a person is at both ends (as gh does)."""
        return _isatty(self.stdin) and _isatty(self.stdout)

    @property
    def stdout_is_terminal(self) -> bool:
        return _isatty(self.stdout)

    @property
    def stderr_is_terminal(self) -> bool:
        return _isatty(self.stderr)

    def print_json(self, data: Any) -> None:
        self._write(self.redact(json_text(data)) + "\n")
        self._flush()

    def print_json_lines(self, items) -> int:
        """A JSON array written item by item, so memory stays flat however long the list."""
        count = 0
        self._write("[")
        for item in items:
            text = json_text(item).replace("\n", "\n  ")
            self._write(("," if count else "") + "\n  " + self.redact(text))
            count += 1
        self._write("\n]\n" if count else "]\n")
        self._flush()
        return count

    def write_lines(self, lines) -> None:
        """Plain lines on stdout, as they are (no markup, no wrapping): for pipes and scripts."""
        for line in lines:
            self._write(self.redact(line) + "\n")
        self._flush()

    def _write(self, text: str) -> None:
        try:
            self.stdout.write(text)
        except BrokenPipeError:
            raise PipeClosed from None

    def _flush(self) -> None:
        try:
            self.stdout.flush()
        except BrokenPipeError:
            raise PipeClosed from None

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
        try:
            return self.stream.write(self.redact(text))
        except BrokenPipeError:
            raise PipeClosed from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise PipeClosed from None

    def isatty(self) -> bool:
        return _isatty(self.stream)

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")

    def as_io(self) -> IO[str]:
        # Rich annotates Console(file=) as IO[str] but calls only the methods above on it.
        return cast(IO[str], self)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
