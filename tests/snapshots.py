"""The observable end state of a database and storage folder, for comparing runs."""

from __future__ import annotations

from pathlib import Path

import psycopg


def snapshot(db_url: str, storage: Path) -> dict:
    with psycopg.connect(db_url) as conn:
        jobs = conn.execute("select id, status, completed_at, metadata->>'character_id' from jobs order by id").fetchall()
        rows = conn.execute(
            "select user_id, storage_path, tags, content_category, roleplay_metadata - 'job_id', file_size_bytes "
            "from user_library order by user_id, storage_path, created_at"
        ).fetchall()
        characters = conn.execute(
            "select id, image_url, reference_image_url, seed_locked from characters order by id"
        ).fetchall()
    objects = sorted(
        (str(p.relative_to(storage)), p.stat().st_size) for p in storage.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    return {"jobs": jobs, "library": rows, "characters": characters, "objects": objects}


def duplicate_rows(db_url: str) -> list:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "select user_id, storage_path, count(*) from user_library group by 1, 2 having count(*) > 1"
        ).fetchall()
