"""README's ticket flow runs as written (against a fresh sample instead of the shared demo)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from test_cli import args

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## From a support ticket to an answer", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line.split("#", 1)[0].split(">", 1)[0])
        assert words[:2] == ["charfix", "--demo"], line
        commands.append(words[2:])
    return commands


def test_the_ticket_flow_in_the_readme_runs(cli, seeded):
    commands = tour_commands()
    assert [c[0] for c in commands] == ["user", "list-stuck", "diagnose", "report"]
    outputs = []
    for command in commands:
        result = cli(*args(seeded, *command))
        assert result.code == 0, (command, result.stderr)
        outputs.append(result.stdout)
    assert "provider URL: expires" in outputs[0]
    assert "69e0cd17" in outputs[1]
    assert outputs[3].startswith("# Portrait report: job `69e0cd17-")
