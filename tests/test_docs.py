"""docs/diagnosis.md stays in step with the code: every state, reason and plan step has its section,
and every demo job the doc quotes exists in the demo and shows what its section describes."""

from __future__ import annotations

import re
from datetime import datetime, UTC
from pathlib import Path

import pytest

from charfix.demo.sample import build_sample
from charfix.diagnosis.facts import read_request
from charfix.models import Action, Job, ReasonCode, State

DOC = Path(__file__).resolve().parents[1] / "docs" / "diagnosis.md"
DEMO_COMMAND = re.compile(r"charfix --demo diagnose ([0-9a-f]{8})\b")


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sample():
    return build_sample(datetime.now(UTC))


def headings(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.startswith("#")]


def section(text: str, heading: str) -> str:
    """The text under `heading`, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = next(i for i, line in enumerate(lines) if line.rstrip() == heading)
    body = []
    for line in lines[start + 1 :]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        body.append(line)
    return "\n".join(body)


def job_for(sample, prefix: str) -> dict:
    matches = [j for j in sample.jobs if str(j["id"]).startswith(prefix)]
    assert len(matches) == 1, f"demo job prefix {prefix} matches {len(matches)} demo jobs"
    return matches[0]


@pytest.mark.parametrize("code", list(ReasonCode), ids=lambda c: c.value)
def test_every_reason_code_has_its_heading(doc, code):
    assert f"### `{code.value}`" in headings(doc)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_every_state_has_its_heading(doc, state):
    assert f"## State: {state.value}" in headings(doc)


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_every_plan_step_has_its_heading(doc, action):
    assert f"### `{action.value}`" in headings(doc)


def test_no_section_names_something_the_code_does_not_have(doc):
    known = {f"### `{m.value}`" for m in (*ReasonCode, *Action)} | {f"## State: {s.value}" for s in State}
    quoted = {h for h in headings(doc) if h.startswith("### `") or h.startswith("## State:")}
    assert quoted - known == set()


def test_every_quoted_demo_job_exists(doc, sample):
    prefixes = DEMO_COMMAND.findall(doc)
    assert prefixes, "the doc quotes no `charfix --demo diagnose <prefix>` command"
    known = [str(j["id"]) for j in sample.jobs]
    missing = sorted({p for p in prefixes if not any(k.startswith(p) for k in known)})
    assert missing == []
    for prefix in set(prefixes):
        job_for(sample, prefix)


@pytest.mark.parametrize("code", list(ReasonCode), ids=lambda c: c.value)
def test_each_reason_section_quotes_a_demo_job_that_shows_it(doc, sample, code):
    prefixes = DEMO_COMMAND.findall(section(doc, f"### `{code.value}`"))
    assert prefixes, f"the section for {code.value} quotes no demo job"
    cases = {c.job_id: c for c in sample.cases}
    showing = [p for p in prefixes if code.value in cases[job_for(sample, p)["id"]].reasons]
    assert showing, f"none of {prefixes} is a demo case with reason {code.value}"


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_each_state_section_quotes_a_demo_job_in_that_state(doc, sample, state):
    prefixes = DEMO_COMMAND.findall(section(doc, f"## State: {state.value}"))
    assert prefixes, f"the section for {state.value} quotes no demo job"
    cases = {c.job_id: c for c in sample.cases}
    for prefix in prefixes:
        job = job_for(sample, prefix)
        if state == State.NOT_APPLICABLE:
            # Non-portrait jobs are not cases (list-stuck never selects them); check the metadata.
            assert job["id"] not in cases
            assert not read_request(Job(**job)).is_portrait
        else:
            assert cases[job["id"]].state == state.value


# -- the facts the code cites live in the project ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CITED_DOC = re.compile(r"(?<![\w/.])(docs/[\w-]+(?:/[\w-]+)*\.md)(?:,?\s+(?:section|§)\s*(\d+))?")
BARE_DOMAIN = re.compile(r"(?<![\w/])domain\.md")


def cited_docs() -> list[tuple[str, str, str | None]]:
    """(source file, cited doc path, cited section number) for every `docs/...md` a source cites."""
    found = []
    for source in sorted([*(ROOT / "cli").rglob("*.py"), *(ROOT / "cli").rglob("*.sql"), *(ROOT / "tests").rglob("*.py"),
                          *(ROOT / "bench").rglob("*.py"), *(ROOT / "bench").rglob("*.sql")]):
        text = source.read_text(encoding="utf-8")
        found += [(str(source.relative_to(ROOT)), m.group(1), m.group(2)) for m in CITED_DOC.finditer(text)]
    return found


def test_the_sources_cite_docs():
    assert {doc for _, doc, _ in cited_docs()} >= {"docs/domain.md", "docs/diagnosis.md"}


@pytest.mark.parametrize(("source", "cited", "number"), cited_docs(), ids=lambda v: str(v))
def test_every_cited_doc_and_section_exists(source, cited, number):
    path = ROOT / cited
    assert path.is_file(), f"{source} cites {cited}, which is not in the project"
    if number is not None:
        numbered = [h for h in headings(path.read_text(encoding="utf-8")) if re.match(rf"#+ {number}\.\s", h)]
        assert numbered, f"{source} cites {cited} section {number}, which has no heading '## {number}. ...'"


def test_no_source_cites_domain_md_outside_docs():
    for source in [*(ROOT / "cli").rglob("*.py"), *(ROOT / "cli").rglob("*.sql"), *(ROOT / "tests").rglob("*.py"),
                   *(ROOT / "bench").rglob("*.py"), *(ROOT / "bench").rglob("*.sql")]:
        for line in source.read_text(encoding="utf-8").splitlines():
            assert not (BARE_DOMAIN.search(line) and "docs/domain.md" not in line), f"{source}: {line.strip()}"


def test_the_readme_lists_the_domain_doc():
    assert "(docs/domain.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
