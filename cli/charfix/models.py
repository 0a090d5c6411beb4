"""The domain's records and the diagnosis they produce.

Models mirror the application's tables only in the columns charfix reads or writes; the live tables
have many more. The results of repairs are here too, so that the UI can show them without importing
the code that makes them. Nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, UTC
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_serializer, field_validator, model_validator

WORKSPACE_BUCKET = "workspace-temp"
LIBRARY_BUCKET = "user-library"
PORTRAIT = "character_portrait"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # `table.column: why` of the values the adapter could not read (repository/rows.py): they hold their
    # default instead, and the diagnosis gives the job unreadable_data. Not a column; never written.
    unreadable: tuple[str, ...] = Field(default=(), exclude=True)

    @field_validator("created_at", mode="before", check_fields=False)
    @classmethod
    def _missing_is_old(cls, value: Any) -> Any:
        """A NULL created_at reads as long ago: such a row never looks new enough to auto-link."""
        return EPOCH if value is None else value


class Job(Record):
    id: UUID
    user_id: UUID
    job_type: str = ""
    status: str | None = None  # the check constraint allows NULL
    error_message: str | None = None
    # Anything at all: the application copies the request's metadata verbatim.
    metadata: Any = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None


class WorkspaceAsset(Record):
    id: UUID
    user_id: UUID
    job_id: UUID
    asset_index: int = 0
    asset_type: str = "image"
    temp_storage_path: str = ""
    file_size_bytes: int = 0
    mime_type: str = "image/png"
    generation_seed: int | None = None
    original_prompt: str = ""
    model_used: str = ""
    width: int | None = None
    height: int | None = None
    thumbnail_path: str | None = None
    # Nullable in the app's schema (docs/domain.md section 6). NULL stays None here: it is no moment
    # a job could be completed at.
    created_at: datetime | None = None

    @field_validator("created_at", mode="before")
    @classmethod
    def _missing_is_old(cls, value: Any) -> Any:  # overrides Record's: NULL is unknown, not 1970
        return value


class Character(Record):
    id: UUID
    user_id: UUID | None = None
    name: str
    image_url: str | None = None
    reference_image_url: str | None = None
    seed_locked: int | None = None
    created_at: datetime
    updated_at: datetime | None = None


class LibraryItem(Record):
    id: UUID
    user_id: UUID
    asset_type: str = "image"
    storage_path: str
    file_size_bytes: int = 0
    mime_type: str = "image/png"
    original_prompt: str = ""
    model_used: str = ""
    generation_seed: int | None = None
    tags: list[str] | None = None
    content_category: str | None = None
    roleplay_metadata: Any = None
    thumbnail_path: str | None = None
    width: int | None = None
    height: int | None = None
    created_at: datetime
    # Newer schemas only; None when the live table lacks the column.
    character_id: UUID | None = None
    output_type: str | None = None
    generation_metadata: Any = None


class StoredObject(Record):
    bucket: str
    key: str
    size: int
    updated_at: datetime | None = None
    # The MD5 of the bytes when the listing gives it (Supabase Storage's eTag); None when unknown.
    content_md5: str | None = None

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.key}"

    def may_be_copy_of(self, source: StoredObject) -> bool:
        """Whether this object can be the whole of `source`: the same size, and the same MD5 where
        both are known. A truncated or stale object is not a copy (docs/repairs.md)."""
        if self.size != source.size:
            return False
        return self.content_md5 is None or source.content_md5 is None or self.content_md5 == source.content_md5


class JobFacts(Record):
    """Everything known about one job, gathered in batches before any diagnosis."""

    job: Job
    assets: tuple[WorkspaceAsset, ...] = ()
    # Objects under `{user_id}/{job_id}_` in each bucket.
    temp_objects: tuple[StoredObject, ...] = ()
    library_objects: tuple[StoredObject, ...] = ()
    # Objects named by generic library rows (`{user_id}/{asset_id}.png`).
    generic_objects: tuple[StoredObject, ...] = ()
    # The character named by id (any owner), the user's same-name characters (exact and near),
    # and characters named by this job's library rows.
    characters: tuple[Character, ...] = ()
    library_items: tuple[LibraryItem, ...] = ()
    # Other name-only portrait jobs of the same user for the same name, near in time: drafts made
    # in the same create-character dialog.
    siblings: tuple[Job, ...] = ()


class State(StrEnum):
    SAVED = "saved"
    IN_PROGRESS = "in_progress"
    REPAIRABLE = "repairable"
    NEEDS_REVIEW = "needs_review"
    LOST = "lost"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"


class ImageKind(StrEnum):
    """What a character's image_url holds (`charfix user`; docs/diagnosis.md on which of them expire)."""

    NONE = "none"  # no image at all
    LIBRARY = "library"  # user-library/...: the saved portrait, permanent
    WORKSPACE = "workspace"  # workspace-temp/...: the generation's temporary copy
    PROVIDER_URL = "provider_url"  # the provider's own URL: expires
    SIGNED_URL = "signed_url"  # a Supabase signed URL: expires
    STORAGE_URL = "storage_url"  # a public Supabase Storage URL
    OTHER_URL = "other_url"  # another web address: may expire
    OTHER = "other"  # something else the app does not write


EXPIRES = frozenset({ImageKind.PROVIDER_URL, ImageKind.SIGNED_URL, ImageKind.OTHER_URL})


class ReasonCode(StrEnum):
    JOB_NOT_COMPLETED = "job_not_completed"
    JOB_NO_OUTPUT = "job_no_output"
    JOB_FAILED = "job_failed"
    JOB_STATUS_UNKNOWN = "job_status_unknown"
    METADATA_SOURCE_ONLY = "metadata_source_only"
    OUTPUT_EXTERNAL_URL = "output_external_url"
    OUTPUT_MISSING = "output_missing"
    ASSET_OWNER_MISMATCH = "asset_owner_mismatch"
    CHARACTER_ID_MISSING = "character_id_missing"
    CHARACTER_CREATED_LATER = "character_created_later"
    CHARACTER_NOT_FOUND = "character_not_found"
    CHARACTER_AMBIGUOUS = "character_ambiguous"
    CHARACTER_DELETED = "character_deleted"
    CHARACTER_OWNER_MISMATCH = "character_owner_mismatch"
    CHARACTER_LINKED_TO_OLDER = "character_linked_to_older"
    NO_CHARACTER_REFERENCE = "no_character_reference"
    LIBRARY_COPY_MISSING = "library_copy_missing"
    LIBRARY_ROW_MISSING = "library_row_missing"
    LIBRARY_ROW_GENERIC = "library_row_generic"
    LIBRARY_DUPLICATES = "library_duplicates"
    CHARACTER_IMAGE_NOT_UPDATED = "character_image_not_updated"
    FOREIGN_STORAGE_KEY = "foreign_storage_key"
    UNREADABLE_DATA = "unreadable_data"


class Action(StrEnum):
    COMPLETE_JOB = "complete_job"
    LINK_CHARACTER = "link_character"
    COPY_OBJECT = "copy_object"
    INSERT_LIBRARY_ROW = "insert_library_row"
    UPGRADE_LIBRARY_ROW = "upgrade_library_row"
    UPDATE_CHARACTER_IMAGE = "update_character_image"
    MARK_FAILED = "mark_failed"


class UndoAction(StrEnum):
    """The writes of `charfix undo` (docs/audit.md, "Undo"): no plan step, so not an Action."""

    RESTORE_ROW = "restore_row"
    DELETE_ROW = "delete_row"
    DELETE_OBJECT = "delete_object"


# Writes that land the moment they are made, whatever the backend: announced before, closed after.
OBJECT_WRITES = frozenset({Action.COPY_OBJECT.value, UndoAction.DELETE_OBJECT.value})


class Reason(BaseModel):
    code: ReasonCode
    message: str
    evidence: dict[str, str] = Field(default_factory=dict)


class Candidate(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    image_url: str | None = None
    exact: bool
    # Seconds from the job's creation to the character's (negative: the character is older).
    seconds_after_job: float


Shown = Annotated[datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str, when_used="json")]


class StepParams(BaseModel):
    """A plan step's parameters: typed for the step that applies them, shown in the plan's JSON
    (`diagnose --json`) with ids and times as text and absent values left out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def shown(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    # Read by name, the parameter as the plan's JSON shows it (`step.params["character_id"]` is the
    # id's text): for code that reads a plan as a person sees it.
    def __getitem__(self, name: str) -> Any:
        return self.shown()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.shown()

    def get(self, name: str, default: Any = None) -> Any:
        return self.shown().get(name, default)


class CompleteJob(StepParams):
    completed_at: Shown


class MarkFailed(StepParams):
    error_message: str


class LinkCharacter(StepParams):
    character_id: UUID


class CopyObject(StepParams):
    """`bucket/key` paths. The source is an object (`source`) or the provider's URL (`source_url`)."""

    destination: str
    source: str | None = None
    source_url: str | None = None
    thumbnail_source: str | None = None
    thumbnail_destination: str | None = None


class InsertLibraryRow(StepParams):
    storage_path: str  # the key in the library bucket
    character_id: UUID
    character_name: str | None = None


class UpgradeLibraryRow(StepParams):
    library_row_id: UUID
    character_id: UUID
    character_name: str | None = None


class UpdateCharacterImage(StepParams):
    character_id: UUID
    image_url: str  # `bucket/key`
    previous_image_url: str | None = None
    reference_image_url: str | None = None  # set: reference_image_url moves too
    seed_locked: int | None = None  # only a seed that fits an integer


StepParameters = (CompleteJob | MarkFailed | LinkCharacter | CopyObject | InsertLibraryRow | UpgradeLibraryRow
                  | UpdateCharacterImage)
PARAMS: dict[Action, type[StepParams]] = {
    Action.COMPLETE_JOB: CompleteJob,
    Action.MARK_FAILED: MarkFailed,
    Action.LINK_CHARACTER: LinkCharacter,
    Action.COPY_OBJECT: CopyObject,
    Action.INSERT_LIBRARY_ROW: InsertLibraryRow,
    Action.UPGRADE_LIBRARY_ROW: UpgradeLibraryRow,
    Action.UPDATE_CHARACTER_IMAGE: UpdateCharacterImage,
}


class Step(BaseModel):
    action: Action
    description: str
    params: StepParameters

    @model_validator(mode="before")
    @classmethod
    def _typed(cls, data: Any) -> Any:
        """Parameters given by name (a plan written by hand) become the action's typed parameters."""
        if isinstance(data, dict) and isinstance(data.get("params"), dict) and data.get("action") in set(Action):
            data = {**data, "params": PARAMS[Action(data["action"])].model_validate(data["params"])}
        return data

    @model_validator(mode="after")
    def _fit(self) -> Step:
        if type(self.params) is not PARAMS[self.action]:
            raise ValueError(f"{self.action.value} takes {PARAMS[self.action].__name__}, not {type(self.params).__name__}")
        return self

    @field_serializer("params")
    def _shown(self, params: StepParams) -> dict[str, Any]:
        return params.shown()


class Event(BaseModel):
    at: datetime
    what: str


class Diagnosis(BaseModel):
    job_id: UUID
    user_id: UUID
    status: str | None
    created_at: datetime
    state: State
    reasons: list[Reason] = Field(default_factory=list)
    character_id: UUID | None = None
    character_name: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    plan: list[Step] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    timeline: list[Event] = Field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [reason.code.value for reason in self.reasons]

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["reasons"] = self.codes
        data["explanations"] = [r.model_dump(mode="json") for r in self.reasons]
        data["plan"] = [s.model_dump(mode="json") for s in self.plan]
        return data


class Outcome(StrEnum):
    """What a repair did to one job."""

    REPAIRED = "repaired"
    ALREADY_FINE = "already_fine"
    PLANNED = "planned"  # --dry-run
    SKIPPED = "skipped"
    CHANGED = "changed"  # someone else wrote to the job meanwhile: diagnosed again, not overwritten
    FAILED = "failed"


@dataclass
class JobResult:
    """One job's repair (or its preview): the outcome, the steps applied or planned, and why."""

    job_id: UUID
    outcome: Outcome
    state: State | None = None
    steps: list[Step] = field(default_factory=list)
    message: str | None = None
    diagnosis: Diagnosis | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "outcome": self.outcome.value,
            "state": self.state.value if self.state else None,
            "steps": [s.action.value for s in self.steps],
            "message": self.message,
        }


@dataclass
class BackfillReport:
    """What a backfill did, job by job and in counts."""

    examined: int = 0
    repaired: list[JobResult] = field(default_factory=list)
    already_fine: int = 0
    planned: list[JobResult] = field(default_factory=list)
    skipped_by_state: Counter[str] = field(default_factory=Counter)
    skipped_other: list[JobResult] = field(default_factory=list)
    changed: list[JobResult] = field(default_factory=list)  # written by someone else meanwhile
    failed: list[JobResult] = field(default_factory=list)
    capped: int = 0
    attempted: int = 0  # jobs of the work list that got a result
    not_attempted: int = 0  # repairable jobs left when a signal stopped the run (docs/cron.md)
    scan_stopped: bool = False  # a signal stopped the run before every job was examined

    def add(self, result: JobResult) -> None:
        match result.outcome:
            case Outcome.REPAIRED:
                self.repaired.append(result)
            case Outcome.PLANNED:
                self.planned.append(result)
            case Outcome.ALREADY_FINE:
                self.already_fine += 1
            case Outcome.FAILED:
                self.failed.append(result)
            case Outcome.CHANGED:
                self.changed.append(result)
            case Outcome.SKIPPED if result.state is not None:
                self.skipped_by_state[result.state.value] += 1
            case _:
                self.skipped_other.append(result)

    def to_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "repaired": len(self.repaired),
            "already_fine": self.already_fine,
            "planned": len(self.planned),
            "skipped_by_state": dict(self.skipped_by_state),
            "skipped_locked": len(self.skipped_other),
            "changed_meanwhile": len(self.changed),
            "not_attempted_over_max": self.capped,
            "failed": len(self.failed),
            "not_attempted_stopped": self.not_attempted,
            "scan_stopped": self.scan_stopped,
            "jobs": [r.to_json() for r in
                     self.repaired + self.planned + self.failed + self.skipped_other + self.changed],
        }
