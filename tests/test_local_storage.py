"""The local storage adapter never follows a symbolic link below the bucket, and a failed write or copy
leaves no temporary file behind (docs/reliability.md, "Security")."""

from __future__ import annotations

import os

import pytest

from charfix.errors import BackendError
from charfix.storage.local import LocalStorage

USER = "ad267615-81ce-5423-80b0-f80268f75801"
OTHER = "0b7f5e1c-0000-4000-8000-000000000002"


@pytest.fixture
def tree(tmp_path):
    """A root with two users' folders and a secret outside the root."""
    root = tmp_path / "storage"
    for bucket in ("workspace-temp", "user-library"):
        (root / bucket / USER).mkdir(parents=True)
        (root / bucket / OTHER).mkdir(parents=True)
    (root / "user-library" / OTHER / "private.png").write_bytes(b"other user's image")
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return root


def test_a_link_at_the_key_is_neither_listed_nor_read(tree, tmp_path):
    link = tree / "user-library" / USER / "job_x.png"
    link.symlink_to(tree / "user-library" / OTHER / "private.png")
    (tree / "user-library" / USER / "job_y.png").symlink_to(tmp_path / "secret.txt")
    storage = LocalStorage(tree)
    assert storage.list_prefixes("user-library", [f"{USER}/job_"]) == []
    assert storage.stat("user-library", [f"{USER}/job_x.png", f"{USER}/job_y.png"]) == []
    with pytest.raises(BackendError, match="symbolic link"):
        storage.read("user-library", f"{USER}/job_x.png")


def test_a_link_as_a_folder_on_the_way_is_not_walked(tree, tmp_path):
    (tree / "user-library" / USER / "nested").symlink_to(tree / "user-library" / OTHER, target_is_directory=True)
    storage = LocalStorage(tree)
    assert storage.list_prefixes("user-library", [f"{USER}/nested/priv"]) == []
    assert storage.stat("user-library", [f"{USER}/nested/private.png"]) == []
    with pytest.raises(BackendError, match="symbolic link"):
        storage.read("user-library", f"{USER}/nested/private.png")


def test_a_write_or_copy_through_a_linked_folder_is_refused_and_changes_nothing(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "user-library" / USER / "nested").symlink_to(outside, target_is_directory=True)
    (tree / "workspace-temp" / USER / "job_1.png").write_bytes(b"png")
    storage = LocalStorage(tree)
    with pytest.raises(BackendError, match="symbolic link"):
        storage.write("user-library", f"{USER}/nested/job.png", b"data", content_type="image/png")
    with pytest.raises(BackendError, match="symbolic link"):
        storage.copy("workspace-temp", f"{USER}/job_1.png", "user-library", f"{USER}/nested/job.png")
    assert list(outside.iterdir()) == []


def test_a_write_onto_a_link_at_the_key_does_not_write_through_it(tree, tmp_path):
    target = tree / "user-library" / OTHER / "private.png"
    (tree / "user-library" / USER / "job.png").symlink_to(target)
    storage = LocalStorage(tree)
    with pytest.raises(BackendError, match="symbolic link"):
        storage.write("user-library", f"{USER}/job.png", b"overwritten", content_type="image/png")
    assert target.read_bytes() == b"other user's image"


def test_a_copy_from_a_linked_source_is_refused(tree, tmp_path):
    (tree / "workspace-temp" / USER / "job_1.png").symlink_to(tmp_path / "secret.txt")
    storage = LocalStorage(tree)
    with pytest.raises(BackendError, match="symbolic link"):
        storage.copy("workspace-temp", f"{USER}/job_1.png", "user-library", f"{USER}/job.png")
    assert sorted(p.name for p in (tree / "user-library" / USER).iterdir()) == []


def test_a_failed_copy_leaves_no_temporary_file(tree):
    storage = LocalStorage(tree)
    with pytest.raises(BackendError):
        storage.copy("workspace-temp", f"{USER}/gone.png", "user-library", f"{USER}/job.png")
    assert list((tree / "user-library" / USER).iterdir()) == []


def test_a_failed_write_leaves_no_temporary_file(tree, monkeypatch):
    storage = LocalStorage(tree)
    real_write = os.write

    def full_disk(fd, data):
        if os.fstat(fd).st_size > 0:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data)[:4])  # a short first write, then a full disk

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(BackendError, match="No space left"):
        storage.write("user-library", f"{USER}/job.png", b"0123456789", content_type="image/png")
    monkeypatch.undo()
    assert list((tree / "user-library" / USER).iterdir()) == []


def test_ordinary_objects_still_list_stat_read_write_and_copy(tree):
    storage = LocalStorage(tree)
    storage.write("workspace-temp", f"{USER}/job_1.png", b"png", content_type="image/png")
    copied = storage.copy("workspace-temp", f"{USER}/job_1.png", "user-library", f"{USER}/deep/er/job.png")
    assert copied.size == 3 and storage.read("user-library", f"{USER}/deep/er/job.png") == b"png"
    assert [o.key for o in storage.list_prefixes("workspace-temp", [f"{USER}/job_"])] == [f"{USER}/job_1.png"]
    assert [o.key for o in storage.stat("user-library", [f"{USER}/deep/er/job.png", f"{USER}/nope.png"])] == \
        [f"{USER}/deep/er/job.png"]
