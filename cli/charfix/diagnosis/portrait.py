"""What a saved portrait is: the library row the Characters tab shows, and what a repair writes to
make one (docs/domain.md sections 1 and 6; docs/repairs.md, "What each step changes").

The one place that knows the portrait's tags, category, roleplay metadata, output type and
generation metadata. The adapters write what this module returns, column by column, without
knowing what any column means; a column the live table lacks is dropped there (older schemas have
no `character_id`, `output_type` or `generation_metadata`). Pure: no I/O.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from charfix.diagnosis import facts as f
from charfix.models import PORTRAIT, Character, Job, LibraryItem, Record, WorkspaceAsset

TAGS = ("character", "portrait")
CATEGORY = "character"
OUTPUT_TYPE = "portrait"
REPAIRED_BY = "charfix"
# The Library's Characters tab shows a row with this tag, or this category, or roleplay metadata of
# type PORTRAIT (docs/domain.md section 1).
VISIBLE_TAG = "character"


def is_visible(item: LibraryItem) -> bool:
    """What the Library's Characters tab shows."""
    return (
        f.as_dict(item.roleplay_metadata).get("type") == PORTRAIT
        or VISIBLE_TAG in (item.tags or [])
        or item.content_category == CATEGORY
    )


def library_row_id(job_id: UUID) -> UUID:
    """The id of the library row charfix inserts for a job. Derived from the job, so two runs that
    both insert it conflict on the primary key: the REST backend's only guard against a duplicate."""
    return uuid5(NAMESPACE_URL, f"charfix:user_library:{job_id}")


class NewLibraryItem(Record):
    """A library row to insert. The adapters write every field the live table has a column for."""

    id: UUID | None = None  # charfix's rows: library_row_id(job), so a second insert conflicts
    user_id: UUID
    asset_type: str
    storage_path: str
    file_size_bytes: int
    mime_type: str
    original_prompt: str
    model_used: str
    generation_seed: int | None = None
    width: int | None = None
    height: int | None = None
    thumbnail_path: str | None = None
    tags: list[str]
    content_category: str
    roleplay_metadata: dict[str, Any]
    character_id: UUID | None = None
    output_type: str | None = None
    generation_metadata: dict[str, Any] | None = None


def roleplay_metadata(job: Job, character: Character) -> dict[str, Any]:
    """The portrait keys of `roleplay_metadata`, as the app's auto-save writes them, plus the job."""
    portrait: dict[str, Any] = {"type": PORTRAIT, "character_id": str(character.id), "character_name": character.name,
                                "job_id": str(job.id)}
    method = f.as_dict(job.metadata).get("consistency_method")
    if isinstance(method, str):
        portrait["consistency_method"] = method
    return portrait


def new_row(job: Job, character: Character, asset: WorkspaceAsset | None, *, key: str, size: int,
            fetched_type: str | None = None, thumbnail_path: str | None = None) -> NewLibraryItem:
    """The row for the job's library object at `key`. Its file columns come from the workspace asset,
    else from the job's metadata, the key's extension and the job type; a file fetched from the
    provider (`fetched_type`: what its bytes are) decides its own type, whatever the asset claimed."""
    meta = f.as_dict(job.metadata)
    mime = fetched_type or (asset.mime_type if asset else None) or mimetypes.guess_type(key)[0] or "image/png"
    return NewLibraryItem(
        id=library_row_id(job.id),
        user_id=job.user_id,
        asset_type=asset.asset_type if asset and not fetched_type else ("video" if mime.startswith("video/") else "image"),
        storage_path=key,
        file_size_bytes=size,
        mime_type=mime,
        original_prompt=(asset.original_prompt if asset else None) or f.text_value(meta, "prompt") or "",
        model_used=(asset.model_used if asset else None) or f.text_value(meta, "model", "model_used") or job.job_type,
        generation_seed=asset.generation_seed if asset else None,
        width=asset.width if asset else None,
        height=asset.height if asset else None,
        thumbnail_path=thumbnail_path,
        tags=list(TAGS),
        content_category=CATEGORY,
        roleplay_metadata=roleplay_metadata(job, character),
        character_id=character.id,
        output_type=OUTPUT_TYPE,
        generation_metadata={"job_id": str(job.id), "repaired_by": REPAIRED_BY},
    )


def is_insert_of(row: LibraryItem, item: NewLibraryItem) -> bool:
    """Whether `row` is `item` as inserted: its id, or the job its roleplay metadata names. Used when
    an insert's outcome is unknown (a connection broke after sending it)."""
    job_id = item.roleplay_metadata.get("job_id")
    return row.id == item.id or (isinstance(job_id, str) and f.as_dict(row.roleplay_metadata).get("job_id") == job_id)


@dataclass(frozen=True)
class LibraryUpgrade:
    """The writes that make an existing generic row (a manual "save to library") a portrait, as
    operations on columns that an adapter applies without knowing the columns:
    `set` a value; `add` elements to a text[] column (kept unique and sorted; NULL counts as empty);
    `merge` keys into a jsonb object (NULL counts as an empty object)."""

    row: LibraryItem  # as read
    set: dict[str, Any]
    add: dict[str, tuple[str, ...]]
    merge: dict[str, dict[str, Any]]

    def values(self) -> dict[str, Any]:
        """Every column's new value, from the row as read: what a write that cannot merge in the
        database (REST) sends, conditional on the `add` and `merge` columns still holding `read`."""
        values = dict(self.set)
        for column, elements in self.add.items():
            values[column] = sorted(set(self.read(column) or []) | set(elements))
        for column, keys in self.merge.items():
            values[column] = {**f.as_dict(self.read(column)), **keys}
        return values

    def read(self, column: str) -> Any:
        """The column's value as read."""
        return getattr(self.row, column)

    def planned(self) -> dict[str, Any]:
        """What the audit log's `planned` value shows for the upgrade (docs/repairs.md, "The audit log")."""
        return {**self.row.model_dump(mode="json"), "roleplay_metadata": self.merge["roleplay_metadata"],
                "character_id": str(self.set["character_id"])}


def upgrade(row: LibraryItem, job: Job, character: Character) -> LibraryUpgrade:
    """The upgrade of a generic row of the job's user to the job's portrait of `character`."""
    return LibraryUpgrade(
        row=row,
        set={"content_category": CATEGORY, "character_id": character.id, "output_type": OUTPUT_TYPE},
        add={"tags": TAGS},
        merge={"roleplay_metadata": roleplay_metadata(job, character), "generation_metadata": {"job_id": str(job.id)}},
    )
