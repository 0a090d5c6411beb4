"""Which diagnosed jobs a command acts on: shared by `list-stuck` and `backfill-portraits`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from uuid import UUID

from charfix.diagnosis import Rules
from charfix.models import Diagnosis, State
from charfix.parsing import LINK_WINDOW_LIMITS, STUCK_AFTER_LIMITS, parse_duration, parse_since, parse_user_ref
from charfix.repository.base import Backlog, JobQuery
from charfix.backends import Backends
from charfix.queries.scan import scan
from charfix.errors import NotFoundError, UsageError


PROGRESS_EVERY = 250  # jobs between two progress updates: a redraw costs more than a diagnosis
ATTENTION = (State.REPAIRABLE, State.NEEDS_REVIEW, State.LOST)


def needs_attention(diagnosis: Diagnosis) -> bool:
    """Shown by default: what someone must act on, and failures whose status still claims otherwise."""
    if diagnosis.state in ATTENTION:
        return True
    return diagnosis.state == State.FAILED and diagnosis.status in ("queued", "processing")


@dataclass(frozen=True)
class Selection:
    query: JobQuery
    rules: Rules
    states: frozenset[State] = frozenset()  # empty: the default (needs attention)
    every_state: bool = False
    limit: int | None = None

    @property
    def shows_saved(self) -> bool:
        """Whether saved jobs are shown (their diagnoses needed whole), not only counted."""
        return self.every_state or State.SAVED in self.states

    def wants(self, diagnosis: Diagnosis) -> bool:
        if self.every_state:
            return True
        if self.states:
            return diagnosis.state in self.states
        return needs_attention(diagnosis)


def build_selection(
    *, now: datetime, since: str, user: str | None, states: list[str] | None, every_state: bool,
    stuck_after: str, link_window: str, limit: int | None, backends: Callable[[], Backends] | None = None,
) -> Selection:
    """`backends` (called only for a --user prefix) resolves a prefix to the one user it names."""
    chosen = set()
    for name in states or []:
        try:
            chosen.add(State(name))
        except ValueError:
            valid = ", ".join(s.value for s in State)
            raise UsageError(f"--state: '{name}' is not a state; choose from {valid}") from None
    if chosen and every_state:
        raise UsageError("--state and --all contradict each other; use one")
    user_id = resolve_user(parse_user_ref(user), backends) if user is not None else None
    rules = build_rules(now=now, stuck_after=stuck_after, link_window=link_window)
    query = JobQuery(since=parse_since(since, now=now), user_id=user_id)
    return Selection(query=query, rules=rules, states=frozenset(chosen), every_state=every_state, limit=limit)


def resolve_user(ref: UUID | str, backends: Callable[[], Backends] | None) -> UUID:
    """A full user id as given; a prefix looked up among the jobs' users, as job prefixes are."""
    if isinstance(ref, UUID):
        return ref
    if backends is None:
        raise UsageError(f"--user {ref}: give the full user id")
    found = backends().repository.user_ids_starting(ref, limit=2)
    if not found:
        raise NotFoundError(f"no job of a user whose id starts with {ref}")
    if len(found) > 1:
        raise UsageError(f"user id prefix {ref} is ambiguous ({found[0]}, {found[1]}, ...); give more of it")
    return found[0]


def build_rules(*, now: datetime, stuck_after: str = "15m", link_window: str = "1h") -> Rules:
    return Rules(
        now=now,
        stuck_after=parse_duration(stuck_after, option="--stuck-after", limits=STUCK_AFTER_LIMITS),
        link_window=parse_duration(link_window, option="--link-window", limits=LINK_WINDOW_LIMITS),
    )


@dataclass
class Tally:
    """What a pass over the jobs saw, by state, whether shown or not."""

    examined: int = 0
    by_state: Counter = field(default_factory=Counter)
    shown: int = 0


def selected(backends: Backends, selection: Selection, tally: Tally, *,
             progress: Callable[[Tally], None] | None = None,
             between_pages: Callable[[], bool] | None = None) -> Iterator[Diagnosis]:
    """Stream the wanted diagnoses, counting everything examined in `tally` (and telling `progress`
    every few hundred jobs). `between_pages`: see scan()."""
    for diagnosis in scan(backends, selection.query, selection.rules, skip_saved=not selection.shows_saved,
                          between_pages=between_pages):
        tally.examined += 1
        tally.by_state[diagnosis.state] += 1
        if progress is not None and tally.examined % PROGRESS_EVERY == 0:
            progress(tally)
        if selection.wants(diagnosis) and (selection.limit is None or tally.shown < selection.limit):
            tally.shown += 1
            yield diagnosis


def hidden_backlog(backends: Backends, selection: Selection) -> Backlog:
    """What the window hides: older portrait jobs that still say queued or processing (one query)."""
    return backends.repository.open_before(selection.query)


def since_to_show(backlog: Backlog, now: datetime) -> str | None:
    """The smallest `--since` in whole days that reaches the oldest hidden job."""
    if backlog.oldest is None:
        return None
    return f"{max(1, math.ceil((now - backlog.oldest) / timedelta(days=1)))}d"


def backlog_line(backlog: Backlog, *, since: datetime, now: datetime) -> str | None:
    """The sentence `list-stuck` adds when its window hides jobs that may need attention."""
    if not backlog.count or backlog.oldest is None:
        return None
    start, oldest = (moment.astimezone(UTC) for moment in (since, backlog.oldest))
    return (f"The window (jobs created since {start:%Y-%m-%d %H:%M} UTC) hides {backlog.count} older portrait "
            f"job(s) still queued/processing, the oldest from {oldest:%Y-%m-%d}; run with "
            f"--since {since_to_show(backlog, now)} to see them.")


def short_ids(backends: Backends, diagnoses: Sequence[Diagnosis]) -> dict[UUID, str]:
    """The job and user ids of `diagnoses` as people see them: each its shortest unique prefix among
    all the repository's ids (two queries, whatever the number of jobs)."""
    from charfix.queries.ids import shortest_prefixes

    jobs = [d.job_id for d in diagnoses]
    users = list(dict.fromkeys(d.user_id for d in diagnoses))
    if not jobs:
        return {}
    repository = backends.repository
    return {**shortest_prefixes(jobs, repository.ids_sharing_prefixes("id", jobs)),
            **shortest_prefixes(users, repository.ids_sharing_prefixes("user_id", users))}

