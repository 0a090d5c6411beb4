"""The diagnosis under construction, and the rules it is judged by."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from charfix.models import PARAMS, Candidate, Character, JobFacts, Reason, ReasonCode, Step, StepParameters

ACTIONS = {params: action for action, params in PARAMS.items()}


@dataclass(frozen=True)
class Rules:
    now: datetime
    stuck_after: timedelta = timedelta(minutes=15)
    link_window: timedelta = timedelta(hours=1)


@dataclass
class Work:
    facts: JobFacts
    rules: Rules
    reasons: list[Reason] = field(default_factory=list)
    plan: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    character: Character | None = None
    lost: bool = False

    def because(self, code: ReasonCode, message: str, **evidence: Any) -> None:
        shown = {k: shown_value(v) for k, v in evidence.items() if v is not None}
        self.reasons.append(Reason(code=code, message=message, evidence=shown))

    def then(self, description: str, params: StepParameters) -> None:
        self.plan.append(Step(action=ACTIONS[type(params)], description=description, params=params))

    def has(self, *codes: ReasonCode) -> bool:
        return any(r.code in codes for r in self.reasons)


def shown_value(value: Any) -> Any:
    """Evidence is JSON-ready: timestamps and ids as strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
