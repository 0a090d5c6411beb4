"""The command line as people type it, made into the one Click parses (docs/commands.md, "Global
options"):
- global options (`--demo`, `--db-url`, ...) may come after the command: they are moved in front;
- `--json` takes an optional field list: `--json job_id,state` picks fields, a bare `--json` (or one
  followed by anything else, such as a job id) prints them all.
"""

from __future__ import annotations

import re

GLOBAL_FLAGS = {"--demo", "--debug"}
GLOBAL_VALUES = {"--db-url", "--storage-dir", "--config"}
# Every command option that takes a value: what follows one of them is its value, never moved.
# tests/test_argv.py checks this list against the commands themselves.
COMMAND_VALUES = {"--since", "--user", "--state", "--reason", "--stuck-after", "--link-window", "--limit",
                  "--operator", "--audit-log", "--character", "--max", "--concurrency", "--jq", "--metrics-file",
                  "--job"}
FIELDS = r"^[a-z_]+(,[a-z_]+)*$"
HEX = r"^[0-9a-f-]+$"


def normalize(argv: list[str]) -> list[str]:
    """Global options first (in the order given), then the rest as typed."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name = token.split("=", 1)[0]
        if token == "--":
            rest += argv[index:]
            break
        if token in GLOBAL_FLAGS:
            front.append(token)
        elif name in GLOBAL_VALUES:
            taken = 1 if "=" in token else 2
            front += argv[index:index + taken]
            index += taken - 1
        elif token == "--json":
            following = argv[index + 1] if index + 1 < len(argv) else None
            if following is not None and _is_field_list(following):
                rest.append(f"--json={following}")
                index += 1
            else:
                rest.append("--json=")
        elif token in COMMAND_VALUES:
            rest += argv[index:index + 2]
            index += 1
        else:
            rest.append(token)
        index += 1
    return front + rest


def _is_field_list(token: str) -> bool:
    # A job id prefix is hex (never a field name: every field has a letter past f).
    return bool(re.match(FIELDS, token)) and not re.match(HEX, token)
