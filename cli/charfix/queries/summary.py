"""`list-stuck --summary`: counts by state and reason, and jobs needing attention per day.

Answers "is this still happening, and since when?" at a glance: the per-day counts also show
whether new jobs keep failing after a fix was deployed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, UTC
from typing import Any

from charfix.models import State
from charfix.backends import Backends
from charfix.queries.scan import scan
from charfix.queries.selection import Selection, needs_attention

NO_REASON = "-"


@dataclass
class Summary:
    since: datetime
    until: datetime
    examined: int = 0
    by_state: Counter = field(default_factory=Counter)  # jobs the selection wants, by state
    by_reason: Counter = field(default_factory=Counter)  # (state, reason code): jobs with that reason
    attention_by_day: Counter = field(default_factory=Counter)  # UTC day: selected jobs needing attention

    def days(self) -> list[date]:
        """Every UTC day of the window, the empty ones included: a gap is an answer too."""
        first, last = _day(self.since), _day(self.until)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def per_day(self) -> list[tuple[date, int]]:
        return [(day, self.attention_by_day[day]) for day in self.days()]

    def to_json(self) -> dict[str, Any]:
        states = [s for s in State if self.by_state[s]]
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "examined": self.examined,
            "selected": sum(self.by_state.values()),
            "by_state": {s.value: self.by_state[s] for s in states},
            "by_state_and_reason": {
                s.value: {reason: count for (state, reason), count in sorted(self.by_reason.items()) if state == s}
                for s in states
            },
            "needing_attention_per_day": [{"date": day.isoformat(), "jobs": count} for day, count in self.per_day()],
        }


def summarize(backends: Backends, selection: Selection) -> Summary:
    """One pass over the window; `--limit` does not apply (a summary counts everything)."""
    rules = selection.rules
    result = Summary(since=selection.query.since, until=rules.now)
    # Saved jobs the catalogue proves saved are counted unread, unless the selection shows saved jobs.
    for diagnosis in scan(backends, selection.query, rules, skip_saved=not selection.shows_saved):
        result.examined += 1
        if not selection.wants(diagnosis):
            continue
        result.by_state[diagnosis.state] += 1
        for code in dict.fromkeys(diagnosis.codes) or [NO_REASON]:
            result.by_reason[(diagnosis.state, code)] += 1
        if needs_attention(diagnosis):
            result.attention_by_day[_day(diagnosis.created_at)] += 1
    return result


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
