"""`list-stuck --summary`: the counts agree with the per-job list, and the per-day bars fit the terminal."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, UTC

import pexpect
import pytest
from psycopg.types.json import Jsonb
from rich.cells import cell_len

from charfix.ui.summary_render import bars
from conftest import charfix_executable
from test_cli import args

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
ATTENTION = {"repairable", "needs_review", "lost"}


def day_of(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).date().isoformat()


def plant_old_stuck_jobs(seeded, days_ago: list[int]) -> None:
    """Jobs stuck in processing with no output, as the app leaves them: failed, status still claims otherwise."""
    now = datetime.now(UTC)
    with seeded.connect() as conn:
        for n, ago in enumerate(days_ago):
            conn.execute(
                "insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, %s, %s, %s, %s)",
                (uuid.uuid4(), uuid.uuid4(), "image_high", "processing",
                 Jsonb({"destination": "character_portrait", "characterName": f"Old {n}"}), now - timedelta(days=ago)),
            )


@pytest.mark.parametrize("selection", [[], ["--all"], ["--state", "needs_review", "--state", "saved"]],
                         ids=["default", "all", "states"])
def test_summary_counts_equal_the_per_job_states(cli, seeded, selection):
    plant_old_stuck_jobs(seeded, [3, 3, 5, 20])
    window = ["--since", "30d", *selection]
    jobs = json.loads(cli(*args(seeded, "list-stuck", "--json", *window)).stdout)
    result = cli(*args(seeded, "list-stuck", "--summary", "--json", *window))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert jobs and summary["selected"] == len(jobs)
    assert summary["by_state"] == dict(Counter(job["state"] for job in jobs))
    reasons = Counter((job["state"], code) for job in jobs for code in (set(job["reasons"]) or {"-"}))
    flat = {(state, reason): count for state, by_reason in summary["by_state_and_reason"].items()
            for reason, count in by_reason.items()}
    assert flat == dict(reasons)
    attention = Counter(day_of(job["created_at"]) for job in jobs
                        if job["state"] in ATTENTION or (job["state"] == "failed" and job["status"] in ("queued", "processing")))
    per_day = {row["date"]: row["jobs"] for row in summary["needing_attention_per_day"]}
    assert {d: n for d, n in per_day.items() if n} == dict(attention)
    assert len(per_day) == 31  # every day of the window, empty ones included
    if not selection:
        assert sum(per_day.values()) == len(jobs) and attention[day_of(jobs[0]["created_at"])] > 0


def test_summary_ignores_limit_and_honours_character(cli, seeded):
    full = json.loads(cli(*args(seeded, "list-stuck", "--summary", "--json")).stdout)
    limited = json.loads(cli(*args(seeded, "list-stuck", "--summary", "--json", "--limit", "1")).stdout)
    assert limited == {**full, "since": limited["since"], "until": limited["until"]}
    mandy = json.loads(cli(*args(seeded, "list-stuck", "--summary", "--json", "--character", "Mandy")).stdout)
    assert mandy["selected"] == 2 and mandy["by_state"] == {"repairable": 1, "failed": 1}


def test_the_histogram_fits_a_80_column_terminal(seeded, tmp_path):
    plant_old_stuck_jobs(seeded, [1, 2, 2, 9] + [40] * 30)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    for since in ("7d", "60d"):
        child = pexpect.spawn(charfix_executable(), [*args(seeded, "list-stuck", "--summary", "--since", since)],
                              env=env, encoding="utf-8", timeout=60, dimensions=(40, 80))
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        lines = [ANSI.sub("", line) for line in child.before.replace("\r\n", "\n").split("\n")]
        too_wide = [line for line in lines if cell_len(line) > 80]
        assert too_wide == [], too_wide
        bar_lines = [line for line in lines if re.match(r"^  (\w{3} \d\d-\d\d|\d\d-\d\d\.\.\d\d-\d\d) ", line)]
        assert 7 <= len(bar_lines) <= 31, bar_lines
        assert any("█" in line for line in bar_lines)
        if since == "60d":  # 61 days in buckets of two; the day with 30 stuck jobs has the longest bar
            longest = max(bar_lines, key=lambda line: line.count("█"))
            assert longest.rstrip().endswith(" 30")


@pytest.mark.parametrize("width", [20, 40, 79, 80, 120, 200])
def test_bars_never_exceed_the_width(width):
    start = date(2026, 1, 1)
    buckets = [(start + timedelta(days=n), start + timedelta(days=n), n * 37 % 11) for n in range(31)]
    for line in bars(buckets, width=width):
        assert cell_len(line.plain) <= max(width, 18)  # below 18 columns the labels alone do not fit
