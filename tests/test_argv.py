"""The command line as people type it: global options anywhere, `--json` with or without fields, and
the short ids (no database needed)."""

from __future__ import annotations

import uuid

import typer.main

from charfix.app import app
from charfix.commands.argv import COMMAND_VALUES, GLOBAL_VALUES, normalize
from charfix.queries.ids import shortest_prefixes


def test_the_list_of_options_taking_a_value_matches_the_commands():
    root = typer.main.get_command(app)
    taking = set()
    for command in root.commands.values():
        for param in command.params:
            if param.param_type_name == "option" and not param.is_flag:
                taking |= {name for name in param.opts if name.startswith("--")}
    root_values = {n for p in root.params if p.param_type_name == "option" and not p.is_flag for n in p.opts}
    assert taking - {"--json"} == COMMAND_VALUES  # --json is rewritten, never passed with a loose value
    assert root_values == GLOBAL_VALUES


def test_global_options_move_in_front_and_values_stay_with_their_options():
    assert normalize(["list-stuck", "--demo"]) == ["--demo", "list-stuck"]
    assert normalize(["diagnose", "abcdef12", "--db-url", "postgres://x", "--debug"]) == [
        "--db-url", "postgres://x", "--debug", "diagnose", "abcdef12"]
    assert normalize(["repair", "--operator", "--demo"]) == ["repair", "--operator", "--demo"]
    assert normalize(["list-stuck", "--config=/c.toml"]) == ["--config=/c.toml", "list-stuck"]
    assert normalize(["list-stuck", "--", "--demo"]) == ["list-stuck", "--", "--demo"]


def test_json_takes_a_field_list_but_never_a_job_id():
    assert normalize(["list-stuck", "--json", "job_id,state"]) == ["list-stuck", "--json=job_id,state"]
    assert normalize(["diagnose", "--json", "deadbeef"]) == ["diagnose", "--json=", "deadbeef"]
    assert normalize(["list-stuck", "--json"]) == ["list-stuck", "--json="]


def test_shortest_prefixes_grow_past_a_shared_prefix_and_skip_dashes():
    a = uuid.UUID("0767ab69-b07a-566a-bf49-5ec0fd8ade6d")
    b = uuid.UUID("0767ab69-b07b-466a-bf49-5ec0fd8ade6d")
    c = uuid.UUID("12345678-0000-4000-8000-000000000000")
    shown = shortest_prefixes([a, c], known=[b])
    assert shown == {a: "0767ab69-b07a", c: "12345678"}
    twin = uuid.UUID("0767ab69-c000-4000-8000-000000000000")
    assert shortest_prefixes([a], known=[twin])[a] == "0767ab69-b"  # never ends on the dash
