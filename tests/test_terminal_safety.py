"""What reaches the operator's terminal (docs/reliability.md, "What reaches the terminal"): text an app
user wrote (a character name, an image URL, a storage key, job metadata) is shown with every control,
line-break and bidi character made visible, on both backends, in tables, stories, results, prompts and
error lines; `--json` keeps the exact value."""

from __future__ import annotations

import io
import json
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pexpect
import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.ui.environment import Environment
from charfix.ui.safe import json_text, terminal_text
from conftest import spawn_on_pty
from test_cli import args

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLEAR = "\x1b[2J\x1b[H"  # CSI: clear the screen, cursor home
LINK = "\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07"  # OSC 8: a hidden hyperlink
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: write the operator's clipboard
# A CR that would make `state needs_review` read as `state saved`, a line break, a right-to-left
# override, DEL, Rich markup.
FORGE = "\rstate saved          \n\u202egnp.\x7f[red]red[/red][link=https://evil.example]x[/link]"
NAME = f"Mal{CLEAR}{LINK}{CLIPBOARD}\x07{FORGE}"
# Unicode's own line and paragraph separators and NEL: in the URL, since Python counts them as the
# spaces that near-name matching ignores and Postgres does not.
URL = f"https://evil.example/{CLEAR}{CLIPBOARD}\u202eimg\u2028\u2029\x85.png"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def raw_controls(text: str) -> list[str]:
    """Characters a terminal acts on, other than the output's own line breaks."""
    return sorted({c for c in text if c != "\n" and (unicodedata.category(c) in ("Cc", "Cf") or c in "\u2028\u2029")})


@dataclass
class Planted:
    user: uuid.UUID
    review: uuid.UUID  # name only, two same-name characters created after it: a person chooses
    external: uuid.UUID  # output kept as the provider's URL
    repairable: uuid.UUID  # name only, one same-name character created after it


def plant(seeded) -> Planted:
    """Through the tables the app's users write: a name, a URL, a storage key, metadata."""
    user = uuid.uuid4()
    planted = Planted(user, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    created = seeded.now - timedelta(hours=1)
    metadata = {"destination": "character_portrait", "characterName": NAME, "prompt": NAME, "style": {"x": NAME}}
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        for job in (planted.review, planted.external, planted.repairable):
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values "
                         "(%s, %s, 'image', 'processing', %s, %s)", (job, user, Jsonb(metadata), created))
        conn.execute("update jobs set metadata = metadata || %s where id = %s",
                     (Jsonb({"characterName": NAME + " two"}), planted.review))
        conn.execute("update jobs set metadata = metadata || %s where id = %s",
                     (Jsonb({"characterName": NAME + " three"}), planted.repairable))
        for job, path in ((planted.review, f"{user}/{planted.review}_1.png"), (planted.external, URL),
                          (planted.repairable, f"{user}/{planted.repairable}_1.png")):
            conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                         "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                         "(%s, %s, 'image', %s, 4, 'image/png', 1, %s, %s, %s)",
                         (user, job, path, NAME, NAME, created + timedelta(seconds=5)))
        for n, name in enumerate((NAME + " two", NAME + " two", NAME + " three")):
            conn.execute("insert into characters (user_id, name, description, image_url, created_at) "
                         "values (%s, %s, %s, %s, %s)", (user, name, NAME, URL, created + timedelta(seconds=20 + n)))
    for job in (planted.review, planted.repairable):
        path = seeded.storage / "workspace-temp" / str(user) / f"{job}_1.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return planted


@pytest.fixture(params=["postgres", "supabase"])
def run(request, seeded, cli, key):
    """The console script on one backend: Postgres + storage folder, or Supabase REST + Storage."""
    if request.param == "postgres":
        return lambda *argv: cli(*args(seeded, *argv))
    srv = request.getfixturevalue("server")
    env = {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    return lambda *argv: cli(*argv, env=env)


def assert_shown_safely(text: str) -> None:
    assert raw_controls(text) == [], text
    assert "\\x1b]52;c;" in text  # the clipboard sequence is there to read, as text
    assert "[red]red[/red]" in text  # markup is text too, not a colour


def test_list_stuck_and_diagnose_show_planted_text_escaped_and_json_keeps_it_exact(seeded, run):
    planted = plant(seeded)
    table = run("list-stuck", "--all", "--user", str(planted.user))
    assert table.code == 0, table.stderr
    # Piped, list-stuck is one tab-separated line per job: the tabs are its own, seven fields a line.
    assert str(planted.review)[:8] in table.stdout and raw_controls(table.stdout.replace("\t", " ")) == []
    assert all(len(line.split("\t")) == 7 for line in table.stdout.splitlines())
    stories = {}
    for job in (planted.review, planted.external, planted.repairable):
        story = run("diagnose", str(job))
        assert story.code == 0, story.stderr
        assert_shown_safely(story.stdout)
        assert raw_controls(story.stderr) == []
        stories[job] = story.stdout
    review = stories[planted.review]
    assert "state needs_review" in review and "\\rstate saved" in review  # the CR cannot forge the state
    assert "\\u202egnp.\\x7f" in review
    assert "img\\u2028\\u2029\\x85.png" in stories[planted.external]

    exact = run("diagnose", str(planted.review), str(planted.external), "--json")
    assert exact.code == 0, exact.stderr
    review, external = json.loads(exact.stdout)
    assert review["character_name"] == NAME + " two"
    assert {c["name"] for c in review["candidates"]} == {NAME + " two"}
    assert {c["image_url"] for c in review["candidates"]} == {URL}
    assert any(URL in r["evidence"].values() for r in external["explanations"]), external["explanations"]
    # JSON spells the characters a terminal acts on as \u escapes; the values decode back exactly.
    assert raw_controls(exact.stdout) == []
    listed = run("list-stuck", "--all", "--user", str(planted.user), "--json")
    assert raw_controls(listed.stdout) == [] and NAME + " two" in {row["character_name"] for row in json.loads(listed.stdout)}


def test_repair_results_show_planted_text_escaped(seeded, run):
    planted = plant(seeded)
    done = run("repair", str(planted.repairable), "--yes")
    assert done.code == 0, done.stderr
    assert "1 job(s) repaired" in done.stdout
    assert_shown_safely(done.stdout)
    assert raw_controls(done.stderr) == []


def test_the_prompt_offers_planted_names_escaped(seeded, tmp_path):
    planted = plant(seeded)
    child = spawn_on_pty(tmp_path, ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage),
                                    "link-character", str(planted.review)], rows=50, columns=400, timeout=60)
    child.expect("Which character is this portrait for")
    story = child.before
    child.expect("none of these")
    prompt = child.before
    child.sendcontrol("c")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    # The prompt draws with escape sequences of its own, so look for the planted ones.
    for shown in (story, prompt):
        for planted_sequence in (CLEAR, "\x1b]8;;", "\x1b]52;", "\rstate saved", "\u202e", "\u2028", "\x85"):
            assert planted_sequence not in shown
    assert "\\x1b]52;c;" in story and "\\x1b]52;c;" in prompt
    assert "[red]red[/red]" in story


def test_error_and_warning_lines_are_one_line_and_terminal_safe():
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err)
    env.error(f"cannot copy workspace-temp/{NAME}", hint=f"look at {URL}")
    env.warn(f"odd key {NAME}")
    text = err.getvalue()
    assert raw_controls(text) == [] and text.count("\n") == 3
    assert "\\x1b]8;;https://evil.example/\\x07" in text and "[link=https://evil.example]" in text


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b", "\r", "\n", "\t", "\u2028",
                                  "\u2029", "\ufeff", "\U000e0041", *BIDI])
def test_every_terminal_control_is_made_visible(char):
    shown = terminal_text(f"a{char}b")
    assert shown.startswith("a\\") and shown.endswith("b") and raw_controls(shown) == []
    assert json.loads(json_text({"v": f"a{char}b"})) == {"v": f"a{char}b"}
    assert raw_controls(json_text({"v": f"a{char}b"}).replace("\n", "")) == []


def test_the_escaped_characters_are_exactly_the_controls_separators_and_format_characters():
    import sys

    from charfix.ui.safe import UNSAFE

    wanted = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs")}
    wanted = (wanted | {"\u2028", "\u2029"}) - {"\u200c", "\u200d"}
    matched = set(UNSAFE.findall("".join(map(chr, range(sys.maxunicode + 1)))))
    assert wanted <= matched, sorted(map(hex, map(ord, wanted - matched)))
    # Beyond: only characters this Python's Unicode does not know yet (format characters of newer ones).
    assert {unicodedata.category(c) for c in matched - wanted} <= {"Cn"}


def test_ordinary_text_is_shown_as_written():
    for text in ("Zoë “Z” O'Brien", "名前 🌸", "👩\u200d💻 coder", "a\\x1b literally", "שלום", ""):
        assert terminal_text(text) == text
    assert terminal_text(None) == ""
