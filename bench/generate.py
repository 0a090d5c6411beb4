"""Fill an embedded Postgres with a production-like charfix dataset, loaded with COPY.

    python bench/generate.py                      # 1,000,000 jobs, the issue's sizes (a few minutes)
    python bench/generate.py --jobs 100000        # everything a tenth as large
    python bench/generate.py --jobs 1000000 --scale 0.5 --seed 7

The tables are the application's (cli/charfix/demo/schema.sql: its checks, defaults, triggers and
indexes, none on jobs.metadata). Most jobs are not portraits; their metadata has other destinations
and shapes, some of it null or a bare string. The portrait jobs are bench/stories.py. Objects are
small files in bench/out/datasets/<name>/storage/, and their listing is also loaded into a
`storage.objects` table, where Supabase keeps it: the hand-written SQL baseline reads it there.

Deterministic for a seed: ids, names, choices and ages are the same on every run; timestamps are
ages back from --now (default: the current minute).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, UTC
from pathlib import Path

from dataset import STORAGE_COLUMNS, DEFAULT_JOBS, Spec, admin_connection, database_url, drop, server_uri
from stories import COMMON_NAMES, OBJECT, WINDOW, Builder, tell

from charfix.demo.database import schema_sql

COLUMNS = {
    "jobs": ("id", "user_id", "job_type", "status", "error_message", "metadata", "quality", "model_type", "attempts",
             "created_at", "started_at", "completed_at", "destination", "moderation_status"),
    "workspace_assets": ("id", "user_id", "job_id", "asset_index", "asset_type", "temp_storage_path",
                         "file_size_bytes", "mime_type", "thumbnail_path", "generation_seed", "original_prompt",
                         "model_used", "generation_settings", "width", "height", "created_at", "expires_at"),
    "characters": ("id", "user_id", "name", "description", "image_url", "reference_image_url", "seed_locked",
                   "is_public", "created_at", "updated_at"),
    "user_library": ("id", "user_id", "asset_type", "storage_path", "file_size_bytes", "mime_type",
                     "thumbnail_path", "original_prompt", "model_used", "generation_seed", "width", "height", "tags",
                     "content_category", "roleplay_metadata", "character_id", "output_type", "generation_metadata",
                     "created_at", "updated_at"),
    "storage.objects": ("bucket_id", "name", "created_at", "updated_at", "metadata"),
}
STORAGE_SCHEMA = """
create schema if not exists storage;
create table storage.objects (
    id uuid primary key default gen_random_uuid(),
    bucket_id text not null,
    name text collate "C" not null,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    metadata jsonb,
    unique (bucket_id, name)
);
create schema if not exists bench;
create table bench.dataset (key text primary key, value jsonb not null);
"""
PROMPTS = [
    "a cozy cabin in the snowy mountains at dusk, cinematic lighting, 35mm",
    "cyberpunk street market at night, neon reflections in puddles, ultra detailed",
    "portrait of a woman with silver hair in a sunlit garden, soft focus, film grain",
    "a dragon curled around a lighthouse, stormy sea, dramatic clouds, oil painting",
    "two friends laughing in a cafe, candid photo, warm tones, shallow depth of field",
    "anime style girl on a rooftop, sunset, wind in her hair, detailed background",
]
MODELS = ["fal-ai/flux/dev", "fal-ai/flux-pro", "sdxl-lustify", "rv51", "wan-2.1", "seedream-v4"]
RECENT = timedelta(days=7)  # workspace assets and objects of non-portrait jobs are kept a week


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    spec = Spec(jobs=args.jobs, scale=args.scale, seed=args.seed)
    now = datetime.fromisoformat(args.now) if args.now else None
    generate(spec, now=now, log=print)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="rows in jobs (default 1,000,000)")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiplier for portraits (20,000), jobs in trouble (3,000), characters (100,000), "
                             "library rows (300,000) and users (20,000); default jobs / 1,000,000")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--now", default=None, help="anchor time, ISO 8601 (default: the current minute)")


def generate(spec: Spec, *, now: datetime | None = None, log=print) -> dict:
    started = time.perf_counter()
    now = now or datetime.now(UTC).replace(second=0, microsecond=0)
    rng = random.Random(spec.seed)
    users = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(spec.count("users"))]
    builder = Builder(rng=rng, now=now, users=users)
    tell(builder, portraits=spec.count("portraits"), trouble=spec.count("trouble"),
         in_progress_jobs=max(1, round(5 * spec.factor)))
    portraits = len(builder.jobs)
    _background_characters(builder, spec.count("characters") - len(builder.characters))
    background = _background_jobs(builder, spec.jobs - portraits)  # consumed while loading
    admin = server_uri()
    drop(admin, spec.database)
    with admin_connection(admin) as conn:
        conn.execute(f"create database {spec.database}")
    shutil.rmtree(spec.storage, ignore_errors=True)
    with admin_connection(database_url(admin, spec.database)) as conn:
        conn.execute(schema_sql())
        conn.execute(STORAGE_SCHEMA)
        conn.execute(STORAGE_COLUMNS)
        _copy(conn, "characters", builder.characters)
        jobs = heapq.merge(sorted(builder.jobs, key=_by_time), background, key=_by_time)
        job_count = _copy(conn, "jobs", jobs)  # in created_at order, like the live heap
        _library_fill(builder, spec.count("library") - len(builder.library))
        _copy(conn, "workspace_assets", builder.assets)
        _copy_library(conn, builder.library)
        _copy(conn, "storage.objects", _write_objects(spec.storage, builder.objects))
        summary = {
            "spec": {"jobs": spec.jobs, "scale": spec.factor, "seed": spec.seed}, "now": now.isoformat(),
            "jobs": job_count, "portrait_jobs": portraits, "expected_states": builder.expected,
            "characters": len(builder.characters), "library_rows": len(builder.library),
            "workspace_assets": len(builder.assets), "objects": len(builder.objects), "users": len(users),
        }
        conn.execute("insert into bench.dataset values ('summary', %s)", (json.dumps(summary),))
        conn.execute("vacuum analyze")
        summary["database_size"] = conn.execute(
            "select pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    log(f"dataset {spec.name}: {json.dumps(summary)}")
    return summary


def _by_time(row: dict) -> datetime:
    return row["created_at"]


def _background_characters(b: Builder, count: int) -> None:
    """Characters created over a year, most with common names: the same name recurs within a user
    and across users, as it does in the application."""
    for _ in range(max(0, count)):
        user = b.user() if b.rng.random() > 0.005 else None  # a few system characters have no owner
        name = b.common_name() if b.rng.random() < 0.75 else f"{b.rng.choice(COMMON_NAMES)} {b.uuid().hex[:5]}"
        created = b.now - timedelta(days=b.rng.random() * 365)
        image = b.rng.choice([None, b.fal_url(), f"user-library/{user}/{b.uuid()}.png"])
        b.character(name, user, created=created, image_url=image)


def _background_jobs(b: Builder, count: int) -> Iterator[dict]:
    """The jobs that are not portraits, oldest first, generated as they are loaded."""
    ages = sorted((b.rng.random() * WINDOW.total_seconds() for _ in range(max(0, count))), reverse=True)
    for age in ages:
        created = b.now - timedelta(seconds=age)
        user = b.user()
        status = b.rng.choices(["completed", "failed", "processing", "queued", "cancelled"], [85, 7, 6, 1, 1])[0]
        job_id = b.uuid()
        if status in ("completed", "processing") and age < RECENT.total_seconds():
            asset_id, key = b.asset(job_id, user, created=created + 12 * timedelta(seconds=1))
            b.assets[-1]["original_prompt"] = b.rng.choice(PROMPTS)
        yield dict(
            id=job_id, user_id=user, job_type=b.rng.choice(["image_high", "image_fast", "video_high", "sdxl_image_fast"]),
            status=status, error_message="provider error" if status == "failed" else None,
            metadata=_metadata(b), quality=b.rng.choice(["high", "fast"]), model_type=b.rng.choice(MODELS),
            attempts=1, created_at=created, started_at=created + timedelta(seconds=1),
            completed_at=created + timedelta(seconds=20) if status == "completed" else None,
            destination=b.rng.choice(["library", "workspace"]), moderation_status="pending",
        )


def _metadata(b: Builder) -> str | None:
    """What the application's many callers put into jobs.metadata, other than portrait requests."""
    r = b.rng.random()
    common = {"prompt": b.rng.choice(PROMPTS), "model": b.rng.choice(MODELS), "num_images": 1,
              "width": 1024, "height": 1024, "contentType": b.rng.choice(["sfw", "nsfw"])}
    if r < 0.55:
        return json.dumps({"destination": "workspace", **common})
    if r < 0.70:
        return json.dumps({"destination": "library", **common})
    if r < 0.78:
        return json.dumps({"source": "roleplay", "scene_id": str(b.uuid()), "character_id": str(b.uuid()), **common})
    if r < 0.83:
        return json.dumps({"destination": "character_scene", "character_id": str(b.uuid()), **common})
    if r < 0.88:
        return json.dumps({"source": "image_editor", "reference_image_url": b.fal_url(), **common})
    if r < 0.93:
        return None
    if r < 0.97:
        return "{}"
    if r < 0.985:
        return json.dumps("legacy request")
    if r < 0.99:
        return json.dumps([{"destination": "character_portrait"}])  # not an object: not a portrait
    return json.dumps({"destination": b.rng.choice(["Character_Portrait", "character_portraits", 7]), **common})


def _library_fill(b: Builder, count: int) -> None:
    """Library rows that are not portraits: manual saves, scenes, uploaded character art."""
    for _ in range(max(0, count)):
        user = b.user()
        created = b.now - timedelta(days=b.rng.random() * 365)
        kind = b.rng.random()
        b.library.append(dict(
            id=b.uuid(), user_id=user, asset_type="image" if kind < 0.9 else "video",
            storage_path=f"{user}/{b.uuid()}.{'png' if kind < 0.9 else 'mp4'}", file_size_bytes=1_500_000,
            mime_type="image/png" if kind < 0.9 else "video/mp4", thumbnail_path=None,
            original_prompt=b.rng.choice(PROMPTS), model_used=b.rng.choice(MODELS), generation_seed=b.seed(),
            width=1024, height=1024, tags="{}" if kind < 0.7 else "{favorite}",
            content_category="character" if 0.95 < kind else b.rng.choice(["general", "scene"]),
            roleplay_metadata="{}" if kind < 0.8 else json.dumps({"type": "scene", "scene_id": str(b.uuid())}),
            character_id=None, output_type=None, generation_metadata="{}", created_at=created, updated_at=created,
        ))


def _write_objects(root: Path, objects: list[tuple[str, str, datetime]]) -> Iterator[dict]:
    made: set[Path] = set()
    for bucket, key, written in objects:
        path = root / bucket / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(OBJECT)
        os.utime(path, (written.timestamp(), written.timestamp()))
        yield dict(bucket_id=bucket, name=key, created_at=written, updated_at=written,
                   metadata=json.dumps({"size": len(OBJECT), "mimetype": "image/png"}))


def _copy_library(conn, rows: list[dict]) -> None:
    """user_library, with the app's portrait-count trigger (docs/domain.md section 6) applied once for
    the whole table instead of once per row: each firing counts the character's rows without an index,
    which made the 1,000,000-job COPY take over 15 minutes. The counts, and the characters' updated_at
    that the update moves, end as the trigger leaves them."""
    trigger = conn.execute("select 1 from pg_trigger where tgname = 'user_library_portrait_count'").fetchone()
    if trigger is None:
        _copy(conn, "user_library", rows)
        return
    conn.execute("alter table user_library disable trigger user_library_portrait_count")
    try:
        _copy(conn, "user_library", rows)
        conn.execute("update characters c set portrait_count = n.count from (select character_id, count(*) as count "
                     "from user_library where character_id is not null and output_type = 'portrait' "
                     "group by character_id) n where c.id = n.character_id")
    finally:
        conn.execute("alter table user_library enable trigger user_library_portrait_count")


def _copy(conn, table: str, rows: Iterable[dict]) -> int:
    columns = COLUMNS[table]
    count = 0
    with conn.cursor() as cursor:
        with cursor.copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
            lines = []
            for row in rows:
                lines.append("\t".join(_cell(row[c]) for c in columns))
                count += 1
                if len(lines) >= 5000:
                    copy.write("\n".join(lines) + "\n")
                    lines = []
            if lines:
                copy.write("\n".join(lines) + "\n")
    return count


def _cell(value) -> str:
    """COPY's text format."""
    if value is None:
        return r"\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
