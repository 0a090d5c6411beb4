"""Prompts on a real pseudo-terminal (pexpect): what a support person at the keyboard goes through."""

from __future__ import annotations

import json

import pexpect
import pytest

from charfix.audit import log as audit
from charfix.demo.cases import INCIDENT_JOB
from charfix.models import State
from conftest import spawn_on_pty

DOWN = "\x1b[B"


def spawn(seeded, tmp_path, *argv):
    return spawn_on_pty(tmp_path, ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *argv],
                        rows=50, columns=200, timeout=60)


def state_of(cli, seeded, job) -> dict:
    result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "diagnose", str(job), "--json")
    return json.loads(result.stdout)[0]


def test_repair_walks_one_job_and_confirms_the_write(seeded, tmp_path, cli):
    child = spawn(seeded, tmp_path, "repair", str(INCIDENT_JOB))
    child.expect("What now")
    child.send("\r")  # the first choice: apply the plan
    child.expect(r"Apply these 5 step\(s\)")
    child.send("y")
    child.expect("1 job\\(s\\) repaired")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert state_of(cli, seeded, INCIDENT_JOB)["state"] == State.SAVED.value
    lines = audit.writes(audit.read(tmp_path / "state" / "charfix" / "audit.jsonl"))
    assert len(lines) == 5 and lines[0]["command"] == "repair"


def test_declining_the_confirmation_writes_nothing(seeded, tmp_path, cli):
    child = spawn(seeded, tmp_path, "repair", str(INCIDENT_JOB))
    child.expect("What now")
    child.send("\r")
    child.expect(r"Apply these 5 step\(s\)")
    child.send("n")
    child.expect("0 job\\(s\\) repaired")
    child.expect(pexpect.EOF)
    assert state_of(cli, seeded, INCIDENT_JOB)["state"] == State.REPAIRABLE.value


def test_link_character_offers_the_candidates_and_links_the_chosen_one(seeded, tmp_path, cli):
    job = seeded.case("ambiguous").job_id
    lunas = [c["id"] for c in seeded.sample.characters if c["name"] == "Luna"]
    child = spawn(seeded, tmp_path, "link-character", str(job))
    child.expect("Which character is this portrait for")
    child.expect("none of these")
    child.send(DOWN)
    child.send("\r")  # the second Luna
    child.expect("Link the character")
    child.send("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    after = state_of(cli, seeded, job)
    assert after["state"] == "saved" and after["character_id"] == str(lunas[1])


@pytest.mark.parametrize("key", ["\x03"])
def test_ctrl_c_at_a_prompt_exits_130_without_writing(seeded, tmp_path, cli, key):
    child = spawn(seeded, tmp_path, "repair", str(INCIDENT_JOB))
    child.expect("What now")
    child.send(key)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert state_of(cli, seeded, INCIDENT_JOB)["state"] == State.REPAIRABLE.value
