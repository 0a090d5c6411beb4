"""The demo's cases, one function per story (docs/domain.md section 4, row by row)."""

from __future__ import annotations

from datetime import datetime, timedelta

from charfix.demo.cases import CLEANUP_ERROR, INCIDENT_JOB, Sample, portrait, stable_id

ALICE = stable_id("user:alice")  # the incident's user
BEN = stable_id("user:ben")
CHLOE = stable_id("user:chloe")
MALLORY = stable_id("user:mallory")  # owns a public character others must never be linked to
# Their sign-in emails (auth.users). The incident's user writes in about "Mandy" from mandy@example.com.
EMAILS = {ALICE: "mandy@example.com", BEN: "ben@example.com", CHLOE: "chloe@example.com",
          MALLORY: "mallory@example.com"}
FAL_URL = "https://v3.fal.media/files/penguin/demo-{}.png"
S = timedelta(seconds=1)


def build_sample(now: datetime) -> Sample:
    sample = Sample(now=now)
    for story in STORIES:
        story(sample)
    return sample


def incident(s: Sample) -> None:
    t = s.at(hours=2)
    job = s.job("incident", ALICE, status="processing", created=t, job_id=INCIDENT_JOB,
                metadata=portrait(characterName="Mandy", contentType="sfw"))
    s.asset(job, ALICE, created=t + 9 * S, prompt="Mandy, red hair, freckles")
    s.character("Mandy", ALICE, created=t + 25 * S, image_url=FAL_URL.format("mandy"))
    s.expect("incident", job, "repairable", ["job_not_completed", "character_id_missing", "character_created_later"],
             "Stuck in processing with its image stored; 'Mandy' was created 25 s after the job.")


def saved(s: Sample) -> None:
    t = s.at(hours=30)
    character = s.character("Iris", ALICE, created=t - timedelta(days=3))
    job = s.job("saved", ALICE, status="completed", created=t, metadata=portrait(character_id=str(character)))
    _, key = s.asset(job, ALICE, created=t + 8 * S)
    lib_key = f"{ALICE}/{job}_{character}.png"
    s.library_row(ALICE, lib_key, created=t + 10 * S, character_id=character, character_name="Iris", job_id=job)
    s.characters[-1]["image_url"] = s.characters[-1]["reference_image_url"] = f"user-library/{lib_key}"
    s.expect("saved", job, "saved", [], "Everything worked: the control case.")


def copy_failed(s: Sample) -> None:
    t = s.at(hours=20)
    character = s.character("Dax", BEN, created=t - timedelta(days=10))
    job = s.job("copy-failed", BEN, status="completed", created=t, metadata=portrait(character_id=str(character)))
    _, key = s.asset(job, BEN, created=t + 7 * S, seed=3_000_000_000)
    s.characters[-1]["image_url"] = f"workspace-temp/{key}"
    s.expect("copy_failed", job, "repairable", ["library_copy_missing", "character_image_not_updated"],
             "The copy to user-library failed after the character was pointed at the temp image; seed above 2^31.")


def row_failed(s: Sample) -> None:
    t = s.at(hours=19)
    character = s.character("Vex", BEN, created=t - timedelta(days=2))
    job = s.job("row-failed", BEN, status="completed", created=t, metadata=portrait(character_id=str(character)))
    _, key = s.asset(job, BEN, created=t + 6 * S)
    s.objects.append(("user-library", f"{BEN}/{job}_{character}.png", s.objects[-1][2], t + 7 * S))
    s.characters[-1]["image_url"] = f"workspace-temp/{key}"
    s.expect("row_failed", job, "repairable", ["library_row_missing", "character_image_not_updated"],
             "The object reached user-library but the row insert failed.")


def character_not_updated(s: Sample) -> None:
    t = s.at(hours=18)
    character = s.character("Orla", BEN, created=t - timedelta(days=1))
    job = s.job("not-updated", BEN, status="completed", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, BEN, created=t + 6 * S)
    lib_key = f"{BEN}/{job}_{character}.png"
    s.library_row(BEN, lib_key, created=t + 8 * S, character_id=character, character_name="Orla", job_id=job)
    s.expect("character_not_updated", job, "repairable", ["character_image_not_updated"],
             "Row and object saved; the final character update failed.")


def generic_row(s: Sample) -> None:
    t = s.at(hours=16)
    job = s.job("generic", CHLOE, status="completed", created=t, metadata=portrait(characterName="Rook"))
    asset_id, _ = s.asset(job, CHLOE, created=t + 8 * S)
    s.character("Rook", CHLOE, created=t + 40 * S, image_url=FAL_URL.format("rook"))
    s.library_row(CHLOE, f"{CHLOE}/{asset_id}.png", created=t + 3 * 60 * S, generic=True)
    s.expect("generic_row", job, "repairable", ["character_id_missing", "character_created_later", "library_row_generic"],
             "The user saved the image by hand: a generic row the Characters tab does not show.")


def duplicates(s: Sample) -> None:
    t = s.at(hours=40)
    character = s.character("Sable", CHLOE, created=t - timedelta(days=5))
    job = s.job("duplicates", CHLOE, status="completed", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 5 * S)
    lib_key = f"{CHLOE}/{job}_{character}.png"
    s.library_row(CHLOE, lib_key, created=t + 6 * S, character_id=character, character_name="Sable", job_id=job)
    s.library_row(CHLOE, lib_key, created=t + 9 * S, character_id=character, character_name="Sable", job_id=job,
                  store=False, label="retry")
    s.characters[-1]["image_url"] = f"user-library/{lib_key}"
    s.expect("duplicates", job, "needs_review", ["library_duplicates"], "A retried insert wrote the row twice.")


def ambiguous(s: Sample) -> None:
    t = s.at(hours=5)
    job = s.job("ambiguous", CHLOE, status="processing", created=t, metadata=portrait(characterName="Luna"))
    s.asset(job, CHLOE, created=t + 8 * S)
    s.character("Luna", CHLOE, created=t + 20 * S, label="luna-1")
    s.character("Luna", CHLOE, created=t + 50 * S, label="luna-2")
    s.expect("ambiguous", job, "needs_review", ["job_not_completed", "character_id_missing", "character_ambiguous"],
             "Two 'Luna's were created after the job; only a person can tell which.")


def not_found(s: Sample) -> None:
    t = s.at(hours=6)
    job = s.job("not-found", CHLOE, status="processing", created=t, metadata=portrait(character_name="Ghost"))
    s.asset(job, CHLOE, created=t + 8 * S)
    s.character("ghost ", CHLOE, created=t + 30 * S)
    s.expect("not_found", job, "needs_review", ["job_not_completed", "character_id_missing", "character_not_found"],
             "No exact 'Ghost'; a near match 'ghost ' is offered, never chosen.")


def linked_to_older(s: Sample) -> None:
    t = s.at(hours=9)
    old = s.character("Aria", ALICE, created=t - timedelta(days=30), label="aria-old")
    job = s.job("linked-older", ALICE, status="completed", created=t, metadata=portrait(characterName="Aria"))
    s.asset(job, ALICE, created=t + 8 * S)
    lib_key = f"{ALICE}/{job}_{old}.png"
    s.library_row(ALICE, lib_key, created=t + 10 * S, character_id=old, character_name="Aria", job_id=job)
    s.characters[-1]["image_url"] = f"user-library/{lib_key}"
    s.character("Aria", ALICE, created=t + 20 * S, image_url=FAL_URL.format("aria"), label="aria-new")
    s.expect("linked_to_older", job, "needs_review", ["character_id_missing", "character_linked_to_older"],
             "The name lookup bound the portrait to a month-old 'Aria' and overwrote its image.")


def deleted(s: Sample) -> None:
    t = s.at(hours=26)
    job = s.job("deleted", BEN, status="completed", created=t,
                metadata=portrait(character_id=str(stable_id("character:deleted"))))
    s.asset(job, BEN, created=t + 8 * S)
    s.expect("character_deleted", job, "needs_review", ["character_deleted"], "The character was deleted since.")


def owner_mismatch(s: Sample) -> None:
    t = s.at(hours=27)
    theirs = s.character("Nyx", MALLORY, created=t - timedelta(days=40))
    job = s.job("owner-mismatch", BEN, status="processing", created=t, metadata=portrait(character_id=str(theirs)))
    s.asset(job, BEN, created=t + 8 * S)
    s.expect("owner_mismatch", job, "needs_review", ["job_not_completed", "character_owner_mismatch"],
             "The job names another user's public character.")


def no_reference(s: Sample) -> None:
    t = s.at(hours=3)
    job = s.job("no-reference", BEN, status="processing", created=t, metadata=portrait())
    s.asset(job, BEN, created=t + 8 * S)
    s.expect("no_reference", job, "needs_review", ["job_not_completed", "character_id_missing", "no_character_reference"],
             "A portrait request that names no character at all.")


def source_only(s: Sample) -> None:
    t = s.at(hours=12)
    character = s.character("Kestrel", ALICE, created=t - timedelta(days=4))
    metadata = {"source": "character_portrait", "character_id": str(character), "prompt": "kestrel"}
    job = s.job("source-only", ALICE, status="completed", created=t, metadata=metadata)
    s.asset(job, ALICE, created=t + 8 * S)
    s.expect("source_only", job, "repairable", ["metadata_source_only"],
             "The editor set metadata.source, so auto-save never looked at it.")


def external_url(s: Sample) -> None:
    t = s.at(hours=50)
    character = s.character("Pike", CHLOE, created=t - timedelta(days=8))
    job = s.job("external-url", CHLOE, status="processing", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 8 * S, path=FAL_URL.format("pike"), store=False)
    s.expect("external_url", job, "needs_review", ["job_not_completed", "output_external_url"],
             "The upload failed and the asset kept fal's URL, which may have expired.")


def output_missing(s: Sample) -> None:
    t = s.at(hours=60)
    character = s.character("Wren", CHLOE, created=t - timedelta(days=8))
    job = s.job("output-missing", CHLOE, status="completed", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 8 * S, path="", store=False)
    s.expect("output_missing", job, "lost", ["output_missing"], "The upload failed and newer code stored ''.")


def no_output(s: Sample) -> None:
    t = s.at(hours=4)
    job = s.job("no-output", ALICE, status="processing", created=t, metadata=portrait(characterName="Mandy"))
    s.expect("no_output", job, "failed", ["job_no_output"], "Processing for hours; nothing was ever stored.")


def cleaned_up(s: Sample) -> None:
    t = s.at(days=3)
    character = s.character("Juno", ALICE, created=t - timedelta(days=1))
    job = s.job("cleaned-up", ALICE, status="failed", created=t, error=CLEANUP_ERROR,
                metadata=portrait(character_id=str(character)))
    s.temp_object(job, ALICE, created=t + 9 * S)  # the asset row was deleted, the object was not
    s.expect("cleaned_up", job, "repairable", ["job_failed", "library_copy_missing", "character_image_not_updated"],
             "A clean-up marked the job failed and deleted its asset row; the image survived.")


def failed_for_real(s: Sample) -> None:
    t = s.at(days=2)
    job = s.job("failed", BEN, status="failed", created=t, error="fal.ai returned 500",
                metadata=portrait(characterName="Dax"))
    s.expect("failed", job, "failed", ["job_failed"], "The provider failed; nothing to save.")


def in_progress(s: Sample) -> None:
    t = s.at(minutes=2)
    job = s.job("in-progress", CHLOE, status="processing", created=t, metadata=portrait(characterName="Pip"))
    s.expect("in_progress", job, "in_progress", [], "Started two minutes ago; still generating.")


def foreign_asset(s: Sample) -> None:
    t = s.at(hours=70)
    character = s.character("Talon", BEN, created=t - timedelta(days=2))
    job = s.job("foreign-asset", BEN, status="processing", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, MALLORY, created=t + 8 * S, store=False)
    s.temp_object(job, BEN, created=t + 8 * S)
    s.expect("asset_owner_mismatch", job, "needs_review", ["job_not_completed", "asset_owner_mismatch"],
             "The job's workspace asset row belongs to another user.")


def foreign_key(s: Sample) -> None:
    t = s.at(hours=9)
    character = s.character("Corvina", CHLOE, created=t - timedelta(days=3))
    job = s.job("foreign-key", CHLOE, status="processing", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 8 * S)
    # Chloe's own row (a manual save can hold any storage_path) names her job but Mallory's object.
    s.library_row(CHLOE, f"{MALLORY}/private-portrait.png", created=t + 20 * S, character_id=character,
                  character_name="Corvina", job_id=job)
    s.expect("foreign_storage_key", job, "needs_review", ["job_not_completed", "foreign_storage_key"],
             "The user's own library row points into another user's folder: evidence of nothing.")


def unreadable(s: Sample) -> None:
    t = s.at(hours=11)
    character = s.character("Ottilie", CHLOE, created=t - timedelta(days=3))
    job = s.job("unreadable", CHLOE, status="completed", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 8 * S)
    s.library_row(CHLOE, f"{CHLOE}/{job}_{character}.png", created=t + 10 * S, character_id=character,
                  character_name="Ottilie", job_id=job)
    s.library[-1]["tags"] = ["character", None]  # text[] allows a NULL element; no model of charfix does
    s.expect("unreadable_data", job, "needs_review", ["unreadable_data"],
             "The job's library row holds a NULL tag: charfix cannot read it whole, so a person looks.")


def odd_name(s: Sample) -> None:
    t = s.at(hours=7)
    name = "Zoë “Z” O'Brien, (the 2nd)"
    job = s.job("odd-name", CHLOE, status="processing", created=t, metadata=portrait(characterName=name))
    s.asset(job, CHLOE, created=t + 8 * S)
    s.character(name, CHLOE, created=t + 33 * S, image_url=FAL_URL.format("zoe"))
    s.expect("odd_name", job, "repairable", ["job_not_completed", "character_id_missing", "character_created_later"],
             "A name with quotes, a comma, parentheses and unicode, as users type them.")


def null_status(s: Sample) -> None:
    t = s.at(hours=8)
    character = s.character("Quill", BEN, created=t - timedelta(days=3))
    job = s.job("null-status", BEN, status=None, created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, BEN, created=t + 8 * S)
    s.expect("null_status", job, "needs_review", ["job_status_unknown"],
             "The status column is NULL (its check allows it): something outside the application wrote it.")


def cancelled(s: Sample) -> None:
    t = s.at(hours=30)
    character = s.character("Moth", CHLOE, created=t - timedelta(days=3))
    job = s.job("cancelled", CHLOE, status="cancelled", created=t, metadata=portrait(character_id=str(character)))
    s.asset(job, CHLOE, created=t + 8 * S)
    s.expect("cancelled", job, "needs_review", ["job_failed"],
             "The user cancelled the job after its image was stored: whether to save it is their call.")


def not_a_portrait(s: Sample) -> None:
    t = s.at(hours=1)
    s.job("plain-image", ALICE, status="processing", created=t, metadata={"destination": "workspace"})
    s.job("odd-metadata", BEN, status="processing", created=t, metadata="not an object")
    s.job("null-metadata", BEN, status="completed", created=t, metadata=None)


STORIES = [
    incident, saved, copy_failed, row_failed, character_not_updated, generic_row, duplicates, ambiguous,
    not_found, linked_to_older, deleted, owner_mismatch, no_reference, source_only, external_url,
    output_missing, no_output, cleaned_up, failed_for_real, in_progress, foreign_asset, odd_name, null_status,
    cancelled, not_a_portrait, foreign_key, unreadable,
]
