"""Repairs against the real embedded Postgres and a storage folder, through the library calls."""

from __future__ import annotations


import pytest

from charfix.audit import log as audit
from charfix.audit.log import AuditLog
from charfix.demo.sample import MALLORY
from charfix.diagnosis import Rules
from charfix.errors import RefusedError
from charfix.models import Action, State
from charfix.repair.job import Outcome, RepairOptions, repair_job
from charfix.repository.postgres import PostgresRepository
from charfix.backends import Backends
from charfix.queries.scan import diagnose_ids
from charfix.repair.operations import complete_job, link_character
from charfix.storage.local import LocalStorage
from snapshots import snapshot

# The repairable demo cases and the plan each needs: together they use every save step.
REPAIRABLE = {
    "incident": ["complete_job", "link_character", "copy_object", "insert_library_row", "update_character_image"],
    "copy_failed": ["copy_object", "insert_library_row", "update_character_image"],
    "row_failed": ["insert_library_row", "update_character_image"],
    "character_not_updated": ["update_character_image"],
    "generic_row": ["link_character", "upgrade_library_row", "update_character_image"],
    "source_only": ["copy_object", "insert_library_row", "update_character_image"],
    "cleaned_up": ["complete_job", "copy_object", "insert_library_row", "update_character_image"],
    "odd_name": ["complete_job", "link_character", "copy_object", "insert_library_row", "update_character_image"],
}


@pytest.fixture
def backends(seeded):
    repo = PostgresRepository.connect(seeded.db_url)
    yield Backends(repository=repo, storage=LocalStorage(seeded.storage))
    repo.close()


def audit_log(tmp_path, name="audit.jsonl") -> AuditLog:
    return AuditLog(path=tmp_path / name, operator="tester", command="test").open()


def audit_lines(tmp_path, name="audit.jsonl") -> list[dict]:
    """The writes the log records as made (docs/repairs.md: done lines, and committed pending lines)."""
    path = tmp_path / name
    return audit.writes(audit.read(path)) if path.exists() else []


def test_the_repairable_cases_cover_every_save_step():
    used = {step for steps in REPAIRABLE.values() for step in steps}
    assert used == {a.value for a in Action} - {"mark_failed"}


@pytest.mark.parametrize("name", sorted(REPAIRABLE))
def test_repairing_a_repairable_case_leaves_it_saved(name, seeded, backends, tmp_path):
    job = seeded.case(name).job_id
    rules = Rules(now=seeded.now)
    audit = audit_log(tmp_path)
    result = repair_job(backends, job, RepairOptions(rules=rules), audit)
    assert result.outcome == Outcome.REPAIRED, result.message
    assert [s.action.value for s in result.steps] == REPAIRABLE[name]
    after = diagnose_ids(backends, [job], rules)[0]
    assert (after.state, after.plan) == (State.SAVED, [])
    assert {line["step"] for line in audit_lines(tmp_path)} == set(REPAIRABLE[name])
    again = repair_job(backends, job, RepairOptions(rules=rules), audit)
    assert again.outcome == Outcome.ALREADY_FINE
    assert len(audit_lines(tmp_path)) == len(REPAIRABLE[name])


def test_the_incident_is_repaired_as_the_characters_tab_needs_it(seeded, backends, tmp_path):
    job = seeded.case("incident").job_id
    repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), audit_log(tmp_path))
    with seeded.connect() as conn:
        status, completed_at, asset_created, meta = conn.execute(
            "select j.status, j.completed_at, a.created_at, j.metadata from jobs j "
            "join workspace_assets a on a.job_id = j.id where j.id = %s", (job,)).fetchone()
        row = conn.execute("select storage_path, tags, content_category, roleplay_metadata, character_id, output_type "
                           "from user_library where roleplay_metadata->>'job_id' = %s", (str(job),)).fetchone()
        image = conn.execute("select image_url, reference_image_url from characters where name = 'Mandy'").fetchone()
    assert (status, completed_at) == ("completed", asset_created)
    assert meta["characterName"] == "Mandy" and meta["character_id"] == row[3]["character_id"]
    assert row[1] == ["character", "portrait"] and row[2] == "character" and row[5] == "portrait"
    assert row[3]["type"] == "character_portrait" and row[3]["character_name"] == "Mandy"
    assert str(row[4]) == row[3]["character_id"]
    user = next(j["user_id"] for j in seeded.sample.jobs if j["id"] == job)
    assert row[0] == f"{user}/{job}_{row[3]['character_id']}.png"
    assert image == (f"user-library/{row[0]}", f"user-library/{row[0]}")
    assert (seeded.storage / "user-library" / row[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_older_library_shape_is_repaired_without_the_newer_columns(seeded_old, tmp_path):
    repo = PostgresRepository.connect(seeded_old.db_url)
    backends = Backends(repository=repo, storage=LocalStorage(seeded_old.storage))
    result = repair_job(backends, seeded_old.case("incident").job_id, RepairOptions(rules=Rules(now=seeded_old.now)), None)
    assert result.outcome == Outcome.REPAIRED
    assert diagnose_ids(backends, [seeded_old.case("incident").job_id], Rules(now=seeded_old.now))[0].state == State.SAVED
    repo.close()


def test_needs_review_lost_and_in_progress_are_never_touched(seeded, backends, tmp_path):
    before = snapshot(seeded.db_url, seeded.storage)
    for case in seeded.sample.cases:
        if case.state in ("needs_review", "lost", "in_progress", "failed"):
            result = repair_job(backends, case.job_id, RepairOptions(rules=Rules(now=seeded.now)), audit_log(tmp_path))
            assert result.outcome == Outcome.SKIPPED, case.name
    assert snapshot(seeded.db_url, seeded.storage) == before
    assert audit_lines(tmp_path) == []


def test_a_seed_above_int4_does_not_break_the_repair_and_leaves_seed_locked_alone(seeded, backends):
    job = seeded.case("copy_failed").job_id
    result = repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), None)
    assert result.outcome == Outcome.REPAIRED
    with seeded.connect() as conn:
        seed_locked, = conn.execute("select c.seed_locked from characters c where c.name = 'Dax'").fetchone()
        row_seed, = conn.execute("select generation_seed from user_library where roleplay_metadata->>'job_id' = %s",
                                 (str(job),)).fetchone()
    assert seed_locked is None and row_seed == 3_000_000_000


def test_a_generic_row_is_upgraded_in_place_not_duplicated(seeded, backends):
    job = seeded.case("generic_row").job_id
    with seeded.connect() as conn:
        count_before, = conn.execute("select count(*) from user_library").fetchone()
    repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), None)
    with seeded.connect() as conn:
        count_after, = conn.execute("select count(*) from user_library").fetchone()
        tags, category = conn.execute("select tags, content_category from user_library where storage_path like %s",
                                      (f"%/{seeded.sample.assets[[a['job_id'] for a in seeded.sample.assets].index(job)]['id']}.png",)).fetchone()
    assert count_after == count_before
    assert (sorted(tags), category) == (["character", "portrait"], "character")


def test_an_image_the_user_chose_after_the_job_is_kept(seeded, backends):
    job = seeded.case("character_not_updated").job_id
    chosen = "user-library/someone-chose-this.png"
    with seeded.connect() as conn:
        conn.execute("update characters set image_url = %s where name = 'Orla'", (chosen,))
    diagnosis = diagnose_ids(backends, [job], Rules(now=seeded.now))[0]
    assert diagnosis.state == State.SAVED and any("keeps it" in note for note in diagnosis.notes)
    repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), None)
    with seeded.connect() as conn:
        assert conn.execute("select image_url from characters where name = 'Orla'").fetchone() == (chosen,)


def test_an_image_changed_between_diagnosis_and_write_is_not_overwritten(seeded, backends, monkeypatch):
    """The character update is conditional on the image as read inside the lock; the job's writes roll
    back and it is diagnosed again."""
    job = seeded.case("character_not_updated").job_id
    from charfix.repository import writes

    original = writes.PostgresWrites.update_character_image

    def user_changes_it_first(self, character, **kwargs):
        with seeded.connect() as conn:
            conn.execute("update characters set image_url = 'user-library/chosen-meanwhile.png' where id = %s",
                         (character.id,))
        return original(self, character, **kwargs)

    monkeypatch.setattr(writes.PostgresWrites, "update_character_image", user_changes_it_first)
    result = repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), None)
    assert result.outcome == Outcome.CHANGED and "changed since it was read" in result.message
    assert "diagnosed again" in result.message
    with seeded.connect() as conn:
        assert conn.execute("select image_url from characters where name = 'Orla'").fetchone() == (
            "user-library/chosen-meanwhile.png",)


def test_link_character_refuses_another_users_character(seeded, backends):
    job = seeded.case("ambiguous").job_id
    theirs = next(c["id"] for c in seeded.sample.characters if c["user_id"] == MALLORY)
    before = snapshot(seeded.db_url, seeded.storage)
    with pytest.raises(RefusedError, match="another user"):
        link_character(backends, job, theirs, rules=Rules(now=seeded.now))
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_link_character_with_a_persons_choice_saves_an_ambiguous_job(seeded, backends, tmp_path):
    job = seeded.case("ambiguous").job_id
    second_luna = seeded.sample.cases and [c for c in seeded.sample.characters if c["name"] == "Luna"][1]["id"]
    result = link_character(backends, job, second_luna, rules=Rules(now=seeded.now), audit=audit_log(tmp_path))
    assert result.outcome == Outcome.REPAIRED
    assert [s.action for s in result.steps][:2] == [Action.COMPLETE_JOB, Action.LINK_CHARACTER]
    after = diagnose_ids(backends, [job], Rules(now=seeded.now))[0]
    assert after.state == State.SAVED and after.character_id == second_luna


def test_complete_job_refuses_a_job_without_output_and_marks_it_failed_on_request(seeded, backends, tmp_path):
    job = seeded.case("no_output").job_id
    with pytest.raises(RefusedError, match="no output"):
        complete_job(backends, job, rules=Rules(now=seeded.now))
    result = complete_job(backends, job, rules=Rules(now=seeded.now), mark_failed=True, audit=audit_log(tmp_path))
    assert result.outcome == Outcome.REPAIRED and [s.action for s in result.steps] == [Action.MARK_FAILED]
    with seeded.connect() as conn:
        status, message = conn.execute("select status, error_message from jobs where id = %s", (job,)).fetchone()
    assert status == "failed" and message.startswith("charfix:")
    assert [line["step"] for line in audit_lines(tmp_path)] == ["mark_failed"]


def test_complete_job_no_save_only_fixes_the_status(seeded, backends):
    job = seeded.case("incident").job_id
    result = complete_job(backends, job, rules=Rules(now=seeded.now), save=False)
    assert [s.action for s in result.steps] == [Action.COMPLETE_JOB]
    after = diagnose_ids(backends, [job], Rules(now=seeded.now))[0]
    assert after.status == "completed" and after.state == State.REPAIRABLE


def test_complete_job_on_needs_review_completes_only(seeded, backends):
    job = seeded.case("ambiguous").job_id
    result = complete_job(backends, job, rules=Rules(now=seeded.now))
    assert result.outcome == Outcome.REPAIRED and [s.action for s in result.steps] == [Action.COMPLETE_JOB]
    after = diagnose_ids(backends, [job], Rules(now=seeded.now))[0]
    assert after.status == "completed" and after.state == State.NEEDS_REVIEW
    assert after.codes == ["character_id_missing", "character_ambiguous"]


def test_dry_run_writes_nothing(seeded, backends, tmp_path):
    before = snapshot(seeded.db_url, seeded.storage)
    result = repair_job(backends, seeded.case("incident").job_id, RepairOptions(rules=Rules(now=seeded.now), dry_run=True),
                        audit_log(tmp_path))
    assert result.outcome == Outcome.PLANNED and len(result.steps) == 5
    assert snapshot(seeded.db_url, seeded.storage) == before
    assert audit_lines(tmp_path) == []


def test_a_job_locked_by_another_run_is_skipped(seeded, backends):
    job = seeded.case("incident").job_id
    other = PostgresRepository.connect(seeded.db_url)
    with other.locked(job) as got:
        assert got
        result = repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), None)
    other.close()
    assert result.outcome == Outcome.SKIPPED and "another charfix run" in result.message


def test_link_character_writes_the_choice_on_a_completed_job(seeded, backends):
    """No complete_job step runs first here, so the link must be written from the job as stored."""
    job = seeded.case("not_found").job_id
    ghost = next(c["id"] for c in seeded.sample.characters if c["name"] == "ghost ")
    with seeded.connect() as conn:
        conn.execute("update jobs set status = 'completed' where id = %s", (job,))
    result = link_character(backends, job, ghost, rules=Rules(now=seeded.now))
    assert result.outcome == Outcome.REPAIRED and result.steps[0].action == Action.LINK_CHARACTER
    with seeded.connect() as conn:
        metadata, = conn.execute("select metadata from jobs where id = %s", (job,)).fetchone()
    assert metadata["character_id"] == str(ghost) and metadata["character_name"] == "Ghost"
    assert diagnose_ids(backends, [job], Rules(now=seeded.now))[0].state == State.SAVED


def test_link_character_refuses_to_rebind_a_job_that_names_a_character(seeded, backends):
    job = seeded.case("copy_failed").job_id
    other = next(c["id"] for c in seeded.sample.characters if c["name"] == "Vex")
    with pytest.raises(RefusedError, match="does not rebind"):
        link_character(backends, job, other, rules=Rules(now=seeded.now))


def _counting_reads(monkeypatch, names: tuple[str, ...]) -> dict[str, int]:
    """Every set of backends the commands build counts the calls of these repository read methods."""
    from charfix.backends import bootstrap

    calls = dict.fromkeys(names, 0)
    build = bootstrap.build_backends

    def counting(name, method):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return wrapper

    def counted(*args, **kwargs):
        backends = build(*args, **kwargs)
        for name in names:
            setattr(backends.repository, name, counting(name, getattr(backends.repository, name)))
        return backends

    monkeypatch.setattr(bootstrap, "build_backends", counted)
    return calls


def test_link_character_yes_reads_the_job_twice_and_checks_ownership_from_those_reads(seeded, tmp_path,
                                                                                       monkeypatch):
    """One `link-character --yes`: the job's facts are read once for the checked preview and once
    inside the job's lock; the ownership checks use those reads, not queries of their own."""
    import io

    from charfix.app import main
    from charfix.ui.environment import Environment

    calls = _counting_reads(monkeypatch, ("jobs_by_id", "assets_for", "characters_for"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    job = seeded.case("ambiguous").job_id
    second_luna = [c for c in seeded.sample.characters if c["name"] == "Luna"][1]["id"]
    err = io.StringIO()
    code = main(["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "link-character", str(job),
                 "--character", str(second_luna), "--yes", "--audit-log", str(tmp_path / "audit.jsonl")],
                env=Environment(stdout=io.StringIO(), stderr=err))
    assert code == 0, err.getvalue()
    assert calls == {"jobs_by_id": 2, "assets_for": 2, "characters_for": 2}
    repo = PostgresRepository.connect(seeded.db_url)
    after = diagnose_ids(Backends(repository=repo, storage=LocalStorage(seeded.storage)), [job], Rules(now=seeded.now))
    repo.close()
    assert after[0].state == State.SAVED and after[0].character_id == second_luna


def test_a_job_marked_failed_gets_the_time_of_the_injected_clock(seeded, backends, tmp_path):
    """The repairs write with one clock, injected as the diagnosis rules' is: no wall-clock time."""
    from datetime import UTC, datetime

    job = seeded.case("no_output").job_id
    fixed = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    result = complete_job(backends, job, rules=Rules(now=seeded.now), mark_failed=True, audit=audit_log(tmp_path),
                          now=lambda: fixed)
    assert result.outcome == Outcome.REPAIRED
    with seeded.connect() as conn:
        assert conn.execute("select status, completed_at from jobs where id = %s", (job,)).fetchone() == ("failed", fixed)
    [line] = audit_lines(tmp_path)
    assert datetime.fromisoformat(line["after"]["completed_at"]) == fixed


@pytest.mark.parametrize("command", ["complete-job", "repair"])
def test_a_job_that_changed_under_a_one_job_write_exits_1_whichever_command(seeded, tmp_path, monkeypatch, command):
    """README "Exit codes": what was asked did not happen, for `repair JOB --yes` as for `complete-job`."""
    import io

    from charfix.app import main
    from charfix.repair import job as repair
    from charfix.ui.environment import Environment

    job = seeded.case("incident").job_id
    original, done = repair.apply_step, []

    def someone_else_first(context, step):
        if not done:  # after charfix read the job under its lock, before its first write
            done.append(step.action)
            with seeded.connect() as conn:
                conn.execute("update characters set image_url = 'user-library/chosen-meanwhile.png' "
                             "where user_id = (select user_id from jobs where id = %s)", (job,))
        return original(context, step)

    monkeypatch.setattr(repair, "apply_step", someone_else_first)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    out, err = io.StringIO(), io.StringIO()
    code = main(["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), command, str(job), "--yes",
                 "--audit-log", str(tmp_path / "audit.jsonl")], env=Environment(stdout=out, stderr=err))
    assert done and "changed" in out.getvalue(), out.getvalue() + err.getvalue()
    assert code == 1, out.getvalue() + err.getvalue()
