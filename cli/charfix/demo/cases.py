"""The demo's sample: one or more jobs for every reason code, the incident among them.

Ids are stable (uuid5 of a name) so the README's tour can name them; times are relative to the
moment of seeding. Each case says what the diagnosis should make of it; the tests hold charfix to
that.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

INCIDENT_JOB = UUID("69e0cd17-5b4e-4b8a-a8b2-1333caa61c85")
CLEANUP_ERROR = "Cleaned up: Job was stuck during edge function deployment issues"


def stable_id(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"charfix-demo:{name}")


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A small, real PNG of one colour."""
    row = b"\x00" + bytes(rgb) * size
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)),
        (b"IDAT", zlib.compress(row * size)),
        (b"IEND", b""),
    ]
    body = b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


@dataclass
class Case:
    name: str
    job_id: UUID
    state: str
    reasons: list[str]
    story: str


@dataclass
class Sample:
    now: datetime
    jobs: list[dict[str, Any]] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)
    characters: list[dict[str, Any]] = field(default_factory=list)
    library: list[dict[str, Any]] = field(default_factory=list)
    objects: list[tuple[str, str, bytes, datetime]] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)

    def at(self, **ago: float) -> datetime:
        return self.now - timedelta(**ago)

    def job(self, name: str, user: UUID, *, status: str | None, metadata: Any, created: datetime, job_id: UUID | None = None,
            error: str | None = None, job_type: str = "image_high") -> UUID:
        job_id = job_id or stable_id(f"job:{name}")
        self.jobs.append(dict(
            id=job_id, user_id=user, job_type=job_type, status=status, metadata=metadata, created_at=created,
            started_at=created + timedelta(seconds=1), error_message=error,
            completed_at=created + timedelta(seconds=15) if status == "completed" else None,
        ))
        return job_id

    def asset(self, job_id: UUID, user: UUID, *, created: datetime, path: str | None = None, store: bool = True,
              seed: int = 123456789, prompt: str = "portrait", rgb=(200, 120, 160)) -> tuple[UUID, str]:
        key = f"{user}/{job_id}_{int(created.timestamp() * 1000)}.png"
        asset_id = stable_id(f"asset:{job_id}")
        data = png(rgb)
        self.assets.append(dict(
            id=asset_id, user_id=user, job_id=job_id, asset_type="image",
            temp_storage_path=key if path is None else path, file_size_bytes=len(data), mime_type="image/png",
            generation_seed=seed, original_prompt=prompt, model_used="fal-ai/flux/dev", width=8, height=8,
            created_at=created, expires_at=created + timedelta(days=7),
        ))
        if store:
            self.objects.append((WORKSPACE_BUCKET, key, data, created))
        return asset_id, key

    def temp_object(self, job_id: UUID, user: UUID, *, created: datetime, rgb=(90, 160, 220)) -> str:
        key = f"{user}/{job_id}_{int(created.timestamp() * 1000)}.png"
        self.objects.append((WORKSPACE_BUCKET, key, png(rgb), created))
        return key

    def character(self, name: str, user: UUID | None, *, created: datetime, image_url: str | None = None,
                  label: str | None = None) -> UUID:
        character_id = stable_id(f"character:{label or name}:{user}")
        self.characters.append(dict(
            id=character_id, user_id=user, name=name, description=f"{name}, a demo character",
            image_url=image_url, reference_image_url=image_url, created_at=created, updated_at=created,
        ))
        return character_id

    def library_row(self, user: UUID, key: str, *, created: datetime, character_id: UUID | None = None,
                    character_name: str | None = None, job_id: UUID | None = None, generic: bool = False,
                    store: bool = True, label: str = "") -> UUID:
        row_id = stable_id(f"library:{key}:{label}")
        data = png((240, 200, 80))
        portrait = {"type": "character_portrait", "character_id": str(character_id), "character_name": character_name}
        if job_id:
            portrait["job_id"] = str(job_id)
        self.library.append(dict(
            id=row_id, user_id=user, asset_type="image", storage_path=key, file_size_bytes=len(data),
            mime_type="image/png", original_prompt="portrait", model_used="fal-ai/flux/dev", generation_seed=123456789,
            tags=[] if generic else ["character", "portrait"],
            content_category="general" if generic else "character",
            roleplay_metadata={} if generic else portrait,
            character_id=None if generic else character_id,
            output_type=None if generic else "portrait",
            created_at=created, updated_at=created,
        ))
        if store:
            self.objects.append((LIBRARY_BUCKET, key, data, created))
        return row_id

    def expect(self, name: str, job_id: UUID, state: str, reasons: list[str], story: str) -> None:
        self.cases.append(Case(name=name, job_id=job_id, state=state, reasons=reasons, story=story))


def portrait(**extra: Any) -> dict[str, Any]:
    return {"destination": "character_portrait", "prompt": "portrait of a character", **extra}
