"""`charfix undo`: reverse a run's writes, newest first (docs/audit.md, "Undo").

Each record of the trail is a claim (a file can be edited): it becomes an undo item only when it names
a write charfix makes, on a row or object of the job's own user (diagnosis/keys.py); otherwise it is
refused. Each item is then a conditional write: a row gets its before-values back, and a row or object
the run created is deleted, only while it still holds exactly what the run wrote. Anything else is a
conflict, left alone. An item already back at its before-state is `already_undone`, so a second undo
writes nothing. The undo is itself a run: every write it makes is recorded like a repair's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis.keys import own_key
from charfix.errors import BackendError, ChangedError, CharfixError, ConnectionLostError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, UndoAction
from charfix.audit.log import AuditError
from charfix.repair.unit import Unit, Write
from charfix.audit.trail import WriteRecord
from charfix.repository.reverts import Reverter, reverter_for

JOB_STATUSES = frozenset({"queued", "processing", "completed", "failed", "cancelled"})
JOB_COLUMNS = {"complete_job": ("status", "completed_at", "error_message"),
               "mark_failed": ("status", "completed_at", "error_message"),
               "link_character": ("metadata",)}
CHARACTER_COLUMNS = ("image_url", "reference_image_url", "seed_locked")
UPGRADED_COLUMNS = ("tags", "content_category", "roleplay_metadata", "character_id", "output_type",
                    "generation_metadata")
INSERTED_COLUMNS = ("storage_path", "tags", "content_category", "roleplay_metadata", "character_id", "output_type",
                    "generation_metadata", "file_size_bytes", "mime_type", "asset_type")


class Action(StrEnum):
    RESTORE_ROW = "restore_row"
    DELETE_ROW = "delete_row"
    DELETE_OBJECT = "delete_object"
    NONE = "none"  # refused or kept: nothing will be written


class Outcome(StrEnum):
    WOULD_REVERT = "would_revert"  # --dry-run
    REVERTED = "reverted"
    ALREADY_UNDONE = "already_undone"
    CONFLICT = "conflict"  # changed since the run: left alone
    KEPT = "kept"  # cannot be reverted (an object the run overwrote: its old bytes were not kept)
    REFUSED = "refused"  # the record is no write charfix makes on this job's user's data
    FAILED = "failed"


@dataclass
class UndoItem:
    record: WriteRecord
    action: Action
    place: str = ""  # table or bucket
    ident: str = ""  # row id or object key
    owner: UUID | None = None
    expected: dict[str, Any] = field(default_factory=dict)  # what the run wrote: the condition
    values: dict[str, Any] | None = None  # what restore_row writes back
    outcome: Outcome | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.record.job_id, "step": self.record.step, "target": self.record.target,
                "action": self.action.value, "outcome": self.outcome.value if self.outcome else None,
                "message": self.message, "written": self.expected, "restored": self.values}


@dataclass
class UndoReport:
    run: str
    items: list[UndoItem]

    def count(self, outcome: Outcome) -> int:
        return sum(item.outcome == outcome for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"reverts": self.run, **{o.value: self.count(o) for o in Outcome},
                "items": [item.to_json() for item in self.items]}


# -- claims -> items -----------------------------------------------------------------------------


def plan(records: Sequence[WriteRecord], owners: dict[str, UUID], has: Callable[[str, str], bool],
         characters: dict[str, UUID | None] | None = None) -> list[UndoItem]:
    """The records as undo items, newest first; a record that fails a check is refused with why.
    `owners`: each job's user; `characters`: each named character's user, as stored now."""
    items = []
    for record in sorted(records, key=lambda r: r.seq, reverse=True):
        item = UndoItem(record, Action.NONE)
        try:
            _claim(item, owners, has)
            if record.step == "update_character_image":
                _same((characters or {}).get(item.ident) == item.owner, "the character is not the job's user's")
        except _Refused as why:
            item.action, item.outcome, item.message = Action.NONE, Outcome.REFUSED, str(why)
        items.append(item)
    return items


class _Refused(Exception):
    pass


def _claim(item: UndoItem, owners: dict[str, UUID], has: Callable[[str, str], bool]) -> None:
    record = item.record
    owner = owners.get(record.job_id)
    if owner is None:
        raise _Refused(f"job {record.job_id[:36]} is not in the database")
    item.owner = owner
    place, _, ident = record.target.partition("/")
    item.place, item.ident = place, ident
    before, after = record.before, record.after
    if record.step in JOB_COLUMNS:
        _same(place == "jobs" and ident == record.job_id, "a job write names another row")
        columns = JOB_COLUMNS[record.step]
        _rows(before, after, columns)
        if "status" in columns:
            _same(before["status"] in JOB_STATUSES, "the status to restore is not a legal one")
        _restore(item, columns, before, after)
    elif record.step == "update_character_image":
        _same(place == "characters" and _uuid(ident), "a character write names no character")
        _rows(before, after, CHARACTER_COLUMNS)
        for column in ("image_url", "reference_image_url"):
            _same(_restorable_image(owner, before[column]), f"the {column} to restore is not the user's own")
        _same(before["seed_locked"] is None or isinstance(before["seed_locked"], int), "seed_locked is no integer")
        _restore(item, CHARACTER_COLUMNS, before, after)
    elif record.step == "upgrade_library_row":
        _same(place == "user_library" and _uuid(ident), "a library write names no row")
        columns = tuple(c for c in UPGRADED_COLUMNS if has("user_library", c))
        _rows(before, after, columns)
        _same(str(before.get("user_id")) == str(owner), "the library row is not the job's user's")
        _restore(item, columns, before, after)
    elif record.step == "insert_library_row":
        _same(place == "user_library" and _uuid(ident), "a library insert names no row")
        _same(isinstance(after, dict) and str(after.get("user_id")) == str(owner) and str(after.get("id")) == ident,
              "the inserted row is not the job's user's")
        _same(own_key(owner, after.get("storage_path")) == after.get("storage_path"), "its storage path is not the user's")
        item.action = Action.DELETE_ROW
        item.expected = {c: after[c] for c in INSERTED_COLUMNS if c in after and has("user_library", c)}
    elif record.step == "copy_object":
        _object_claim(item, owner, record)
    else:
        raise _Refused(f"'{record.step[:40]}' is not a repair write (an undo's own writes are not undone)")


def _object_claim(item: UndoItem, owner: UUID, record: WriteRecord) -> None:
    key = item.ident
    _same(item.place == LIBRARY_BUCKET and own_key(owner, key) == key and key.startswith(f"{owner}/{record.job_id}_"),
          "the object is not at one of the job's own library keys")
    _same(isinstance(record.after, dict) and isinstance(record.after.get("size"), int), "no size was recorded")
    if record.before is not None:
        item.outcome = Outcome.KEPT
        item.message = "the run replaced an object there, whose bytes were not kept"
        return
    item.action = Action.DELETE_OBJECT
    item.expected = {"size": record.after["size"], "md5": record.after.get("md5")}


def _same(condition: bool, why: str) -> None:
    if not condition:
        raise _Refused(why)


def _rows(before: Any, after: Any, columns: Sequence[str]) -> None:
    _same(isinstance(before, dict) and isinstance(after, dict) and all(c in before and c in after for c in columns),
          "the record lacks the values before and after")


def _restore(item: UndoItem, columns: Sequence[str], before: dict[str, Any], after: dict[str, Any]) -> None:
    item.action = Action.RESTORE_ROW
    item.expected = {c: after[c] for c in columns}
    item.values = {c: before[c] for c in columns}


def _uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _restorable_image(owner: UUID, value: Any) -> bool:
    """What a character's image may be put back to: nothing, the app's empty temp path, an object in the
    user's own folder, or an external URL (the provider's, as the creation flow stores it)."""
    if value is None or value in ("", f"{WORKSPACE_BUCKET}/"):
        return True
    if not isinstance(value, str):
        return False
    if value.startswith(("https://", "http://")):
        return True
    return any(own_key(owner, value, bucket) is not None and value.startswith(f"{bucket}/")
               for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET))


# -- checking and writing ------------------------------------------------------------------------


def undo(backends: Backends, run: str, records: Sequence[WriteRecord], *, dry_run: bool,
         audit: Any = None) -> UndoReport:
    """Plan the run's records and check each item (`dry_run`), or revert it. An audit trail that
    cannot be written, or a lost connection, stops the undo (the item in flight is rolled back)."""
    repo = backends.repository
    job_ids = sorted({r.job_id for r in records if _uuid(r.job_id)})
    owners = {str(job.id): job.user_id for job in repo.jobs_by_id([UUID(j) for j in job_ids])}
    named = sorted({UUID(r.target.partition("/")[2]) for r in records
                    if r.target.startswith("characters/") and _uuid(r.target.partition("/")[2])})
    characters = {str(c.id): c.user_id for c in repo.characters_for(named, [])} if named else {}
    items = plan(records, owners, repo.schema.has, characters)
    reverter = reverter_for(repo)
    unit = Unit(backends, audit)
    for item in items:
        if item.outcome is not None:
            continue
        try:
            item.outcome = _check(backends, reverter, item) if dry_run else _revert(unit, reverter, item)
        except (AuditError, ConnectionLostError):
            raise
        except (BackendError, CharfixError) as exc:
            item.outcome, item.message = Outcome.FAILED, exc.message
        if item.outcome == Outcome.CONFLICT and item.message is None:
            item.message = "changed since the run (or gone): left as it is"
    return UndoReport(run, items)


def _check(backends: Backends, reverter: Reverter, item: UndoItem) -> Outcome:
    assert item.owner is not None
    if item.action == Action.DELETE_OBJECT:
        return _object_state(backends, item, would=Outcome.WOULD_REVERT)
    row = UUID(item.ident)
    if reverter.holds(item.place, row, item.owner, item.expected):
        return Outcome.WOULD_REVERT
    if item.action == Action.DELETE_ROW:
        return Outcome.CONFLICT if reverter.exists(item.place, row) else Outcome.ALREADY_UNDONE
    assert item.values is not None
    return Outcome.ALREADY_UNDONE if reverter.holds(item.place, row, item.owner, item.values) else Outcome.CONFLICT


def _object_state(backends: Backends, item: UndoItem, *, would: Outcome) -> Outcome:
    storage = backends.storage
    found = storage.stat(item.place, [item.ident])
    if not found:
        return Outcome.ALREADY_UNDONE
    if found[0].size != item.expected["size"]:
        return Outcome.CONFLICT
    wanted = item.expected.get("md5")
    if wanted is not None:
        there = storage.content_md5(found[0])
        if there is not None and there != wanted:
            return Outcome.CONFLICT
    return would


def _revert(unit: Unit, reverter: Reverter, item: UndoItem) -> Outcome:
    """One item through the unit of work: over Postgres, the job's row lock and a transaction holding the
    conditional write and its record; a write that matched nothing raises ChangedError, so that nothing
    is recorded and the transaction rolls back, and then the item is told apart (already undone, or a
    conflict)."""
    if item.action == Action.DELETE_OBJECT:
        return _delete_object(unit, item)
    owner, row = item.owner, UUID(item.ident)
    assert owner is not None
    step = UndoAction.DELETE_ROW if item.action == Action.DELETE_ROW else UndoAction.RESTORE_ROW
    write = Write(UUID(item.record.job_id), step, item.record.target, item.expected, item.values)

    def make() -> None:
        if step == UndoAction.DELETE_ROW:
            done = reverter.delete(item.place, row, owner, expected=item.expected)
        else:
            done = reverter.restore(item.place, row, owner, expected=item.expected, values=item.values or {})
        if not done:
            raise ChangedError(f"{item.record.target} does not hold what the run wrote; nothing was written to it")

    try:
        with unit.job(write.job_id) as got:
            if not got:
                item.message = "another charfix run holds the job; run undo again later"
                return Outcome.CONFLICT
            unit.write(write, make)
    except ChangedError:
        if step == UndoAction.DELETE_ROW:
            return Outcome.CONFLICT if reverter.exists(item.place, row) else Outcome.ALREADY_UNDONE
        return Outcome.ALREADY_UNDONE if reverter.holds(item.place, row, owner, item.values or {}) else Outcome.CONFLICT
    return Outcome.REVERTED


def _delete_object(unit: Unit, item: UndoItem) -> Outcome:
    state = _object_state(unit.backends, item, would=Outcome.REVERTED)
    if state != Outcome.REVERTED:
        return state
    # No condition can travel with a delete in storage: the object was checked just above, and only
    # charfix writes the job's own library keys (docs/audit.md, "Undo": its limits). Announced first.
    write = Write(UUID(item.record.job_id), UndoAction.DELETE_OBJECT, item.record.target, item.expected, None)
    unit.write(write, lambda: unit.backends.storage.delete(item.place, item.ident), lambda _: None)
    return Outcome.REVERTED
