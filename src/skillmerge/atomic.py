"""Atomic writes: build output in a temporary sibling, then rename it into place.

A reader never sees a half-written directory or file: either the old content (or nothing) or the new one.
An exception, Ctrl-C or SIGTERM mid-write removes the hidden ``.NAME.tmp-HOST-PID-*`` sibling; a SIGKILL
cannot, so the next write of the same output removes the siblings whose process is gone (same host, PID no
longer running). Siblings of another live process, or of another host, are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skillmerge.errors import OutputExistsError, UsageError


def _refuse_existing(dest: Path, overwrite: bool, shown: str | Path) -> None:
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{shown}: output exists (pass --overwrite to replace it)")


def _host() -> str:
    # '-' separates the name's fields; a host name's own dashes are kept unambiguous by parsing from the right
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def _prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{_host()}-{os.getpid()}-"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(dest: str | Path) -> list[Path]:
    """Delete ``dest``'s temporary siblings left by killed processes of this host; returns what was removed.

    Only names this module makes for ``dest`` (``.NAME.tmp-HOST-PID-*``, and ``.NAME.old-HOST-PID-*`` when
    ``dest`` itself exists, so a replaced output is never the only copy), and only when PID is not running.
    """
    dest = Path(dest)
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(tmp|old)-(.+)-(\d+)-[A-Za-z0-9_]+")
    removed: list[Path] = []
    try:
        siblings = list(dest.parent.iterdir())
    except OSError:
        return removed
    host = _host()
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match is None or match.group(2) != host or _pid_running(int(match.group(3))):
            continue
        if match.group(1) == "old" and not dest.exists():
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


def _prepare(shown: str | Path, overwrite: bool) -> Path:
    """The output path made absolute, checked, its parent created and its stale temporaries removed.

    Messages name the path as the caller gave it (``shown``).
    """
    dest = Path(os.path.abspath(shown))
    try:
        holds_cwd = Path.cwd().is_relative_to(dest)
    except OSError:  # the working directory was deleted
        holds_cwd = False
    if dest.parent == dest or holds_cwd:
        raise UsageError(f"{shown}: refusing to write over the working directory or a folder holding it")
    _refuse_existing(dest, overwrite, shown)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in dest.parents if p.exists()), None)
        reason = f"{blocker} is not a directory" if blocker and not blocker.is_dir() else err.strerror or err
        raise UsageError(f"{shown}: cannot create the output's folder ({reason})") from None
    remove_stale_temporaries(dest)
    return dest


@contextmanager
def atomic_dir(dest: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``dest`` when the block exits cleanly.

    Raises :class:`OutputExistsError` before anything is written if ``dest`` exists and ``overwrite`` is
    false, and a one-line :class:`UsageError` when ``dest`` cannot be written at all. With ``overwrite`` the
    old directory is replaced only after the new one is complete.
    """
    shown, dest = dest, _prepare(dest, overwrite)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest, "tmp"), dir=dest.parent))
    except OSError as err:
        raise UsageError(f"{shown}: cannot write here ({err.strerror or err})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should look like a plain mkdir
        _refuse_existing(dest, overwrite, shown)  # someone may have created it meanwhile
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(dest, "old"), dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(dest: str | Path, *, overwrite: bool = False, mode: str = "w") -> Iterator:
    """Open a temporary sibling of ``dest`` for writing; it replaces ``dest`` when the block exits cleanly."""
    shown, dest = dest, _prepare(dest, overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_prefix(dest, "tmp"), dir=dest.parent)
    except OSError as err:
        raise UsageError(f"{shown}: cannot write here ({err.strerror or err})") from None
    tmp = Path(tmp_name)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
