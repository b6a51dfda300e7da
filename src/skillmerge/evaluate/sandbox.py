"""The only place model-written code runs: one fresh, limited Python subprocess per program.

Layers, outermost first (each one is reported in :attr:`Sandbox.isolation`):

- a new session, so the program and anything it starts share one process group, SIGKILLed as a group when
  the program ends or its wall time runs out;
- a network namespace with only a downed loopback, where the kernel permits it (detected at runtime):
  ``unshare -rn`` (user + network namespace, no privileges needed), or ``unshare -n`` when root drops to
  ``nobody`` (a user namespace maps only uid 0);
- rlimits set before the program starts: CPU seconds, address space (``RLIMIT_AS``), processes
  (``RLIMIT_NPROC``: binding for non-root users only, so root drops to ``nobody`` when the interpreter's
  standard library is world-readable), file size (``RLIMIT_FSIZE``, which also caps stdout/stderr), no core
  dumps;
- an audit hook (PEP 578) installed before the program's first line that refuses process creation, signals,
  sockets, ``ctypes``, rlimit changes, and any file write, rename or delete outside the program's temporary
  working directory;
- a minimal environment (``PATH=/usr/bin:/bin``, ``HOME`` and ``TMPDIR`` in the temporary directory, no
  inherited variables) and an interpreter started with ``-I -S -B`` (isolated: no ``PYTHON*`` variables, no
  site-packages, no ``.pyc`` writes; the whole standard library still imports).

A program passes when it runs to its end: an assertion, any other exception, ``sys.exit`` before the end, or
``os._exit(0)`` (no verdict written) all count as failures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from skillmerge.errors import UsageError

Status = Literal["passed", "failed", "timeout", "killed", "error"]
NetworkMode = Literal["auto", "namespace", "socket-guard"]

NOBODY_UID = 65534
BLOCKED_PREFIX = "sandbox: blocked "
# Exit codes the guard uses to say how the program ended (anything else is an interpreter-level error).
_EXIT_ASSERTION, _EXIT_EXCEPTION, _EXIT_EARLY = 10, 11, 12

# Runs inside the child, before the program. Kept free of non-stdlib imports: the child has no site-packages.
GUARD_SOURCE = r"""
import json, os, resource, sys

cfg = json.loads(sys.argv[1])
with open(cfg["program"], encoding="utf-8") as handle:
    source = handle.read()
verdict = open(cfg["verdict"], "w", encoding="utf-8")
for name, (soft, hard) in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
if cfg["uid"] is not None:
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
work = os.path.realpath(cfg["workdir"])
os.chdir(work)

# Loaded now so the hook can refuse any later (re)load of the process-spawning extension.
import subprocess, traceback, _posixsubprocess

_DENY = frozenset({
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
    "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.dlopen", "ctypes.dlsym",
    "ctypes.dlsym/handle", "ctypes.call_function", "resource.setrlimit", "resource.prlimit",
})
_DENY_IMPORTS = frozenset({"_posixsubprocess", "_ctypes"})
# event -> (positions of paths that must lie inside the working directory, positions of dir_fd arguments,
# which are refused: a descriptor of an outside folder would make a relative path escape)
_PATH_ARGS = {
    "os.remove": ((0,), (1,)), "os.rename": ((0, 1), (2, 3)), "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
    "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)), "os.truncate": ((0,), ()),
    "os.utime": ((0,), (3,)), "shutil.rmtree": ((0,), (1,)), "shutil.copyfile": ((1,), ()),
    "shutil.copytree": ((1,), ()), "shutil.move": ((1,), ()), "shutil.chown": ((0,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_write = os.write
_realpath = os.path.realpath
_fspath = os.fsdecode

def _inside(path):
    if isinstance(path, int):  # an already open descriptor
        return True
    real = _realpath(_fspath(path))
    return real == work or real.startswith(work + os.sep) or real == os.devnull

def _block(what):
    _write(2, ("%s%s\n" % (cfg["blocked_prefix"], what)).encode("utf-8", "replace"))
    raise PermissionError("sandbox: %s is not allowed" % what)

def _refuse_fork_exec(*args, **kwargs):
    _block("_posixsubprocess.fork_exec")

_posixsubprocess.fork_exec = _refuse_fork_exec

# The "open" audit event does not carry dir_fd, so os.open refuses it for writes itself.
_posix_open = os.open

def _open(path, flags, mode=0o777, *, dir_fd=None):
    if dir_fd is not None and flags & _WRITE_FLAGS:
        _block("os.open with dir_fd")
    return _posix_open(path, flags, mode, dir_fd=dir_fd)

import posix
os.open = posix.open = _open

def _hook(event, args):
    if event in _DENY or event.startswith("socket."):
        _block(event)
    elif event == "import" and args[0] in _DENY_IMPORTS:
        _block("import " + args[0])
    elif event == "open":
        path, mode, flags = args
        writes = isinstance(mode, str) and any(c in mode for c in "wax+")
        writes = writes or bool((flags or 0) & _WRITE_FLAGS)
        if writes and path is not None and not _inside(path):
            _block("write %r" % (path,))
    elif event in _PATH_ARGS:
        paths, dir_fds = _PATH_ARGS[event]
        for i in paths:
            if i < len(args) and args[i] is not None and not _inside(args[i]):
                _block("%s %r" % (event, args[i]))
        if any(i < len(args) and args[i] not in (None, -1) for i in dir_fds):
            _block("%s with dir_fd" % event)

def _report():
    kind, value, tb = sys.exc_info()
    try:  # the program's frames only: skip the guard's exec() frame
        traceback.print_exception(kind, value, tb.tb_next if tb is not None else None)
    except BaseException:
        _write(2, ("%s\n" % kind.__name__).encode())

sys.addaudithook(_hook)
sys.argv = ["program.py"]
try:
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except AssertionError:
    _report()
    code = 10
except SystemExit as err:
    _write(2, ("program exited (%r) before it finished\n" % (err.code,)).encode())
    code = 12
except BaseException:
    _report()
    code = 11
else:
    verdict.write("passed")
    verdict.flush()
    code = 0
try:
    sys.stdout.flush()
    sys.stderr.flush()
finally:
    os._exit(code)  # do not wait for threads the program left running
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. ``cpu_s`` defaults to the wall time; ``max_output_bytes`` caps every file the
    program writes, stdout and stderr included; ``max_processes`` bounds processes and threads of the
    sandbox user (``RLIMIT_NPROC``)."""

    timeout_s: float = 10.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    max_processes: int = 64
    max_output_bytes: int = 1 << 20
    tail_chars: int = 2000

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or (self.cpu_s is not None and self.cpu_s <= 0):
            raise UsageError(f"sandbox: timeout and CPU time must be positive (got {self.timeout_s})")
        if self.memory_mb < 64:
            raise UsageError(f"sandbox: memory_mb={self.memory_mb} is too small for Python (need >= 64)")

    def rlimits(self) -> dict[str, tuple[int, int]]:
        cpu = max(1, int(-(-(self.cpu_s or self.timeout_s) // 1)))  # ceil: RLIMIT_CPU counts whole seconds
        memory = self.memory_mb * 1024 * 1024
        return {
            "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_AS": (memory, memory),
            "RLIMIT_NPROC": (self.max_processes, self.max_processes),
            "RLIMIT_FSIZE": (self.max_output_bytes, self.max_output_bytes),
            "RLIMIT_CORE": (0, 0),
        }


@dataclass(frozen=True)
class SandboxResult:
    """How one program ended. ``status``: passed, failed (an assertion, or it stopped before its end),
    timeout (wall or CPU time), killed (a signal), error (another exception, a blocked operation, or it
    could not start)."""

    status: Status
    duration_s: float
    returncode: int | None = None
    stderr_tail: str = ""
    stdout_tail: str = ""
    blocked: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, **asdict(self), "blocked": list(self.blocked)}


@functools.cache
def network_namespace_available(flags: str = "-rn") -> bool:
    """Whether ``unshare FLAGS`` works here: ``-rn`` (user + network namespace, needs no privileges) or
    ``-n`` (network namespace only, needs root)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        probe = subprocess.run(
            [unshare, flags, sys.executable, "-I", "-S", "-c", ""],
            capture_output=True,
            timeout=20,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _world_readable_chain(path: Path) -> bool:
    """True when user ``nobody`` can reach and read ``path`` (every ancestor o+x, the folder o+r)."""
    path = path.resolve()
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


@functools.cache
def _drop_to_nobody(python: str) -> bool:
    """Root is exempt from ``RLIMIT_NPROC`` and from file permissions, so drop to ``nobody`` when that user
    can still import the interpreter's standard library (else stay, with the audit hook as the guard)."""
    if os.geteuid() != 0:
        return False
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        stdlib = Path(out)
        return _world_readable_chain(stdlib) and _world_readable_chain(stdlib / "lib-dynload")
    except (OSError, subprocess.SubprocessError):
        return False


class Sandbox:
    """Runs Python programs under :class:`SandboxLimits`; one subprocess each, several at once.

    ``network``: ``auto`` uses a network namespace where permitted, else the socket guard alone (the audit
    hook refuses sockets in every mode); ``namespace`` requires it.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        network: NetworkMode = "auto",
        python: str | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.python = python or sys.executable
        if network not in ("auto", "namespace", "socket-guard"):
            raise UsageError(f"sandbox: unknown network mode {network!r} (auto, namespace, socket-guard)")
        self._uid = NOBODY_UID if _drop_to_nobody(self.python) else None
        # Dropping to nobody needs real root (a user namespace maps only uid 0 and forbids setgroups); root
        # that cannot drop is better off inside a user namespace, where its capabilities do not reach out.
        flags = "-n" if self._uid is not None else "-rn"
        use_namespace = network != "socket-guard" and network_namespace_available(flags)
        if network == "namespace" and not use_namespace:
            raise UsageError(f"sandbox: network namespaces are not permitted here (unshare {flags} failed)")
        unshare = shutil.which("unshare")
        self._prefix: list[str] = [unshare, flags] if use_namespace and unshare else []
        self.isolation: dict[str, str] = {
            "network": "namespace+socket-guard" if self._prefix else "socket-guard",
            "user": "nobody" if self._uid is not None else ("root" if os.geteuid() == 0 else "current"),
            "processes": "rlimit+audit-hook"
            if self._uid is not None or os.geteuid() != 0
            else "audit-hook (root ignores RLIMIT_NPROC)",
            "files": "audit-hook+cwd" + ("+uid" if self._uid is not None else ""),
        }

    def describe(self) -> dict[str, Any]:
        """Limits and isolation layers, for manifests and reports."""
        return {"limits": asdict(self.limits), "isolation": dict(self.isolation)}

    def run(self, source: str) -> SandboxResult:
        """Run one program to its end, its wall-time limit, or its first fatal limit."""
        start = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix="skillmerge-sandbox-"))
        try:
            return self._run_in(root, source, start)
        except (OSError, UnicodeError, ValueError) as err:
            return SandboxResult("error", time.monotonic() - start, None, f"sandbox: cannot run ({err})")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def run_many(
        self,
        sources: Sequence[str],
        workers: int | None = None,
        on_result: Callable[[int, SandboxResult], None] | None = None,
    ) -> list[SandboxResult]:
        """Run programs on a pool of ``workers`` threads (default: CPU count), results in input order."""
        workers = max(1, workers or os.cpu_count() or 1)
        results: list[SandboxResult | None] = [None] * len(sources)

        def one(i: int) -> None:
            results[i] = self.run(sources[i])
            if on_result is not None:
                on_result(i, results[i])

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
            for future in [pool.submit(one, i) for i in range(len(sources))]:
                future.result()
        return [r for r in results if r is not None]

    def _run_in(self, root: Path, source: str, start: float) -> SandboxResult:
        work = root / "work"
        work.mkdir()
        program, guard, verdict = root / "program.py", root / "guard.py", root / "verdict"
        program.write_text(source, encoding="utf-8")
        guard.write_text(GUARD_SOURCE, encoding="utf-8")
        if self._uid is not None:
            os.chown(work, self._uid, self._uid)
            root.chmod(0o711)  # nobody may pass through to its working directory, not list the rest
        config = {
            "program": str(program),
            "verdict": str(verdict),
            "workdir": str(work),
            "uid": self._uid,
            "rlimits": self.limits.rlimits(),
            "blocked_prefix": BLOCKED_PREFIX,
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LC_ALL": "C.UTF-8"}
        command = [*self._prefix, self.python, "-I", "-S", "-B", str(guard), json.dumps(config)]
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            proc = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # setsid: the program leads a new process group we can kill whole
                close_fds=True,
            )
        try:
            timed_out = _wait_and_kill_group(proc, self.limits.timeout_s)
        except BaseException:  # interrupted (Ctrl-C): take the program down with us
            _kill_group(proc.pid)
            proc.wait()
            raise
        duration = time.monotonic() - start
        stderr = _read_capped(root / "stderr", self.limits.max_output_bytes)
        blocked = tuple(
            line[len(BLOCKED_PREFIX) :] for line in stderr.splitlines() if line.startswith(BLOCKED_PREFIX)
        )
        wrote_verdict = verdict.is_file() and verdict.read_text(encoding="utf-8") == "passed"
        return SandboxResult(
            status=_status(proc.returncode, timed_out, wrote_verdict),
            duration_s=round(duration, 4),
            returncode=proc.returncode,
            stderr_tail=stderr[-self.limits.tail_chars :],
            stdout_tail=_read_capped(root / "stdout", self.limits.tail_chars, tail=True),
            blocked=blocked,
        )


def _status(returncode: int | None, timed_out: bool, wrote_verdict: bool) -> Status:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "passed" if wrote_verdict else "failed"  # os._exit(0) before the tests is not a pass
    if returncode in (_EXIT_ASSERTION, _EXIT_EARLY):
        return "failed"
    if returncode is not None and returncode < 0:
        return "timeout" if -returncode == signal.SIGXCPU else "killed"
    return "error"


def _wait_and_kill_group(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds, SIGKILL the whole process group, reap; True when time ran out.

    With a pidfd the leader is waited for without being reaped, so its pid (the group id) cannot be reused
    before the group is killed.
    """
    timed_out = False
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            pidfd = None
    if pidfd is not None:
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
            timed_out = not ready
        finally:
            os.close(pidfd)
    else:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill_group(proc.pid)
    proc.wait()
    return timed_out


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already empty
        os.killpg(pgid, signal.SIGKILL)


def _read_capped(path: Path, limit: int, *, tail: bool = True) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit) if tail else 0)
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


__all__ = [
    "GUARD_SOURCE",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "network_namespace_available",
]
