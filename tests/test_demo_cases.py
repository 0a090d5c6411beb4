"""Every demo case diagnosed through the real repository and storage, on both user_library shapes."""

from __future__ import annotations

import pytest

from charfix.diagnosis import Rules
from charfix.models import ReasonCode
from charfix.repository.base import JobQuery
from charfix.repository.postgres import PostgresRepository
from charfix.backends import Backends
from charfix.queries.scan import scan
from charfix.storage.local import LocalStorage


def diagnose_all(seeded, *, page_size=500):
    repo = PostgresRepository.connect(seeded.db_url)
    backends = Backends(repository=repo, storage=LocalStorage(seeded.storage))
    since = seeded.now.replace(year=seeded.now.year - 1)
    found = {d.job_id: d for d in scan(backends, JobQuery(since=since), Rules(now=seeded.now), page_size=page_size)}
    repo.close()
    return found, repo


@pytest.mark.parametrize("shape", ["seeded", "seeded_old"])
def test_every_demo_case_gets_its_expected_diagnosis(shape, request):
    seeded = request.getfixturevalue(shape)
    found, _ = diagnose_all(seeded)
    for case in seeded.sample.cases:
        diagnosis = found[case.job_id]
        assert (case.name, diagnosis.state.value, diagnosis.codes) == (case.name, case.state, case.reasons)


def test_every_reason_code_appears_in_the_demo(seeded):
    seen = {code for case in seeded.sample.cases for code in case.reasons}
    assert seen == {code.value for code in ReasonCode}


def test_non_portrait_jobs_are_not_selected(seeded):
    found, _ = diagnose_all(seeded)
    assert len(found) == len(seeded.sample.cases)


def test_queries_per_page_are_constant(seeded):
    _, small_pages = diagnose_all(seeded, page_size=5)
    _, one_page = diagnose_all(seeded, page_size=500)
    jobs = sorted(seeded.sample.jobs, key=lambda j: (j["created_at"], str(j["id"])))
    portrait = [j for j in jobs if isinstance(j["metadata"], dict) and "character_portrait" in
                (j["metadata"].get("destination"), j["metadata"].get("source"))]
    pages = [portrait[i:i + 5] for i in range(0, len(portrait), 5)]
    if len(portrait) % 5 == 0:
        pages.append([])  # a full last page makes the scan ask once more, and find nothing

    def cost(page) -> int:
        """jobs + assets + library rows + characters, and one for the drafts of name-only jobs."""
        if not page:
            return 1
        name_only = any("character_id" not in j["metadata"] and
                        ({"characterName", "character_name"} & set(j["metadata"])) for j in page)
        return 4 + name_only

    # One query reads the schema first.
    assert one_page.queries == 1 + cost(portrait)
    assert small_pages.queries == 1 + sum(cost(page) for page in pages)
