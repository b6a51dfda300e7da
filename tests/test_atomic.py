"""Atomic writes: the destination holds the old content or the complete new one, never a partial one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from skillmerge.atomic import atomic_dir, atomic_file
from skillmerge.errors import OutputExistsError


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_dir_appears_only_when_complete(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not dest.exists()
    assert (dest / "a.txt").read_text() == "a"
    assert _siblings(dest) == ["model"]


def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with pytest.raises(OSError, match="No space"), atomic_dir(dest) as tmp:
        (tmp / "shard-1").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not dest.exists()
    assert _siblings(dest) == []


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_dir(dest):
        pass
    assert (dest / "old.txt").read_text() == "old"


def test_overwrite_keeps_old_output_until_new_one_is_complete(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    with atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert _siblings(dest) == ["model"]


def test_atomic_file_replaces_whole_file(tmp_path: Path) -> None:
    dest = tmp_path / "data.jsonl"
    with atomic_file(dest) as handle:
        handle.write("one\n")
    with pytest.raises(ValueError), atomic_file(dest, overwrite=True) as handle:
        handle.write("partial")
        raise ValueError("boom")
    assert dest.read_text() == "one\n"
    assert _siblings(dest) == ["data.jsonl"]


def test_outputs_get_the_permissions_of_a_plain_mkdir_and_open(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("x")
    with atomic_file(tmp_path / "f.txt") as handle:
        handle.write("x")
    (tmp_path / "plain_dir").mkdir()
    (tmp_path / "plain_file").write_text("x")
    assert (tmp_path / "d").stat().st_mode & 0o777 == (tmp_path / "plain_dir").stat().st_mode & 0o777
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == (tmp_path / "plain_file").stat().st_mode & 0o777
