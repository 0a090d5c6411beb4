"""`charfix --help` against a bare `python -c "import typer, rich"`: the start-up ratio (docs/performance.md).

Run: .venv/bin/python bench/startup.py [runs]
Each command runs `runs` times (default 15), alternating, and the median wall time of each is shown
with their ratio. The target is a ratio of 1.5 or less (issue: start-up and completion).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    charfix = shutil.which("charfix", path=str(Path(sys.executable).parent)) or "charfix"
    bare = [sys.executable, "-c", "import typer, rich"]
    helped = [charfix, "--help"]
    times: dict[str, list[float]] = {"bare": [], "help": []}
    for _ in range(runs):
        times["bare"].append(timed(bare))
        times["help"].append(timed(helped))
    bare_median, help_median = statistics.median(times["bare"]), statistics.median(times["help"])
    print(f"python -c 'import typer, rich'  median {bare_median * 1000:.0f} ms over {runs} runs")
    print(f"charfix --help                  median {help_median * 1000:.0f} ms over {runs} runs")
    print(f"ratio {help_median / bare_median:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
