"""The portrait shape (diagnosis/portrait.py): what counts as a saved, visible portrait and what a repair
writes to make one. Pure tests first; then both adapters write what the module returns, column by column."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from psycopg.rows import dict_row

from charfix.diagnosis import portrait
from charfix.diagnosis.portrait import NewLibraryItem
from charfix.models import Character, Job, LibraryItem, WorkspaceAsset
from charfix.repository.postgres import PostgresRepository
from test_backends import backends, job  # noqa: F401 (fixtures)

T0 = datetime(2026, 3, 14, 17, 19, 42, tzinfo=UTC)
USER = uuid5(NAMESPACE_URL, "portrait-test:user")
JOB = Job(id=uuid5(NAMESPACE_URL, "portrait-test:job"), user_id=USER, job_type="image_high", status="processing",
          metadata={"destination": "character_portrait", "characterName": "Mandy", "prompt": "a knight",
                    "model": "flux", "consistency_method": "seed"}, created_at=T0)
MANDY = Character(id=uuid5(NAMESPACE_URL, "portrait-test:mandy"), user_id=USER, name="Mandy", created_at=T0)
ASSET = WorkspaceAsset(id=uuid5(NAMESPACE_URL, "portrait-test:asset"), user_id=USER, job_id=JOB.id,
                       temp_storage_path="x.png", file_size_bytes=5, mime_type="image/webp", generation_seed=2**40,
                       original_prompt="from the asset", model_used="fal-ai/flux/dev", width=8, height=9)
KEY = f"{USER}/{JOB.id}_{MANDY.id}.png"


def row(**values) -> LibraryItem:
    return LibraryItem(id=uuid5(NAMESPACE_URL, "portrait-test:row"), user_id=USER, storage_path=f"{USER}/{ASSET.id}.png",
                       created_at=T0, **values)


def as_read(item: NewLibraryItem) -> LibraryItem:
    return LibraryItem(**item.model_dump(), created_at=T0)


# -- what the Characters tab shows ----------------------------------------------------------------


@pytest.mark.parametrize(("values", "visible"), [
    ({}, False),
    ({"tags": ["general"], "content_category": "general", "roleplay_metadata": {"type": "other"}}, False),
    ({"tags": ["character"]}, True),
    ({"content_category": "character"}, True),
    ({"roleplay_metadata": {"type": "character_portrait"}}, True),
    ({"tags": ["portrait"]}, False),  # only `character` among the tags counts
    ({"roleplay_metadata": ["character_portrait"]}, False),  # anything at all may be stored there
    ({"roleplay_metadata": "character_portrait", "tags": None, "content_category": None}, False),
])
def test_what_the_characters_tab_shows(values, visible):
    assert portrait.is_visible(row(**values)) is visible


# -- a new row ----------------------------------------------------------------------------------------


def test_a_new_row_is_the_portrait_the_app_would_have_saved():
    item = portrait.new_row(JOB, MANDY, ASSET, key=KEY, size=1234, thumbnail_path=f"{KEY[:-4]}.thumb.webp")
    assert item.id == portrait.library_row_id(JOB.id) != portrait.library_row_id(ASSET.id)
    assert (item.user_id, item.storage_path, item.file_size_bytes, item.thumbnail_path) == (
        USER, KEY, 1234, f"{KEY[:-4]}.thumb.webp")
    assert (item.asset_type, item.mime_type, item.original_prompt, item.model_used, item.generation_seed,
            item.width, item.height) == ("image", "image/webp", "from the asset", "fal-ai/flux/dev", 2**40, 8, 9)
    assert (item.tags, item.content_category, item.output_type, item.character_id) == (
        ["character", "portrait"], "character", "portrait", MANDY.id)
    assert item.roleplay_metadata == {"type": "character_portrait", "character_id": str(MANDY.id),
                                      "character_name": "Mandy", "job_id": str(JOB.id), "consistency_method": "seed"}
    assert item.generation_metadata == {"job_id": str(JOB.id), "repaired_by": "charfix"}
    assert portrait.is_visible(as_read(item))


def test_without_an_asset_the_row_comes_from_the_metadata_the_key_and_the_job_type():
    bare = JOB.model_copy(update={"metadata": {"consistency_method": 7}})
    item = portrait.new_row(bare, MANDY, None, key=KEY.replace(".png", ".jpg"), size=1)
    assert (item.asset_type, item.mime_type, item.original_prompt, item.model_used) == ("image", "image/jpeg", "",
                                                                                       "image_high")
    assert (item.generation_seed, item.width, item.height, item.thumbnail_path) == (None, None, None, None)
    assert "consistency_method" not in item.roleplay_metadata  # only a text value is copied
    named = portrait.new_row(JOB, MANDY, None, key=KEY, size=1)
    assert (named.original_prompt, named.model_used, named.mime_type) == ("a knight", "flux", "image/png")


def test_a_fetched_file_decides_its_own_type_whatever_the_asset_claimed():
    item = portrait.new_row(JOB, MANDY, ASSET, key=KEY.replace(".png", ".mp4"), size=1, fetched_type="video/mp4")
    assert (item.asset_type, item.mime_type) == ("video", "video/mp4")


def test_an_insert_is_recognised_by_its_id_or_by_the_job_it_names():
    item = portrait.new_row(JOB, MANDY, ASSET, key=KEY, size=1)
    assert portrait.is_insert_of(as_read(item), item)
    other = row(roleplay_metadata={"job_id": str(JOB.id)})
    assert portrait.is_insert_of(other, item)
    assert not portrait.is_insert_of(row(roleplay_metadata={"job_id": str(ASSET.id)}), item)
    assert not portrait.is_insert_of(row(roleplay_metadata=None), item.model_copy(update={"roleplay_metadata": {}}))


# -- an upgrade -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tags", "roleplay", "generation"), [
    (None, None, None),
    (["general", "portrait", "b"], {"type": "manual", "note": "kept"}, {"seed": 3}),
    ([], ["not", "an", "object"], "text"),
])
def test_an_upgrade_keeps_what_the_row_had_and_makes_it_visible(tags, roleplay, generation):
    generic = row(tags=tags, content_category="general", roleplay_metadata=roleplay, generation_metadata=generation)
    upgrade = portrait.upgrade(generic, JOB, MANDY)
    values = upgrade.values()
    assert values["tags"] == sorted(set(tags or []) | {"character", "portrait"})
    kept = roleplay if isinstance(roleplay, dict) else {}
    assert values["roleplay_metadata"] == {**kept, **portrait.roleplay_metadata(JOB, MANDY)}
    assert values["generation_metadata"] == {**(generation if isinstance(generation, dict) else {}), "job_id": str(JOB.id)}
    assert (values["content_category"], values["character_id"], values["output_type"]) == ("character", MANDY.id,
                                                                                           "portrait")
    assert portrait.is_visible(generic.model_copy(update=values))
    assert upgrade.read("tags") == tags  # the REST write is conditional on these as read


def test_the_audit_log_shows_the_upgrade_as_before():
    generic = row(tags=["general"], roleplay_metadata={"note": 1})
    planned = portrait.upgrade(generic, JOB, MANDY).planned()
    assert planned == {**generic.model_dump(mode="json"), "roleplay_metadata": portrait.roleplay_metadata(JOB, MANDY),
                       "character_id": str(MANDY.id)}


# -- both adapters write what the module returns ------------------------------------------------------


def stored_row(seeded, row_id: UUID) -> dict:
    """The row as the table holds it, every column (what the app reads, not what charfix's models read)."""
    with seeded.connect() as conn:
        return conn.cursor(row_factory=dict_row).execute("select * from user_library where id = %s", (row_id,)).fetchone()


def _character(backends, seeded) -> Character:  # noqa: F811 (the fixture imported above)
    read = job(backends, seeded, "incident")
    ids = [c.id for c in backends.repository.characters_for([], [(read.user_id, "Mandy")])]
    return backends.repository.characters_for(ids[:1], [])[0]


def test_both_adapters_insert_every_field_of_the_new_row(backends, seeded):  # noqa: F811
    repo = backends.repository
    read, character = job(backends, seeded, "incident"), _character(backends, seeded)
    item = portrait.new_row(read, character, None, key=f"{read.user_id}/{read.id}_{character.id}.png", size=3)
    inserted = repo.insert_library_item(item)
    assert set(item.model_dump()) <= repo.schema.columns["user_library"]  # the newer schema has every column
    stored = stored_row(seeded, inserted.id)
    assert {column: stored[column] for column in item.model_dump()} == item.model_dump()


def test_both_adapters_apply_every_operation_of_the_upgrade(backends, seeded):  # noqa: F811
    repo = backends.repository
    read, character = job(backends, seeded, "incident"), _character(backends, seeded)
    generic = repo.insert_library_item(NewLibraryItem(
        user_id=read.user_id, asset_type="image", storage_path=f"{read.user_id}/generic.png", file_size_bytes=1,
        mime_type="image/png", original_prompt="p", model_used="m", tags=["general"], content_category="general",
        roleplay_metadata={"note": "kept"}, generation_metadata={"seed": 3}))
    upgrade = portrait.upgrade(generic, read, character)
    upgraded = repo.upgrade_library_item(upgrade)
    stored = stored_row(seeded, generic.id)
    assert {column: stored[column] for column in upgrade.values()} == upgrade.values()
    assert portrait.is_visible(upgraded)


def test_an_older_schema_gets_the_columns_it_has(seeded_old):
    repo = PostgresRepository.connect(seeded_old.db_url)
    try:
        user, job_id = UUID(int=1), UUID(int=2)
        bare = JOB.model_copy(update={"id": job_id, "user_id": user})
        item = portrait.new_row(bare, MANDY, None, key=f"{user}/{job_id}_x.png", size=1)
        inserted = repo.insert_library_item(item)
        assert not repo.schema.has("user_library", "output_type")
        assert (inserted.tags, inserted.content_category, inserted.output_type) == (["character", "portrait"],
                                                                                    "character", None)
        upgraded = repo.upgrade_library_item(portrait.upgrade(inserted, bare, MANDY))
        assert upgraded.roleplay_metadata == item.roleplay_metadata and upgraded.character_id is None
    finally:
        repo.close()
