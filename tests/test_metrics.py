"""`backfill-portraits --metrics-file`: the figures node_exporter's textfile collector reads, checked
with the Prometheus client library's own text-format parser."""

from __future__ import annotations

import json
import os
import time

from prometheus_client.parser import text_string_to_metric_families

from test_cli import args
from datetime import UTC


def parsed(path) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.type == "gauge", family.name
        assert family.documentation, f"{family.name} has no HELP"
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples[(f"charfix_backfill_{name}", tuple(sorted(labels.items())))]


def break_one_copy(seeded) -> str:
    """A folder stands where the library object must be written: that job's copy fails."""
    case = seeded.case("copy_failed")
    user = next(j["user_id"] for j in seeded.sample.jobs if j["id"] == case.job_id)
    dax = next(c["id"] for c in seeded.sample.characters if c["name"] == "Dax")
    (seeded.storage / "user-library" / str(user) / f"{case.job_id}_{dax}.png").mkdir(parents=True)
    return str(case.job_id)


def test_metrics_equal_the_runs_summary(cli, seeded, tmp_path):
    metrics = tmp_path / "prom" / "charfix.prom"
    metrics.parent.mkdir()
    before = time.time()
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--json", "--metrics-file", str(metrics)))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    samples = parsed(metrics)
    assert value(samples, "jobs", outcome="repaired") == summary["repaired"] > 0
    assert value(samples, "jobs", outcome="failed") == summary["failed"] == 0
    assert value(samples, "jobs", outcome="changed") == summary["changed_meanwhile"]
    assert value(samples, "jobs", outcome="skipped_locked") == summary["skipped_locked"]
    assert value(samples, "jobs", outcome="already_fine") == summary["already_fine"]
    assert value(samples, "jobs", outcome="not_attempted_over_max") == summary["not_attempted_over_max"]
    assert value(samples, "jobs_examined") == summary["examined"]
    for state, count in summary["skipped_by_state"].items():
        assert value(samples, "jobs_left", state=state) == count
    assert value(samples, "jobs_left", state="needs_review") > 0
    assert value(samples, "exit_code") == 0
    last_run = value(samples, "last_run_timestamp_seconds")
    assert before <= last_run <= time.time()
    assert value(samples, "last_success_timestamp_seconds") == last_run
    assert 0 <= value(samples, "duration_seconds") <= last_run - before
    # Written by rename: no temp file is left beside it, and the collector (another user) can read it.
    assert [p.name for p in metrics.parent.iterdir()] == ["charfix.prom"]
    assert metrics.stat().st_mode & 0o044 == 0o044


def test_a_failed_run_keeps_the_last_success_and_says_what_failed(cli, seeded, tmp_path):
    metrics = tmp_path / "charfix.prom"
    first = cli(*args(seeded, "backfill-portraits", "--yes", "--max", "1", "--metrics-file", str(metrics)))
    assert first.code == 0, first.stderr
    success = value(parsed(metrics), "last_success_timestamp_seconds")
    broken = break_one_copy(seeded)
    failed = cli(*args(seeded, "backfill-portraits", "--yes", "--json", "--metrics-file", str(metrics)))
    assert failed.code == 1
    assert [j["job_id"] for j in json.loads(failed.stdout)["jobs"] if j["outcome"] == "failed"] == [broken]
    samples = parsed(metrics)
    assert value(samples, "jobs", outcome="failed") == 1
    assert value(samples, "exit_code") == 1
    assert value(samples, "last_success_timestamp_seconds") == success
    assert value(samples, "last_run_timestamp_seconds") > success


def test_a_run_that_stops_records_its_exit_code_and_raises_the_same_error(tmp_path):
    from datetime import datetime

    import pytest

    from charfix.errors import BackendError
    from charfix.repair.metrics import recorded_run

    metrics = tmp_path / "charfix.prom"
    with pytest.raises(BackendError, match="connection lost"):
        with recorded_run(metrics, clock=lambda: datetime.now(UTC)):
            raise BackendError("connection lost")
    samples = parsed(metrics)
    assert value(samples, "exit_code") == 5
    assert value(samples, "last_success_timestamp_seconds") == 0  # never succeeded
    assert ("charfix_backfill_jobs_examined", ()) not in samples


def test_a_dry_run_writes_no_metrics(cli, seeded, tmp_path):
    metrics = tmp_path / "charfix.prom"
    assert cli(*args(seeded, "backfill-portraits", "--dry-run", "--metrics-file", str(metrics))).code == 0
    assert not metrics.exists()


def test_an_unwritable_metrics_directory_stops_the_run_before_any_repair(cli, seeded, tmp_path):
    from snapshots import snapshot

    before = snapshot(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--metrics-file", str(tmp_path / "nope" / "x.prom")))
    assert result.code == 3 and "--metrics-file" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_a_torn_previous_file_costs_only_the_last_success(tmp_path):
    from datetime import datetime

    from charfix.repair.metrics import Run, previous_success, render

    path = tmp_path / "charfix.prom"
    path.write_bytes(b"charfix_backfill_last_success_timestamp_seconds 17\xff")
    assert previous_success(path) is None
    path.write_text("charfix_backfill_last_success_timestamp_seconds 1700000000.5\n")
    assert previous_success(path) == 1700000000.5
    run = Run(started=datetime.fromtimestamp(1800000000, UTC), exit_code=5, previous_success=1700000000.5)
    path.write_text(render(run))
    samples = parsed(path)
    assert value(samples, "last_success_timestamp_seconds") == 1700000000.5
    assert ("charfix_backfill_jobs", (("outcome", "repaired"),)) not in samples  # no report, no job counts
    assert os.listdir(tmp_path) == ["charfix.prom"]
