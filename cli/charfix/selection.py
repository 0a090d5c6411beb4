"""Which diagnosed jobs a command acts on: shared by `list-stuck` and `backfill-portraits`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from uuid import UUID

from charfix.diagnosis import Rules
from charfix.models import Diagnosis, State
from charfix.parsing import LINK_WINDOW_LIMITS, STUCK_AFTER_LIMITS, parse_duration, parse_since, parse_uuid
from charfix.repository.base import Backlog, JobQuery
from charfix.scan import Backends, scan
from charfix.errors import UsageError


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

    def wants(self, diagnosis: Diagnosis) -> bool:
        if self.every_state:
            return True
        if self.states:
            return diagnosis.state in self.states
        return needs_attention(diagnosis)


def build_selection(
    *, now: datetime, since: str, user: str | None, states: list[str] | None, every_state: bool,
    stuck_after: str, link_window: str, limit: int | None,
) -> Selection:
    chosen = set()
    for name in states or []:
        try:
            chosen.add(State(name))
        except ValueError:
            valid = ", ".join(s.value for s in State)
            raise UsageError(f"--state: '{name}' is not a state; choose from {valid}") from None
    if chosen and every_state:
        raise UsageError("--state and --all contradict each other; use one")
    user_id: UUID | None = parse_uuid(user, what="user id") if user is not None else None
    rules = build_rules(now=now, stuck_after=stuck_after, link_window=link_window)
    query = JobQuery(since=parse_since(since, now=now), user_id=user_id)
    return Selection(query=query, rules=rules, states=frozenset(chosen), every_state=every_state, limit=limit)


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


def selected(backends: Backends, selection: Selection, tally: Tally) -> Iterator[Diagnosis]:
    """Stream the wanted diagnoses, counting everything examined in `tally`."""
    for diagnosis in scan(backends, selection.query, selection.rules):
        tally.examined += 1
        tally.by_state[diagnosis.state] += 1
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
    start, oldest = (moment.astimezone(timezone.utc) for moment in (since, backlog.oldest))
    return (f"The window (jobs created since {start:%Y-%m-%d %H:%M} UTC) hides {backlog.count} older portrait "
            f"job(s) still queued/processing, the oldest from {oldest:%Y-%m-%d}; run with "
            f"--since {since_to_show(backlog, now)} to see them.")
