"""The operator's console on real pseudo-terminals (80 and 200 columns) and in pipes: ids people can
type back, layouts that fit, plain piped output, and write prompts that show what and where."""

from __future__ import annotations

import json
import re
import uuid

import pexpect
import pytest
from psycopg.types.json import Jsonb

from charfix.demo.cases import INCIDENT_JOB
from conftest import charfix_executable, spawn_on_pty
from snapshots import snapshot

BOXES = set("─│┃━┏┓┗┛┡┩└┘├┤┬┴┼╭╮╰╯═║")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def args(seeded, *rest):
    return ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *rest]


def screen(seeded, tmp_path, columns: int, *argv, env=None, answer=None) -> tuple[list[str], int]:
    """Run on a pseudo-terminal of `columns`; the lines as shown (colours and progress redraws gone)."""
    child = spawn_on_pty(tmp_path, list(argv), rows=60, columns=columns, env={"PAGER": "cat", **(env or {})})
    shown = ""
    if answer is not None:
        child.expect("y/N")
        shown = child.before + child.after
        child.send(answer)
    child.expect(pexpect.EOF)
    child.close()
    return visible(shown + child.before), child.exitstatus


def visible(raw: str) -> list[str]:
    lines = []
    for line in ANSI.sub("", raw).replace("\r\n", "\n").split("\n"):
        drawn = [part for part in line.split("\r") if part.strip()] or [""]
        lines.append(drawn[-1])  # a line redrawn in place (progress, the prompt): its last drawing
    return lines


def job_ids_in(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines if re.match(r"^[0-9a-f]{8}", line)]


@pytest.mark.parametrize("columns", [80, 200])
def test_list_stuck_fits_the_terminal_and_every_id_shown_is_accepted(seeded, tmp_path, cli, columns):
    lines, code = screen(seeded, tmp_path, columns, *args(seeded, "list-stuck"))
    assert code == 0
    assert max(len(line) for line in lines) <= columns
    ids = job_ids_in(lines)
    listed = json.loads(cli(*args(seeded, "list-stuck", "--json", "job_id")).stdout)
    assert len(ids) == len(listed) > 20 and all(len(i) >= 8 for i in ids)
    result = cli(*args(seeded, "diagnose", *ids, "--json", "job_id"))
    assert result.code == 0, result.stderr
    assert [row["job_id"][:len(i)] for row, i in zip(json.loads(result.stdout), ids, strict=True)] == ids
    text = "\n".join(lines)
    for whole in ("needs_review", "repairable", "character_image_not_updated", "40h"):
        assert whole in text  # states, reason codes and ages are never cut
    for cut in ("needs_revi\n", "processin\n", "unrecoverabl\n"):
        assert cut not in text + "\n"


def test_ids_that_share_eight_characters_are_shown_longer_and_accepted(seeded, tmp_path, cli):
    twin = uuid.UUID(str(INCIDENT_JOB)[:8] + "-0000-4000-8000-000000000000")
    with seeded.connect() as conn:
        conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) select %s, user_id, "
                     "job_type, 'processing', %s, created_at - interval '1 second' from jobs where id = %s",
                     (twin, Jsonb({"destination": "character_portrait"}), INCIDENT_JOB))
    lines, _ = screen(seeded, tmp_path, 80, *args(seeded, "list-stuck", "--all"))
    ids = job_ids_in(lines)
    incident = next(i for i in ids if str(INCIDENT_JOB).startswith(i))
    assert len(incident) > 8 and incident not in str(twin)
    assert cli(*args(seeded, "diagnose", incident, "--json", "job_id")).code == 0
    assert cli(*args(seeded, "diagnose", str(INCIDENT_JOB)[:8])).code == 2  # ambiguous: give more of it


@pytest.mark.parametrize("columns", [80, 200])
def test_diagnose_fits_the_terminal_and_shows_candidate_ids_whole(seeded, tmp_path, columns):
    job = seeded.case("ambiguous").job_id
    lines, code = screen(seeded, tmp_path, columns, *args(seeded, "diagnose", str(job)))
    assert code == 0 and max(len(line) for line in lines) <= columns
    lunas = [str(c["id"]) for c in seeded.sample.characters if c["name"] == "Luna"]
    assert all(any(luna in line for line in lines) for luna in lunas)


def test_piped_list_stuck_is_plain_with_every_reason_on_the_job_line(seeded, cli):
    result = cli(*args(seeded, "list-stuck"))
    assert result.code == 0 and not set(result.stdout) & BOXES
    ambiguous = str(seeded.case("ambiguous").job_id)
    line = next(line for line in result.stdout.splitlines() if ambiguous in line)
    assert "character_ambiguous" in line and "job_not_completed" in line


def test_piped_diagnose_has_no_box_and_no_padding(seeded, cli):
    result = cli(*args(seeded, "diagnose", str(INCIDENT_JOB)))
    assert result.code == 0 and not set(result.stdout) & BOXES
    assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_json_fields_and_jq(seeded, cli):
    picked = json.loads(cli(*args(seeded, "list-stuck", "--json", "job_id,state,reasons")).stdout)
    assert picked and all(set(row) == {"job_id", "state", "reasons"} for row in picked)
    whole = json.loads(cli(*args(seeded, "diagnose", "--json", str(INCIDENT_JOB))).stdout)
    assert whole[0]["job_id"] == str(INCIDENT_JOB) and "plan" in whole[0]  # a job id after --json is no field list
    lost = cli(*args(seeded, "list-stuck", "--jq", '.[] | select(.state == "lost") | .job_id'))
    assert lost.stdout.split() == [str(seeded.case("output_missing").job_id)]
    assert cli(*args(seeded, "list-stuck", "--json", "job_id,nope")).code == 2
    bad = cli(*args(seeded, "list-stuck", "--jq", ".[ | oops"))
    assert bad.code == 2 and bad.stderr.count("\n") <= 2


def test_global_options_after_the_command_and_conflicts(seeded, cli):
    after = cli("list-stuck", "--json", "job_id", *args(seeded))
    assert after.code == 0, after.stderr
    before = cli(*args(seeded), "list-stuck", "--json", "job_id")
    assert json.loads(after.stdout) == json.loads(before.stdout) and len(json.loads(after.stdout)) > 20
    conflict = cli("list-stuck", "--demo", "--db-url", seeded.db_url)
    assert conflict.code == 2 and conflict.stderr.count("\n") == 1 and "--demo" in conflict.stderr


def test_user_takes_the_prefix_it_is_shown_with(seeded, cli):
    user = str(seeded.sample.jobs[0]["user_id"])
    full = json.loads(cli(*args(seeded, "list-stuck", "--all", "--user", user, "--json", "job_id")).stdout)
    short = json.loads(cli(*args(seeded, "list-stuck", "--all", "--user", user[:8], "--json", "job_id")).stdout)
    assert full and short == full
    assert cli(*args(seeded, "list-stuck", "--user", "ffffffff")).code == 4


def test_a_closed_pipe_exits_quietly(seeded, tmp_path):
    import subprocess

    command = " ".join(f"'{a}'" for a in [charfix_executable(), *args(seeded, "diagnose", str(INCIDENT_JOB),
                                                                         str(seeded.case("ambiguous").job_id))])
    done = subprocess.run(["bash", "-c", f"{command} | head -1; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"})
    assert done.returncode in (0, 141) and done.stderr == ""


def test_long_lists_page_on_a_terminal_and_never_when_piped(seeded, tmp_path, cli):
    paged = tmp_path / "paged.txt"
    pager = {"PAGER": f"cat > {paged}"}
    lines, code = screen(seeded, tmp_path, 200, *args(seeded, "list-stuck", "--all"), env={**pager, "LINES": "10"})
    assert code == 0 and str(INCIDENT_JOB)[:8] in paged.read_text()
    paged.unlink()
    piped = cli(*args(seeded, "list-stuck", "--all"), env=pager)
    assert str(INCIDENT_JOB) in piped.stdout and not paged.exists()


def test_progress_shows_on_a_terminal_and_never_reaches_the_pipe(seeded, tmp_path):
    # stderr on a pseudo-terminal (a person watches), stdout into a pipe (a file behind `cat`).
    piped = tmp_path / "piped.txt"
    command = " ".join(f"'{a}'" for a in [charfix_executable(), *args(seeded, "list-stuck")])
    child = pexpect.spawn("bash", ["-c", f"{command} | cat > {piped}"], encoding="utf-8", timeout=90,
                          dimensions=(40, 120), env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm"})
    child.expect(pexpect.EOF)
    assert "examined" in child.before  # the summary, on the terminal's stderr
    text = piped.read_text()
    assert str(INCIDENT_JOB) in text and "examined" not in text and "page" not in text and "\x1b" not in text


def test_repair_prompt_shows_the_plan_and_the_target(seeded, tmp_path):
    before = snapshot(seeded.db_url, seeded.storage)
    child = spawn_on_pty(tmp_path, args(seeded, "repair", str(INCIDENT_JOB)), rows=60, columns=80)
    child.expect("What now")
    child.send("\r")
    child.expect("y/N")
    shown = visible(child.before)
    child.send("n")
    child.expect(pexpect.EOF)
    after_choice = "\n".join(shown)
    assert "target" in after_choice and all(f"{n}. would" in after_choice for n in range(1, 6))
    assert "5 step(s)" in after_choice.splitlines()[-1] + child.before
    assert snapshot(seeded.db_url, seeded.storage) == before


# -- write prompts: the plan and the target above the question, and "n" writes nothing ---------------

def prompt_screen(seeded, tmp_path, columns, *argv, label="production"):
    config = tmp_path / "config.toml"
    config.write_text(f'label = "{label}"\n')
    before = snapshot(seeded.db_url, seeded.storage)
    lines, code = screen(seeded, tmp_path, columns, "--config", str(config), *args(seeded, *argv), answer="n")
    assert snapshot(seeded.db_url, seeded.storage) == before
    question = next(i for i, line in enumerate(lines) if line.startswith("? "))
    return lines, question, code


@pytest.mark.parametrize("columns", [80, 200])
def test_complete_job_prompt_shows_the_plan_and_the_target(seeded, tmp_path, columns):
    lines, question, code = prompt_screen(seeded, tmp_path, columns, "complete-job", str(INCIDENT_JOB))
    above = "\n".join(lines[:question])
    assert "target" in above and "production" in above and seeded.db_url.split("dbname=")[1].split()[0] in above
    assert all(f"{n}. would" in above for n in range(1, 6))
    assert "5 step(s)" in "".join(lines[question - 1:question + 2])
    assert code == 0


def test_link_character_prompt_shows_the_new_plan_after_the_choice(seeded, tmp_path):
    job = seeded.case("ambiguous").job_id
    luna = next(str(c["id"]) for c in seeded.sample.characters if c["name"] == "Luna")
    lines, question, _ = prompt_screen(seeded, tmp_path, 80, "link-character", str(job), "--character", luna)
    above = "\n".join(lines[:question])
    steps = len(re.findall(r"^\s+\d+\. would", above, re.M))
    assert steps > 1 and "link_character" in above and "target" in above
    assert f"{steps} step(s)" in "".join(lines[question - 1:question + 2])


def test_backfill_scans_then_shows_counts_then_asks(seeded, tmp_path):
    lines, question, _ = prompt_screen(seeded, tmp_path, 80, "backfill-portraits")
    above = "\n".join(lines[:question])
    repairable = len([c for c in seeded.sample.cases if c.state == "repairable"])
    assert re.search(rf"would repair \(repairable\)\s+{repairable}", above)
    assert "left alone (needs_review)" in above and "step update_character_image" in above and "production" in above


def test_dry_run_prints_what_the_prompt_shows(seeded, tmp_path, cli):
    lines, question, _ = prompt_screen(seeded, tmp_path, 200, "complete-job", str(INCIDENT_JOB), label="x")
    dry = cli("--config", str(tmp_path / "config.toml"), *args(seeded, "complete-job", str(INCIDENT_JOB), "--dry-run"))

    def words(text: str) -> str:
        return " ".join(text.split())  # the terminal wraps long paths; the pipe does not

    assert words("\n".join(lines[:question])).endswith(words(dry.stdout))


def test_repair_walks_a_filtered_queue_and_resumes_after_decided_jobs(seeded, tmp_path):
    def walk():
        return spawn_on_pty(tmp_path, args(seeded, "repair", "--state", "lost", "--state", "failed"), rows=60,
                            columns=120, env={"PAGER": "cat"})

    child = walk()
    child.expect(r"1 of (\d+)")
    total = int(child.match.group(1))
    child.expect("What now")
    child.expect("mark the job failed")  # the first job offers more than skip: jobs a person can act on first
    child.send("\x1b[B\r")  # down once: skip
    child.expect(f"2 of {total}")
    child.expect("What now")
    child.send("\x1b[A\r")  # up from the first wraps to the last: quit
    child.expect(pexpect.EOF)
    child = walk()
    child.expect("1 job\\(s\\) decided in an earlier run")
    child.expect(f"1 of {total - 1}")
    child.expect("What now")
    child.send("\x1b[A\r")
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("columns", [80, 200])
def test_user_view_character_ids_fit_and_are_accepted_by_character(seeded, tmp_path, cli, columns):
    lines, code = screen(seeded, tmp_path, columns, *args(seeded, "user", "mandy@example.com"))
    assert code == 0 and max(len(line) for line in lines) <= columns
    rows = [line for line in lines if re.search(r"│ Mandy +│", line)]
    shown = re.search(r"[0-9a-f][0-9a-f-]{7,}", rows[0]).group()  # the character column, as printed
    found = cli(*args(seeded, "list-stuck", "--character", shown, "--json", "job_id"))
    assert found.code == 0 and "hint" not in found.stderr, found.stderr
    assert [row["job_id"] for row in json.loads(found.stdout)] == [str(INCIDENT_JOB)]
    linked = cli(*args(seeded, "link-character", str(INCIDENT_JOB), "--character", shown, "--dry-run"))
    assert linked.code == 0, linked.stderr


def test_piped_user_view_is_plain_one_line_per_item(seeded, cli):
    result = cli(*args(seeded, "user", "mandy@example.com"))
    assert result.code == 0 and not set(result.stdout) & BOXES
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    mandy = next(line for line in result.stdout.splitlines() if "\tMandy\t" in line).split("\t")
    assert uuid.UUID(mandy[0]) and len(mandy[0]) == 36  # whole, as --character takes it
    assert "provider URL: expires" in mandy and "https://v3.fal.media/files/penguin/demo-mandy.png" in mandy
    incident = next(line for line in result.stdout.splitlines() if line.startswith(str(INCIDENT_JOB)))
    assert "character_created_later" in incident


def test_ages_never_round_up_into_the_next_unit():
    from charfix.ui.render import short_duration

    # 1h59m59.6s was shown as "120m" beside "2h" for the same job elsewhere.
    assert [short_duration(s) for s in (119.6, 7199.6, 172_799.0, 90.0, 3600.0, 86_400.0)] == \
        ["2m", "2h", "2d", "90s", "60m", "24h"]


def test_piped_summary_is_plain_tab_separated_lines(seeded, cli):
    result = cli(*args(seeded, "list-stuck", "--summary"))
    assert result.code == 0 and not set(result.stdout) & (BOXES | set("▁▂▃▄▅▆▇█▏▎▍▌▋▊▉"))
    rows = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    counts = json.loads(cli(*args(seeded, "list-stuck", "--summary", "--json")).stdout)
    assert {(r[0], r[1]): int(r[2]) for r in rows if len(r) == 3 and r[1] == "all"} == \
        {(state, "all"): n for state, n in counts["by_state"].items() if n}
    days = [r for r in rows if len(r) == 2]
    assert days == [[d["date"], str(d["jobs"])] for d in counts["needing_attention_per_day"]]


@pytest.mark.parametrize("argv", [["list-stuck", "--bogus"], ["list-stuck", "--limit", "0"], ["diagnose"],
                                  ["no-such-command"]])
def test_a_usage_error_is_one_error_line_and_a_hint(seeded, cli, argv):
    # docs/commands.md: "Errors are one line on stderr (`error: ...`), sometimes followed by a `hint: ...` line."
    result = cli(*args(seeded, *argv))
    lines = result.stderr.splitlines()
    assert result.code == 2 and result.stdout == ""
    assert lines[0].startswith("error: ") and all(line.startswith("hint: ") for line in lines[1:]) and len(lines) <= 2, \
        result.stderr
