"""Where offline data lives, and how a user path (file, its folder, or the data root) finds a data file.

No path is hard-coded: :func:`default_data_dir` reads ``$SKILLMERGE_DATA_DIR``, else ``../shared/data``
relative to the working directory when that folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from skillmerge.errors import UsageError

DATA_DIR_ENV = "SKILLMERGE_DATA_DIR"


def _checkout_data_dir() -> Path | None:
    """``<checkout>/../shared/data`` when skillmerge runs from a source checkout, else None."""
    checkout = Path(__file__).resolve().parents[4]  # <checkout>/src/skillmerge/data/sources/datadir.py
    return checkout.parent / "shared" / "data" if (checkout / "pyproject.toml").is_file() else None


def default_data_dir() -> Path:
    """The offline data folder: ``$SKILLMERGE_DATA_DIR``, else ``../shared/data`` from the working directory,
    else ``shared/data`` beside the source checkout skillmerge runs from (an editable install).

    Raises :class:`UsageError` when none exists, so callers never read from a surprising place.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise UsageError(f"{DATA_DIR_ENV}={env}: not a folder")
        return path
    candidates = [Path.cwd().parent / "shared" / "data"]
    beside_checkout = _checkout_data_dir()
    if beside_checkout is not None and beside_checkout.resolve() != candidates[0].resolve():
        candidates.append(beside_checkout)
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise UsageError(f"no offline data folder: set {DATA_DIR_ENV} or pass a path (looked for {looked})")


def _start(path: str | Path | None, subdir: str) -> Path:
    start = default_data_dir() / subdir if path is None else Path(path).expanduser()
    if not start.exists():
        raise UsageError(f"{start}: no such file or folder")
    return start


def locate_file(path: str | Path | None, *, subdir: str, names: tuple[str, ...]) -> Path:
    """Resolve ``path`` to one data file.

    ``path`` may be the file itself (any name), a folder holding one of ``names``, or a data root holding
    ``subdir/`` with it; ``None`` means ``default_data_dir() / subdir``.
    """
    start = _start(path, subdir)
    if start.is_file():
        return start
    for folder in (start, start / subdir):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise UsageError(f"{start}: no {' or '.join(names)} in this folder or in {subdir}/")


def locate_files(path: str | Path | None, *, subdir: str, suffix: str) -> list[Path]:
    """Resolve ``path`` to a sorted list of ``*suffix`` files: one file, a folder of them, or a data root."""
    start = _start(path, subdir)
    if start.is_file():
        return [start]
    for folder in (start, start / subdir):
        files = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file()) if folder.is_dir() else []
        if files:
            return files
    raise UsageError(f"{start}: no *{suffix} files in this folder or in {subdir}/")
