"""The portrait jobs of the benchmark dataset: the demo's stories (charfix/demo/sample.py) told
thousands of times over, with random users, names and times.

Each story adds the rows and objects the application would have left behind. Weights say how
often each is told among the jobs in trouble; the rest of the portrait jobs were saved (or failed
for real, or are still running).
"""

from __future__ import annotations

import json
import random
import uuid
from bisect import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

PORTRAIT = "character_portrait"
CLEANUP_ERROR = "Cleaned up: Job was stuck during edge function deployment issues"
OBJECT = b"\x89PNG bench\n"  # a few bytes; charfix never decodes the image
S = timedelta(seconds=1)
DAY = timedelta(days=1)
WINDOW = timedelta(days=89)  # inside `--since 90d` for a day after generation

COMMON_NAMES = (
    "Luna Aria Mandy Nova Ivy Sable Iris Rook Vex Dax Orla Kestrel Pike Wren Juno Talon Nyx Aurora Raven Lilith "
    "Kai Zara Mia Ember Selene Freya Athena Eve Lily Rose Jade Sakura Hana Yuki Mei Elena Sofia Isabella Chloe "
    "Ava Emma Olivia Scarlett Violet Hazel Stella Maya Lyra Astrid Elara Seraphina Ophelia Morgana Circe Rhea "
    "Lexi Roxy Kira Akira Rei Asuka Misaki Natalia Katya Ana Valentina Camila Lucia Bianca Gia Nina Tara Zoe "
    "Leo Max Ethan Lucas Damien Adrian Dante Victor Alex Sam Riley Jordan Morgan Quinn Blake Jax Cole Ryder "
    "Sasha Mira Delilah Jasmine Amber Crystal Destiny Harmony Star Angel Bella Candy Cherry Honey Sugar"
).split()


def zipf_cumulative(n: int, exponent: float) -> list[float]:
    return list(accumulate(1 / (i + 1) ** exponent for i in range(n)))


@dataclass
class Builder:
    rng: random.Random
    now: datetime
    users: list[uuid.UUID]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)
    characters: list[dict[str, Any]] = field(default_factory=list)
    library: list[dict[str, Any]] = field(default_factory=list)
    objects: list[tuple[str, str, datetime]] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    # Characters saved portraits may reuse (a user regenerates a character's portrait), by user.
    reusable: dict[uuid.UUID, list[dict[str, Any]]] = field(default_factory=dict)
    # Keys of saved portraits per character, to point the character at the newest one.
    saved_keys: dict[uuid.UUID, list[tuple[datetime, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._user_weights = zipf_cumulative(len(self.users), 0.8)
        self._name_weights = zipf_cumulative(len(COMMON_NAMES), 1.0)

    # -- random choices ------------------------------------------------------------------------

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def user(self) -> uuid.UUID:
        total = self._user_weights[-1]
        return self.users[min(bisect(self._user_weights, self.rng.random() * total), len(self.users) - 1)]

    def common_name(self) -> str:
        total = self._name_weights[-1]
        return COMMON_NAMES[min(bisect(self._name_weights, self.rng.random() * total), len(COMMON_NAMES) - 1)]

    def when(self, *, newest: timedelta = timedelta(minutes=20)) -> datetime:
        span = (WINDOW - newest).total_seconds()
        return self.now - newest - timedelta(seconds=self.rng.random() * span)

    def seed(self) -> int:
        return self.rng.randrange(3_000_000_000) if self.rng.random() < 0.1 else self.rng.randrange(2**31)

    def fal_url(self) -> str:
        return f"https://v3.fal.media/files/{self.rng.choice(['penguin', 'koala', 'zebra'])}/{self.uuid().hex}.png"

    # -- rows ----------------------------------------------------------------------------------

    def job(self, user, *, status: str, created: datetime, metadata: Any, error: str | None = None) -> uuid.UUID:
        job_id = self.uuid()
        self.jobs.append(dict(
            id=job_id, user_id=user, job_type=self.rng.choice(["image_high", "image_fast", "sdxl_image_high"]),
            status=status, error_message=error, metadata=json.dumps(metadata, ensure_ascii=False),
            quality="high", model_type="flux", attempts=1, created_at=created, started_at=created + S,
            completed_at=created + 15 * S if status == "completed" else None, destination="library",
            moderation_status="pending",
        ))
        return job_id

    def asset(self, job_id, user, *, created: datetime, path: str | None = None, store: bool = True,
              thumbnail: bool = False) -> tuple[uuid.UUID, str]:
        key = f"{user}/{job_id}_{int(created.timestamp() * 1000)}.png"
        asset_id = self.uuid()
        self.assets.append(dict(
            id=asset_id, user_id=user, job_id=job_id, asset_index=0, asset_type="image",
            temp_storage_path=key if path is None else path, file_size_bytes=len(OBJECT), mime_type="image/png",
            thumbnail_path=None, generation_seed=self.seed(), original_prompt="portrait of a character",
            model_used="fal-ai/flux/dev", generation_settings="{}", width=832, height=1216, created_at=created,
            expires_at=created + 7 * DAY,
        ))
        if store:
            self.objects.append(("workspace-temp", key, created))
            if thumbnail:
                self.objects.append(("workspace-temp", key[:-4] + ".thumb.webp", created))
        return asset_id, key

    def temp_object(self, job_id, user, *, created: datetime) -> str:
        key = f"{user}/{job_id}_{int(created.timestamp() * 1000)}.png"
        self.objects.append(("workspace-temp", key, created))
        return key

    def character(self, name: str, user, *, created: datetime, image_url: str | None = None) -> dict[str, Any]:
        row = dict(
            id=self.uuid(), user_id=user, name=name, description=f"{name}, a character", image_url=image_url,
            reference_image_url=image_url, seed_locked=None, is_public=self.rng.random() < 0.3,
            created_at=created, updated_at=created,
        )
        self.characters.append(row)
        return row

    def library_row(self, user, key: str, *, created: datetime, character: dict | None = None,
                    job_id=None, generic: bool = False, store: bool = True) -> None:
        portrait = {"type": PORTRAIT, "character_id": str(character["id"]) if character else None,
                    "character_name": character["name"] if character else None,
                    "consistency_method": "i2i_reference"}
        if job_id is not None:
            portrait["job_id"] = str(job_id)
        self.library.append(dict(
            id=self.uuid(), user_id=user, asset_type="image", storage_path=key, file_size_bytes=len(OBJECT),
            mime_type="image/png", thumbnail_path=None, original_prompt="portrait of a character",
            model_used="fal-ai/flux/dev", generation_seed=self.rng.randrange(2**31), width=832, height=1216,
            tags="{}" if generic else "{character,portrait}", content_category="general" if generic else "character",
            roleplay_metadata="{}" if generic else json.dumps(portrait, ensure_ascii=False),
            character_id=None if generic else character["id"], output_type=None if generic else "portrait",
            generation_metadata="{}" if generic or job_id is None else json.dumps({"job_id": str(job_id)}),
            created_at=created, updated_at=created,
        ))
        if store:
            self.objects.append(("user-library", key, created))

    def portrait(self, **extra: Any) -> dict[str, Any]:
        meta = {"destination": PORTRAIT, "prompt": "portrait of a character, detailed, soft light",
                "contentType": self.rng.choice(["sfw", "nsfw"]), "model": "fal-ai/flux/dev"}
        meta.update({k: v for k, v in extra.items() if v is not None})
        return meta

    def name_meta(self, name: str) -> dict[str, Any]:
        """The create-character dialog sends only characterName; some callers send character_name."""
        return self.portrait(**({"characterName": name} if self.rng.random() < 0.8 else {"character_name": name}))


# -- stories: jobs in trouble ------------------------------------------------------------------------


def incident(b: Builder) -> None:
    user, t, name = b.user(), b.when(), b.common_name()
    job = b.job(user, status="processing", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 9 * S)
    b.character(name, user, created=t + 25 * S, image_url=b.fal_url())


def stuck_by_id(b: Builder) -> None:
    """The result_url bug: the job stayed processing; auto-save never ran."""
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(0.1, 40))
    job = b.job(user, status="processing", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 8 * S, thumbnail=b.rng.random() < 0.3)


def stuck_but_saved(b: Builder) -> None:
    """The job stayed processing although auto-save then did everything."""
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(0.1, 40))
    job = b.job(user, status="processing", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 8 * S)
    key = f"{user}/{job}_{character['id']}.png"
    b.library_row(user, key, created=t + 10 * S, character=character, job_id=job)
    character["image_url"] = character["reference_image_url"] = f"user-library/{key}"


def copy_failed(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 30))
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    _, key = b.asset(job, user, created=t + 7 * S)
    character["image_url"] = f"workspace-temp/{key}"


def row_failed(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 30))
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    _, key = b.asset(job, user, created=t + 6 * S)
    b.objects.append(("user-library", f"{user}/{job}_{character['id']}.png", t + 7 * S))
    character["image_url"] = f"workspace-temp/{key}"


def character_not_updated(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(0.1, 30))
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 6 * S)
    b.library_row(user, f"{user}/{job}_{character['id']}.png", created=t + 8 * S, character=character, job_id=job)


def generic_row(b: Builder) -> None:
    user, t, name = b.user(), b.when(), b.common_name()
    job = b.job(user, status="completed", created=t, metadata=b.name_meta(name))
    asset_id, _ = b.asset(job, user, created=t + 8 * S)
    b.character(name, user, created=t + 40 * S, image_url=b.fal_url())
    b.library_row(user, f"{user}/{asset_id}.png", created=t + 180 * S, generic=True)


def source_only(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 20))
    job = b.job(user, status="completed", created=t,
                metadata={"source": PORTRAIT, "character_id": str(character["id"]), "prompt": "edit"})
    b.asset(job, user, created=t + 8 * S)


def cleaned_up(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(0.5, 10))
    job = b.job(user, status="failed", created=t, error=CLEANUP_ERROR,
                metadata=b.portrait(character_id=str(character["id"])))
    b.temp_object(job, user, created=t + 9 * S)  # the asset row was deleted, the object was not


def odd_name(b: Builder) -> None:
    user, t = b.user(), b.when()
    name = b.rng.choice(["Zoë “Z” O'Brien, (the 2nd)", "Mélodie\t✨", "Ana\\Maria", "Ly\nra", "名前 ちゃん", "DROP'); --"])
    job = b.job(user, status="processing", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 8 * S)
    b.character(name, user, created=t + 33 * S, image_url=b.fal_url())


def duplicates(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 20))
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 5 * S)
    key = f"{user}/{job}_{character['id']}.png"
    b.library_row(user, key, created=t + 6 * S, character=character, job_id=job)
    b.library_row(user, key, created=t + 9 * S, character=character, job_id=job, store=False)
    character["image_url"] = f"user-library/{key}"


def ambiguous(b: Builder) -> None:
    user, t, name = b.user(), b.when(), b.common_name()
    job = b.job(user, status="processing", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 8 * S)
    b.character(name, user, created=t + 20 * S)
    b.character(name, user, created=t + 50 * S)


def not_found(b: Builder) -> None:
    user, t, name = b.user(), b.when(), b.common_name()
    job = b.job(user, status="processing", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 8 * S)
    b.character(name.lower() + " ", user, created=t + 30 * S)


def linked_to_older(b: Builder) -> None:
    user, t, name = b.user(), b.when(), b.common_name()
    old = b.character(name, user, created=t - DAY * b.rng.uniform(5, 60))
    job = b.job(user, status="completed", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 8 * S)
    key = f"{user}/{job}_{old['id']}.png"
    b.library_row(user, key, created=t + 10 * S, character=old, job_id=job)
    old["image_url"] = old["reference_image_url"] = f"user-library/{key}"
    b.character(name, user, created=t + 20 * S, image_url=b.fal_url())


def deleted(b: Builder) -> None:
    user, t = b.user(), b.when()
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(b.uuid())))
    b.asset(job, user, created=t + 8 * S)


def owner_mismatch(b: Builder) -> None:
    user, other, t = b.user(), b.user(), b.when()
    if other == user:
        other = b.users[0] if user != b.users[0] else b.users[-1]
    theirs = b.character(b.common_name(), other, created=t - DAY * b.rng.uniform(5, 60))
    job = b.job(user, status="processing", created=t, metadata=b.portrait(character_id=str(theirs["id"])))
    b.asset(job, user, created=t + 8 * S)


def no_reference(b: Builder) -> None:
    user, t = b.user(), b.when()
    job = b.job(user, status="processing", created=t, metadata=b.portrait())
    b.asset(job, user, created=t + 8 * S)


def external_url(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 20))
    job = b.job(user, status="processing", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 8 * S, path=b.fal_url(), store=False)


def output_missing(b: Builder) -> None:
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 20))
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 8 * S, path="", store=False)


def no_output(b: Builder) -> None:
    user, t = b.user(), b.when(newest=timedelta(hours=1))
    b.job(user, status=b.rng.choice(["processing", "queued"]), created=t, metadata=b.name_meta(b.common_name()))


def foreign_asset(b: Builder) -> None:
    user, other, t = b.user(), b.user(), b.when()
    if other == user:
        other = b.users[0] if user != b.users[0] else b.users[-1]
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 20))
    job = b.job(user, status="processing", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, other, created=t + 8 * S, store=False)
    b.temp_object(job, user, created=t + 8 * S)


# story -> (weight among the jobs in trouble, the state charfix should give it)
TROUBLE = {
    incident: (600, "repairable"),
    stuck_by_id: (700, "repairable"),
    stuck_but_saved: (300, "repairable"),
    copy_failed: (200, "repairable"),
    row_failed: (150, "repairable"),
    character_not_updated: (150, "repairable"),
    generic_row: (100, "repairable"),
    source_only: (100, "repairable"),
    cleaned_up: (200, "repairable"),
    odd_name: (30, "repairable"),
    duplicates: (60, "needs_review"),
    ambiguous: (60, "needs_review"),
    not_found: (60, "needs_review"),
    linked_to_older: (60, "needs_review"),
    deleted: (60, "needs_review"),
    owner_mismatch: (40, "needs_review"),
    no_reference: (40, "needs_review"),
    external_url: (60, "needs_review"),
    foreign_asset: (20, "needs_review"),
    output_missing: (60, "lost"),
    no_output: (60, "failed"),
}


# -- stories: jobs that are fine ---------------------------------------------------------------------


def saved_by_id(b: Builder) -> None:
    user, t = b.user(), b.when()
    earlier = [c for c in b.reusable.get(user, []) if c["created_at"] < t]
    if earlier and b.rng.random() < 0.5:
        character = b.rng.choice(earlier)
    else:
        character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(0.05, 60))
        b.reusable.setdefault(user, []).append(character)
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    recent = b.now - t < 7 * DAY  # workspace-temp objects expire after a week
    b.asset(job, user, created=t + 8 * S, store=recent, thumbnail=recent and b.rng.random() < 0.3)
    key = f"{user}/{job}_{character['id']}.png"
    b.library_row(user, key, created=t + 10 * S, character=character, job_id=job if b.rng.random() < 0.7 else None)
    b.saved_keys.setdefault(character["id"], []).append((t, key))


def saved_by_name(b: Builder) -> None:
    """Auto-save's name lookup found the user's existing character, as intended."""
    user, t, name = b.user(), b.when(), b.common_name()
    character = b.character(name, user, created=t - DAY * b.rng.uniform(1, 60))
    job = b.job(user, status="completed", created=t, metadata=b.name_meta(name))
    b.asset(job, user, created=t + 8 * S, store=b.now - t < 7 * DAY)
    key = f"{user}/{job}_{character['id']}.png"
    b.library_row(user, key, created=t + 10 * S, character=character, job_id=job)
    character["image_url"] = character["reference_image_url"] = f"user-library/{key}"


def saved_image_changed(b: Builder) -> None:
    """Saved; the user has since chosen another portrait, which charfix must keep."""
    user, t = b.user(), b.when()
    character = b.character(b.common_name(), user, created=t - DAY * b.rng.uniform(1, 60),
                            image_url=f"user-library/{user}/{b.uuid()}.png")
    job = b.job(user, status="completed", created=t, metadata=b.portrait(character_id=str(character["id"])))
    b.asset(job, user, created=t + 8 * S, store=False)
    b.library_row(user, f"{user}/{job}_{character['id']}.png", created=t + 10 * S, character=character, job_id=job)


def failed_for_real(b: Builder) -> None:
    user, t = b.user(), b.when()
    b.job(user, status="failed", created=t, error="fal.ai returned 500", metadata=b.name_meta(b.common_name()))


def in_progress(b: Builder) -> None:
    """Started a minute before generation: in progress for 15 minutes, then failed (no output)."""
    user, t = b.user(), b.now - 60 * S
    b.job(user, status="processing", created=t, metadata=b.name_meta(b.common_name()))


def tell(b: Builder, *, portraits: int, trouble: int, in_progress_jobs: int) -> None:
    """All the portrait jobs: `trouble` of them in trouble, spread over TROUBLE by weight."""
    total = sum(w for w, _ in TROUBLE.values())
    for story, (weight, state) in TROUBLE.items():
        n = max(1, round(trouble * weight / total))
        for _ in range(n):
            story(b)
        b.expected[state] = b.expected.get(state, 0) + n
    rest = portraits - len(b.jobs)
    fine = [(failed_for_real, round(rest * 0.03)), (in_progress, in_progress_jobs),
            (saved_by_name, round(rest * 0.15)), (saved_image_changed, round(rest * 0.08))]
    fine.append((saved_by_id, rest - sum(n for _, n in fine)))
    for story, n in fine:
        for _ in range(n):
            story(b)
    _point_at_newest(b)


def _point_at_newest(b: Builder) -> None:
    by_id = {c["id"]: c for c in b.characters}
    for character_id, keys in b.saved_keys.items():
        newest = max(keys)[1]
        by_id[character_id]["image_url"] = by_id[character_id]["reference_image_url"] = f"user-library/{newest}"
