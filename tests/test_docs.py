"""docs/diagnosis.md stays in step with the code: every state, reason and plan step has its section,
and every demo job the doc quotes exists in the demo and shows what its section describes."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from charfix.demo.sample import build_sample
from charfix.facts import read_request
from charfix.models import Action, Job, ReasonCode, State

DOC = Path(__file__).resolve().parents[1] / "docs" / "diagnosis.md"
DEMO_COMMAND = re.compile(r"charfix --demo diagnose ([0-9a-f]{8})\b")


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sample():
    return build_sample(datetime.now(timezone.utc))


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
