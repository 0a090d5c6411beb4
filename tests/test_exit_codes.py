"""Every exit code in the README's table, each produced by the real console script."""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
import pytest

from charfix.demo.cases import INCIDENT_JOB
from conftest import spawn_on_pty
from snapshots import snapshot

README = Path(__file__).resolve().parent.parent / "README.md"
TESTED = {0, 1, 2, 3, 4, 5, 6, 7, 70, 130, 143}


def args(seeded, *rest):
    return ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *rest]


def test_every_code_in_the_readme_is_tested_here():
    table = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == TESTED


def test_0_success(cli, seeded):
    assert cli(*args(seeded, "list-stuck")).code == 0


def test_1_some_repairs_failed(cli, seeded):
    case = seeded.case("copy_failed")
    user = next(j["user_id"] for j in seeded.sample.jobs if j["id"] == case.job_id)
    dax = next(c["id"] for c in seeded.sample.characters if c["name"] == "Dax")
    (seeded.storage / "user-library" / str(user) / f"{case.job_id}_{dax}.png").mkdir(parents=True)
    assert cli(*args(seeded, "backfill-portraits", "--yes")).code == 1


@pytest.mark.parametrize("argv", [["diagnose", "not-a-uuid"], ["complete-job", str(INCIDENT_JOB)],
                                  ["list-stuck", "--demo"]])
def test_2_bad_input(cli, seeded, argv):
    result = cli(*args(seeded, *argv))
    assert result.code == 2 and result.stderr.count("\n") <= 2


def test_3_configuration(cli):
    assert cli("list-stuck").code == 3


def test_4_not_found(cli, seeded):
    assert cli(*args(seeded, "diagnose", "ffffffff")).code == 4


def test_5_backend(cli, tmp_path):
    url = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"
    assert cli("--db-url", url, "--storage-dir", str(tmp_path), "list-stuck").code == 5


def test_6_refused(cli, seeded):
    from charfix.demo.sample import MALLORY

    theirs = next(c["id"] for c in seeded.sample.characters if c["user_id"] == MALLORY)
    job = seeded.case("ambiguous").job_id
    assert cli(*args(seeded, "link-character", str(job), "--character", str(theirs), "--yes")).code == 6


def test_7_a_one_job_write_that_needs_a_person_writes_nothing(cli, seeded):
    before = snapshot(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "complete-job", str(seeded.case("cancelled").job_id), "--yes"))
    assert result.code == 7 and "skipped" in result.stdout
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_7_also_for_repair_of_one_job_with_yes(cli, seeded):
    before = snapshot(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "repair", str(seeded.case("cancelled").job_id), "--yes"))
    assert result.code == 7 and snapshot(seeded.db_url, seeded.storage) == before


def test_70_internal_error(seeded, monkeypatch):
    # A bug cannot be planted through the tables (that is the point); one is planted in the code.
    import io

    from charfix.app import main
    from charfix.commands import list_stuck
    from charfix.ui.environment import Environment

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(list_stuck, "list_stuck", broken)
    err = io.StringIO()
    code = main(args(seeded, "list-stuck"), env=Environment(stdout=io.StringIO(), stderr=err))
    assert code == 70 and "internal error: RuntimeError: a bug" in err.getvalue() and "Traceback" not in err.getvalue()


def test_130_interrupted(seeded, tmp_path):
    child = spawn_on_pty(tmp_path, args(seeded, "repair", str(INCIDENT_JOB)), rows=50, columns=120)
    child.expect("What now")
    child.send("\x03")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130


def test_143_stopped_by_sigterm(seeded, tmp_path):
    """cron's `timeout` and systemd stop a run with SIGTERM: the page in flight finishes, then 143."""
    import signal

    from test_cli import _bulk_incidents
    from test_signals import _once_writing, _start

    _bulk_incidents(seeded, 292)
    log = tmp_path / "audit.jsonl"
    proc = _start(args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log)), tmp_path)
    _once_writing(proc, log)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143 and "stopped by SIGTERM" in err, err
