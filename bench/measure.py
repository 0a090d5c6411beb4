"""Timing a command: wall time and the peak memory of that one process, medians, and printing."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dataset import BENCH, OUT

VENV_BIN = BENCH.parent / ".venv" / "bin"
CHARFIX = str(VENV_BIN / "charfix")
PYTHON = str(VENV_BIN / "python")
TIME = "/usr/bin/time"  # GNU time


def environment() -> dict[str, str]:
    """No user config file, no colour, nothing that differs between runs."""
    env = dict(os.environ)
    env.update(NO_COLOR="1", XDG_CONFIG_HOME=str(OUT / "xdg-config"), XDG_STATE_HOME=str(OUT / "xdg-state"),
               PYTHONWARNINGS="ignore")
    for name in ("CHARFIX_CONFIG", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL", "CHARFIX_STORAGE_DIR"):
        env.pop(name, None)  # each run says which backends it uses
    return env


@dataclass
class Run:
    seconds: float
    peak_mb: float
    returncode: int
    started: float  # time.time() just before the start, for the SQL baseline's `now`


def run(argv: list[str], *, stdout: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run a command to completion and read its peak RSS from GNU time (`%M`).

    Not from wait4() on our own child: Linux counts the RSS of the forking parent (this script, which
    has parsed large JSON outputs by then) into the child's maximum, so it would over-report.
    /usr/bin/time is a tiny parent, so its child's figure is the command's own."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    err = open(OUT / "last-stderr.txt", "wb")
    peak_file = OUT / "last-peak.txt"
    try:
        started = time.time()
        t0 = time.perf_counter()
        process = subprocess.run([TIME, "-f", "%M", "-o", str(peak_file), *argv], stdout=out, stderr=err,
                                 env={**environment(), **(env or {})}, cwd=OUT)
        seconds = time.perf_counter() - t0
    finally:
        if stdout:
            out.close()
        err.close()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(argv)} failed ({process.returncode}): "
                         f"{(OUT / 'last-stderr.txt').read_text()[-2000:]}")
    peak_kb = int(peak_file.read_text().split()[-1])
    return Run(seconds=seconds, peak_mb=peak_kb / 1024, returncode=process.returncode, started=started)


def median(values) -> float:
    return statistics.median(values)


@dataclass
class Report:
    """Lines printed as they are measured, and kept for the results file."""

    lines: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def figure(self, label: str, value: str, baseline: str = "", verdict: str = "") -> None:
        self.say(f"  {label:<44} {value:<26} {baseline:<34} {verdict}")

    def command(self, text: str) -> None:
        self.say(f"    $ {text}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def shown_command(argv: list[str]) -> str:
    return shlex.join(argv).replace(str(BENCH.parent) + "/", "")
