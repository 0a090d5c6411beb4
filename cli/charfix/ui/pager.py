"""Long output through a pager on a terminal, as git does it: `$PAGER`, else `less -FRX` (quit when it
fits one screen, keep colours, leave the text on the screen). Never when piped."""

from __future__ import annotations

import os
import shutil
import subprocess

from rich.console import Console

DEFAULT_PAGER = "less -FRX"


def pager_command() -> str | None:
    """CHARFIX_PAGER, then PAGER, then less; None (print directly) for "", "cat", or no less."""
    command = os.environ.get("CHARFIX_PAGER", os.environ.get("PAGER"))
    if command is None:
        command = DEFAULT_PAGER if shutil.which("less") else ""
    return None if command.strip() in ("", "cat") else command


def print_paged(console: Console, *renderables, terminal: bool, redact=lambda text: text) -> None:
    """Print directly when piped, when it fits the screen, or when there is no pager."""
    command = pager_command() if terminal else None
    if command is None:
        for item in renderables:
            console.print(item)
        return
    with console.capture() as captured:
        for item in renderables:
            console.print(item)
    text = captured.get()
    if text.count("\n") < console.height:
        console.file.write(text)
        console.file.flush()
        return
    _run_pager(command, redact(text))


def _run_pager(command: str, text: str) -> None:
    # As git does: the pager is a shell command line ("less -R", "most -s"); LESS=FRX when unset.
    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env, text=True)
    assert process.stdin is not None  # stdin=PIPE
    try:
        process.stdin.write(text)
        process.stdin.close()
    except BrokenPipeError:  # the person quit the pager before the end: nothing is lost
        pass
    process.wait()
