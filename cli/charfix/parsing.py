"""Turning what a person types into values, with one clear error for anything else.

At the top, not in commands/: app.py, the commands and the read side (queries/selection.py,
queries/users.py) all parse, and queries/ must not import commands/ (tests/test_layers.py). A leaf:
it imports only errors.py."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, UTC
from pathlib import Path
from uuid import UUID

from charfix.errors import UsageError

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
MAX_DURATION = timedelta(days=3650)


# A shorter --stuck-after calls generations that are still running failed, and lets a repair race the
# application's own auto-save (docs/diagnosis.md, "State: in_progress"): a minute at least.
STUCK_AFTER_LIMITS = (timedelta(minutes=1), MAX_DURATION)
# A wider --link-window links a name-only job to a same-name character made days later, which is
# rarely the one the portrait was made for; one under a minute misses a person who presses Create
# a little after the portrait arrives (the incident's gap was 25 s). docs/commands.md.
LINK_WINDOW_LIMITS = (timedelta(minutes=1), timedelta(days=7))


def parse_duration(text: str, *, option: str, limits: tuple[timedelta, timedelta] = (timedelta(0), MAX_DURATION)
                   ) -> timedelta:
    """`90s`, `15m`, `36h`, `7d`, `2w`, within `limits` (inclusive)."""
    match = DURATION.match(text or "")
    if not match:
        raise UsageError(f"{option}: '{text}' is not a duration; use a number and a unit, like 15m, 36h, 7d or 2w")
    try:
        delta = timedelta(**{UNITS[match.group(2).lower()]: float(match.group(1))})
    except OverflowError:
        delta = MAX_DURATION + MAX_DURATION
    least, most = limits
    if delta > MAX_DURATION:
        raise UsageError(f"{option}: '{text}' is longer than ten years")
    if not least <= delta <= most:
        raise UsageError(f"{option}: '{text}' is out of range; use {_spoken(least)} to {_spoken(most)}")
    return delta


def _spoken(delta: timedelta) -> str:
    if delta.days >= 3650:
        return "ten years"
    count, unit = (delta.days, "day") if delta.days else (delta.seconds // 60, "minute")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def parse_path(text: str | None, *, option: str) -> Path | None:
    """A path typed by a person; an empty one is an error, never the current directory."""
    if text is None:
        return None
    if not text.strip():
        raise UsageError(f"{option}: the path is empty; give a directory, or leave the option out")
    return Path(text)


def parse_since(text: str, *, now: datetime) -> datetime:
    """A duration back from now, or a date or timestamp (UTC unless it says otherwise)."""
    if DURATION.match(text or ""):
        return now - parse_duration(text, option="--since")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since: '{text}' is neither a duration (7d, 36h) nor a date (2026-11-01 or 2026-11-01T17:00:00Z)"
        ) from None
    if isinstance(moment, date) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise UsageError(f"--since: {text} is in the future")
    return moment


JOB_PREFIX = re.compile(r"^[0-9a-f]{8}[0-9a-f-]{0,28}$")


def parse_job_ref(text: str) -> UUID | str:
    """A full job id, or a unique prefix of one (at least 8 hex digits, as list-stuck shows)."""
    cleaned = (text or "").strip().lower()
    if JOB_PREFIX.match(cleaned) and len(cleaned) < 36:
        return cleaned
    return parse_uuid(text)


def parse_user_ref(text: str) -> UUID | str:
    """A full user id, or a prefix of 8+ characters as list-stuck shows users."""
    cleaned = (text or "").strip().lower()
    layout = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    in_place = all((slot == "-") == (char == "-") for char, slot in zip(cleaned, layout, strict=False))
    if JOB_PREFIX.match(cleaned) and len(cleaned) < 36 and in_place:
        return cleaned
    try:
        return UUID(cleaned)
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UsageError(f"'{shown}' is not a valid user id: give the whole id or its first 8 or more "
                         "characters, as list-stuck shows them") from None


def parse_uuid(text: str, *, what: str = "job id") -> UUID:
    try:
        return UUID(text.strip())
    except (ValueError, AttributeError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UsageError(f"'{shown}' is not a valid {what} (expected a UUID like 69e0cd17-5b4e-4b8a-a8b2-1333caa61c85)") from None
