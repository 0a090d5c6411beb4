"""Reading the audit trail back as runs and their writes, from whichever trail is in use: the JSONL
file (audit/log.py) or the database table `charfix.audit` (audit/database.py). `history` and
`undo` read through this one shape (docs/audit.md).

Everything read here is a claim: a file can be edited, and a table written by whoever can write it.
Readers parse defensively; `undo` checks every claim against the rows before it acts on it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from charfix.errors import ConfigError, NotFoundError, UsageError

RUN_PREFIX_MIN = 8  # as for job ids: 8 hex digits or more


@dataclass(frozen=True)
class RunInfo:
    """Who ran what, where: the run's first record."""

    run: str
    time: str | None = None
    operator: str | None = None
    command: str | None = None
    command_line: str | None = None
    database: str | None = None
    storage: str | None = None
    reverts: str | None = None  # an `undo` run: the run it reverted

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run, "time": self.time, "operator": self.operator, "command": self.command,
                "command_line": self.command_line, "database": self.database, "storage": self.storage,
                "reverts": self.reverts}


@dataclass(frozen=True)
class WriteRecord:
    """One write a run made (or, `landed=False`, announced and may have made: an object copy whose
    outcome was never recorded). `seq` orders the trail: a later write has a larger one."""

    run: str
    seq: int
    job_id: str
    step: str
    target: str
    before: Any
    after: Any
    time: str | None = None
    landed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run, "time": self.time, "job_id": self.job_id, "step": self.step,
                "target": self.target, "before": self.before, "after": self.after, "landed": self.landed}

    def changes(self) -> list[dict[str, Any]]:
        """What changed, field by field: before -> after (a row or object created has no before, one
        deleted no after)."""
        before, after = self.before, self.after
        if isinstance(before, dict) and isinstance(after, dict):
            keys = [k for k in after if before.get(k) != after.get(k)] + [k for k in before if k not in after]
            return [{"field": k, "before": before.get(k), "after": after.get(k)} for k in keys]
        return [{"field": None, "before": before, "after": after}]


@dataclass
class TrailView:
    runs: dict[str, RunInfo] = field(default_factory=dict)
    writes: list[WriteRecord] = field(default_factory=list)
    unreadable: int = 0


class Trail(Protocol):
    @property
    def name(self) -> str:
        """What `history` says: "database table charfix.audit" or "file PATH"."""
        ...

    def run_ids(self) -> list[str]: ...

    def read(self, *, run: str | None = None, job_ids: Iterable[str] = ()) -> TrailView:
        """The runs and writes of one run, or of runs that touched these jobs."""
        ...


# -- the JSONL file --------------------------------------------------------------------------------

CLOSING_TX = ("committed", "rolled_back", "unknown")
CLOSING_WRITE = ("done", "failed", "not_done")


@dataclass
class FileTrail:
    path: Path

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def run_ids(self) -> list[str]:
        view = _view(_lines(self.path)[0])
        return sorted(set(view.runs) | {w.run for w in view.writes})

    def read(self, *, run: str | None = None, job_ids: Iterable[str] = ()) -> TrailView:
        lines, unreadable = _lines(self.path)
        view = _view(lines)
        view.unreadable = unreadable
        return _select(view, run=run, job_ids=set(job_ids))


def _lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    import json

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path}: {exc.strerror or exc}",
                          hint="pass --audit-log PATH or set CHARFIX_AUDIT_LOG") from None
    found, unreadable = [], 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(value, dict) and value.get("v") == 2 and isinstance(value.get("phase"), str):
            found.append(value)
        else:
            unreadable += 1
    return found, unreadable


def _view(lines: list[dict[str, Any]]) -> TrailView:
    """Runs from `start` lines; writes: `done` (with its intent's before), `pending` lines whose
    transaction committed (a settled outcome counts), and object intents never closed (landed=False)."""
    view = TrailView()
    committed: set[str] = set()
    closed_writes: dict[str, dict[str, Any]] = {}
    for line in lines:
        phase = line["phase"]
        if phase == "committed":
            committed.add(str(line.get("tx")))
        elif phase in CLOSING_WRITE:
            closed_writes[str(line.get("write"))] = line
        elif phase == "start":
            run = str(line.get("run"))
            view.runs.setdefault(run, RunInfo(
                run=run, time=_text(line.get("time")), operator=_text(line.get("operator")),
                command=_text(line.get("command")), command_line=_text(line.get("command_line")),
                database=_text(line.get("database")), storage=_text(line.get("storage")),
                reverts=_text(line.get("reverts"))))
    for seq, line in enumerate(lines):
        phase = line["phase"]
        if phase == "pending" and str(line.get("tx")) in committed:
            record = _record(line, seq, line.get("after"), landed=True)
        elif phase == "intent":
            outcome = closed_writes.get(str(line.get("write")))
            if outcome is None:
                if line.get("step") not in ("copy_object",):
                    continue  # a row write over REST without its outcome: the next run settles it
                record = _record(line, seq, line.get("after"), landed=False)
            elif outcome["phase"] == "done":
                record = _record(line, seq, outcome.get("after", line.get("after")), landed=True)
            else:
                continue
        else:
            continue
        if record is not None:
            view.writes.append(record)
    return view


def _record(line: dict[str, Any], seq: int, after: Any, *, landed: bool) -> WriteRecord | None:
    run, job_id, step, target = (line.get(k) for k in ("run", "job_id", "step", "target"))
    if not (isinstance(run, str) and isinstance(job_id, str) and isinstance(step, str) and isinstance(target, str)):
        return None
    return WriteRecord(run=run, seq=seq, job_id=job_id, step=step, target=target, before=line.get("before"),
                       after=after, time=_text(line.get("time")), landed=landed)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _select(view: TrailView, *, run: str | None, job_ids: set[str]) -> TrailView:
    if run is not None:
        writes = [w for w in view.writes if w.run == run]
        runs = {run: view.runs.get(run, RunInfo(run=run))} if writes or run in view.runs else {}
    else:
        writes = [w for w in view.writes if w.job_id in job_ids]
        runs = {w.run: view.runs.get(w.run, RunInfo(run=w.run)) for w in writes}
    return TrailView(runs=runs, writes=writes, unreadable=view.unreadable)


def resolve_run(known: Iterable[str], ref: str) -> str:
    """A run id, or a unique prefix of one (8 characters or more), among the runs of the trail."""
    ref = ref.strip().lower()
    if len(ref) < RUN_PREFIX_MIN or any(c not in "0123456789abcdef-" for c in ref):
        raise UsageError(f"'{ref[:40]}' is not a run id (a uuid, or its first {RUN_PREFIX_MIN} characters or more)")
    matches = sorted({run for run in known if run.startswith(ref)})
    if not matches:
        raise NotFoundError(f"no run {ref} in the audit trail")
    if len(matches) > 1:
        raise UsageError(f"run id prefix {ref} is ambiguous: {', '.join(m[:13] for m in matches[:5])}",
                         hint="give more characters of the run id")
    return matches[0]


@dataclass
class Trails:
    """The database trail and the file before it: runs recorded in the file before `charfix init`
    stay readable (history) and undoable. A run is in one trail; each keeps its own order."""

    trails: list[Trail]

    @property
    def name(self) -> str:
        return self.trails[-1].name

    def run_ids(self) -> list[str]:
        return sorted({run for trail in self.trails for run in trail.run_ids()})

    def read(self, *, run: str | None = None, job_ids: Iterable[str] = ()) -> TrailView:
        wanted = list(job_ids)
        merged = TrailView()
        for index, trail in enumerate(self.trails):  # older trails first: their writes order first
            view = trail.read(run=run, job_ids=wanted)
            merged.runs.update(view.runs)
            merged.unreadable += view.unreadable
            merged.writes += [replace(w, seq=index * TRAIL_SPAN + w.seq) for w in view.writes]
        return merged


TRAIL_SPAN = 10**15  # more records than any trail holds: a later trail's writes order after an earlier one's
