"""`charfix user`: one user's portrait jobs by state, their characters and their library portraits.

Answers the first questions of a ticket: what did this user generate, which characters show which
image (and which of those images will disappear), and what is in their Library's Characters tab.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from charfix.diagnosis import facts as f
from charfix.diagnosis import Rules
from charfix.diagnosis.keys import own_key
from charfix.models import EXPIRES, Character, Diagnosis, ImageKind, LibraryItem, State
from charfix.repository.base import JobQuery
from charfix.backends import Backends
from charfix.queries.scan import scan
from charfix.queries.selection import needs_attention

# Hosts of the image providers the app's edge functions call; their URLs expire (docs/diagnosis.md).
PROVIDER_HOSTS = ("fal.media", "fal.run", "fal.ai", "replicate.delivery", "replicate.com")


def image_kind(value: str | None, user_id: UUID | None = None) -> ImageKind:
    if not value or value in ("workspace-temp/", "user-library/"):
        return ImageKind.NONE
    for bucket, kind in (("user-library", ImageKind.LIBRARY), ("workspace-temp", ImageKind.WORKSPACE)):
        if value.startswith(bucket + "/"):
            # Only a plain key in the user's own folder shows them anything (keys.py).
            return kind if user_id is None or own_key(user_id, value, bucket) else ImageKind.OTHER
    if not f.is_url(value):
        return ImageKind.OTHER
    try:
        parts = urlsplit(value)
    except ValueError:  # `https://[x`: the user's text, not a URL the app writes
        return ImageKind.OTHER
    host = (parts.hostname or "").lower()
    if "/storage/v1/object/sign/" in parts.path:
        return ImageKind.SIGNED_URL
    if "/storage/v1/object/public/" in parts.path:
        return ImageKind.STORAGE_URL
    if any(host == known or host.endswith("." + known) for known in PROVIDER_HOSTS):
        return ImageKind.PROVIDER_URL
    return ImageKind.OTHER_URL


def image_shown(value: str | None) -> str | None:
    """The image as a person may see it: a URL without its query (a signed URL's token stays out)."""
    if not value or not f.is_url(value):
        return value
    try:
        parts = urlsplit(value)
    except ValueError:  # not a URL urllib can read: still no query shown
        base, query, _ = value.partition("?")
        return base + ("?…" if query else "")
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


@dataclass(frozen=True)
class CharacterView:
    character: Character
    image: ImageKind
    jobs: int  # portrait jobs in the window about this character

    @property
    def expires(self) -> bool:
        return self.image in EXPIRES

    @property
    def image_shown(self) -> str | None:
        return image_shown(self.character.image_url)

    def to_json(self) -> dict[str, Any]:
        c = self.character
        return {"id": str(c.id), "name": c.name, "created_at": c.created_at.isoformat(),
                "image_url": self.image_shown, "image": self.image.value, "image_expires": self.expires,
                "jobs": self.jobs}


@dataclass
class UserView:
    user_id: UUID
    email: str | None
    since: datetime
    by_state: Counter = field(default_factory=Counter)
    attention: list[Diagnosis] = field(default_factory=list)
    characters: list[CharacterView] = field(default_factory=list)
    library: list[LibraryItem] = field(default_factory=list)
    character_names: dict[UUID, str] = field(default_factory=dict)

    @property
    def examined(self) -> int:
        return sum(self.by_state.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": str(self.user_id),
            "email": self.email,
            "since": self.since.isoformat(),
            "jobs": {"examined": self.examined, "by_state": {s.value: self.by_state[s] for s in State if self.by_state[s]},
                     "needing_attention": [d.to_json() for d in self.attention]},
            "characters": [c.to_json() for c in self.characters],
            "library_portraits": [_library_json(item) for item in self.library],
        }


def _library_json(item: LibraryItem) -> dict[str, Any]:
    return {"id": str(item.id), "storage_path": item.storage_path, "created_at": item.created_at.isoformat(),
            "character_id": str(cid) if (cid := f.row_character_id(item)) else None,
            "job_id": str(jid) if (jid := f.row_job_id(item)) else None}


def user_view(backends: Backends, user_id: UUID, *, since: datetime, rules: Rules, email: str | None = None) -> UserView:
    view = UserView(user_id=user_id, email=email, since=since)
    about: Counter = Counter()
    for diagnosis in scan(backends, JobQuery(since=since, user_id=user_id), rules):
        view.by_state[diagnosis.state] += 1
        if needs_attention(diagnosis):
            view.attention.append(diagnosis)
        if diagnosis.character_id is not None:
            about[diagnosis.character_id] += 1
    characters = backends.repository.characters_of(user_id)
    view.characters = [CharacterView(c, image_kind(c.image_url, user_id), about[c.id]) for c in characters]
    view.character_names = {c.id: c.name for c in characters}
    view.library = backends.repository.library_portraits_of(user_id)
    return view
