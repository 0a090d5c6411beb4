"""The command docs stay in step with the code, as sqlite-utils does it: every registered command has
its section in docs/commands.md naming all its options, and its real `--help` has an example;
docs/repairs.md names every plan step and docs/cron.md every exit code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer.main

from charfix.app import app
from charfix.errors import ExitStatus
from charfix.models import Action
from conftest import charfix_executable

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)


def read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"{path} is missing"
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next `## ` heading; fails when the heading is missing."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    assert starts, f"docs/commands.md has no '{heading}' section"
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def long_names(command) -> list[str]:
    names = []
    for param in command.params:
        names += [n for n in (*param.opts, *param.secondary_opts) if n.startswith("--")]
    return names


def test_the_app_has_commands():
    # Guards the parametrized tests below: with no commands they would pass vacuously.
    assert len(COMMANDS) >= 7, COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_documented_with_all_its_options(name):
    text = section(read("commands.md"), f"## charfix {name}")
    options = long_names(ROOT.commands[name])
    missing = [option for option in options if f"`{option}`" not in text]
    assert missing == [], f"## charfix {name} does not mention {missing}"


def test_global_options_are_documented():
    text = section(read("commands.md"), "## Global options")
    # The table shows `--db-url URL`: the name, then its closing backtick or its value.
    missing = [option for option in long_names(ROOT) if not re.search(rf"`{re.escape(option)}[` ]", text)]
    assert long_names(ROOT), "the root command has no options"
    assert missing == [], f"## Global options does not mention {missing}"


def test_no_section_documents_a_command_that_does_not_exist():
    documented = {line[len("## charfix "):].strip() for line in read("commands.md").splitlines()
                  if line.startswith("## charfix ")}
    assert documented - set(COMMANDS) == set()


BROKEN_WORD = re.compile(r"[a-z]-\n")  # at click's 80 columns; an option name cut at its hyphen is not typable
PYTHON_TYPE = re.compile(r"<(str|int|float|path|bool|int range|float range|list\[\w+\])>")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_runs_through_the_console_script_and_has_an_example(name):
    done = subprocess.run([charfix_executable(), name, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Example" in done.stdout, f"charfix {name} --help shows no example"
    # Option placeholders name what to type (DURATION, STATE, N), never Python types (<str>, <list[str]>).
    options = [line for line in done.stdout.splitlines() if re.match(r"\s+(-\w, )?--", line)]
    assert not [line for line in options if PYTHON_TYPE.search(line)], done.stdout
    assert not BROKEN_WORD.search(done.stdout), done.stdout  # "--dry-" then "run" on the next line


def test_global_help_breaks_no_option_or_word_at_its_hyphen():
    done = subprocess.run([charfix_executable(), "--help"], capture_output=True, text=True, timeout=60)
    assert not BROKEN_WORD.search(done.stdout), done.stdout


def test_global_help_has_no_python_type_placeholders():
    done = subprocess.run([charfix_executable(), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not PYTHON_TYPE.search(done.stdout), done.stdout


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_repairs_doc_names_every_plan_step(action):
    assert f"`{action.value}`" in read("repairs.md")


@pytest.mark.parametrize("status", list(ExitStatus), ids=lambda s: s.name)
def test_cron_doc_explains_every_exit_code(status):
    rows = [line for line in read("cron.md").splitlines() if line.startswith(f"| {int(status)} |")]
    assert rows, f"docs/cron.md has no exit-code row for {int(status)}"
    assert f"`{status.name}`" in rows[0], f"the row for {int(status)} does not name {status.name}"
