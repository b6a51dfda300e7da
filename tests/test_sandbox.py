"""The sandbox runs real code: canonical HumanEval solutions pass, hostile programs are contained and fail,
and the evaluator (this process) survives with no processes or temporary directories left behind."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skillmerge.errors import UsageError
from skillmerge.evaluate.code_problems import load_code_problems, program_for
from skillmerge.evaluate.sandbox import Sandbox, SandboxLimits, network_namespace_available


def sandbox_processes() -> list[tuple[int, str]]:
    """Live processes started by a sandbox (their command line names the sandbox's temp dir) or children
    of this test process; zombies have no command line and are dead already."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if cmdline and ("skillmerge-sandbox-" in cmdline or ppid == me):
            found.append((int(entry.name), cmdline))
    return found


@pytest.fixture
def no_strays() -> Iterator[None]:
    # Children that were already there (e.g. multiprocessing's resource tracker, started by another test's
    # process pool) are not the sandbox's; only processes that appear during the test count.
    before = {pid for pid, _ in sandbox_processes()}

    def new() -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, cmd in sandbox_processes() if pid not in before]

    yield
    deadline = time.monotonic() + 2.0  # the kernel may take a moment to tear down a SIGKILLed group
    while new() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new() == []


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=2.0, memory_mb=512))


def run(sandbox: Sandbox, source: str):
    return sandbox.run(textwrap.dedent(source))


def test_all_humaneval_canonical_solutions_pass(no_strays: None) -> None:
    problems = load_code_problems()
    assert len(problems) == 164
    start = time.monotonic()
    results = Sandbox().run_many([program_for(p, p.canonical_solution) for p in problems], workers=4)
    elapsed = time.monotonic() - start
    failures = [
        (p.task_id, r.status, r.stderr_tail[-300:])
        for p, r in zip(problems, results, strict=True)
        if not r.passed
    ]
    assert failures == []
    assert elapsed < 60, f"164 canonical solutions took {elapsed:.1f} s"


def test_a_wrong_solution_fails_its_tests(sandbox: Sandbox) -> None:
    problem = load_code_problems()[0]
    result = sandbox.run(program_for(problem, "    return not True\n"))
    assert (result.passed, result.status) == (False, "failed")
    assert "AssertionError" in result.stderr_tail
    assert "guard.py" not in result.stderr_tail  # the traceback shows the program, not the sandbox


def test_an_exception_is_an_error_and_output_is_kept(sandbox: Sandbox) -> None:
    result = run(sandbox, "print('before')\n1 / 0\n")
    assert (result.status, result.stdout_tail) == ("error", "before\n")
    assert result.stderr_tail.rstrip().endswith("ZeroDivisionError: division by zero")


def test_an_infinite_loop_times_out_and_is_killed(no_strays: None) -> None:
    sandbox = Sandbox(SandboxLimits(timeout_s=1.0, cpu_s=30))
    start = time.monotonic()
    result = run(sandbox, "while True:\n    pass\n")
    assert (result.passed, result.status) == (False, "timeout")
    assert 1.0 <= result.duration_s < 5 and time.monotonic() - start < 5


def test_cpu_time_limit_stops_a_busy_program_before_its_wall_time(no_strays: None) -> None:
    result = run(Sandbox(SandboxLimits(timeout_s=20.0, cpu_s=1)), "while True:\n    pass\n")
    assert result.status == "timeout"  # SIGXCPU
    assert result.duration_s < 10


@pytest.mark.parametrize(
    "bomb",
    [
        "import os\nwhile True:\n    os.fork()\n",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "import multiprocessing as mp\nfor _ in range(100):\n    mp.Process(target=print).start()\n",
        "import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])\n",
        "import os\nos.system('sleep 100 &')\n",
        "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",
        "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess\n",
        "import ctypes\nctypes.CDLL(None).fork()\n",
    ],
    ids=[
        "os.fork",
        "os.fork-retrying",
        "multiprocessing",
        "subprocess-shell-bomb",
        "os.system",
        "fork_exec",
        "reimport-fork_exec",
        "ctypes",
    ],
)
def test_a_fork_bomb_is_contained_and_fails(sandbox: Sandbox, bomb: str, no_strays: None) -> None:
    result = run(sandbox, bomb + "assert False, 'unreachable'\n")
    assert not result.passed
    assert result.status in ("error", "timeout")
    assert result.blocked, result.stderr_tail


def test_process_limit_is_set(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        """
        import resource
        assert resource.getrlimit(resource.RLIMIT_NPROC) == (64, 64)
        assert resource.getrlimit(resource.RLIMIT_AS) == (512 * 1024**2, 512 * 1024**2)
        assert resource.getrlimit(resource.RLIMIT_CPU)[0] == 2
        assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 1 << 20
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        resource.setrlimit(resource.RLIMIT_CPU, (1, 1))  # lowering is harmless but still refused
        """,
    )
    assert result.status == "error" and result.blocked == ("resource.setrlimit",)


@pytest.mark.parametrize(
    "hog",
    [
        "x = bytearray(8 * 1024**3)\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024**2))\n",
    ],
    ids=["one-allocation", "growing"],
)
def test_a_memory_hog_is_contained_and_fails(hog: str, no_strays: None) -> None:
    # A generous wall time: touching 256 MiB of fresh pages takes a while on a loaded machine.
    result = run(Sandbox(SandboxLimits(timeout_s=20.0, memory_mb=256)), hog)
    assert (result.passed, result.status) == (False, "error")
    assert "MemoryError" in result.stderr_tail


@pytest.mark.parametrize(
    "how",
    [
        "open({target!r}, 'w').write('pwned')",
        "import os\nos.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
        "import pathlib\npathlib.Path({target!r}).write_text('pwned')",
        "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('pwned')",
        "import os\nopen('mine', 'w').close()\nos.rename('mine', {target!r})",
        "import shutil\nopen('mine', 'w').close()\nshutil.copyfile('mine', {target!r})",
        "import os\nd = os.open(os.path.dirname({target!r}), os.O_RDONLY)\n"
        "os.close(os.open('outside.txt', os.O_WRONLY | os.O_CREAT, dir_fd=d))",
        "import os\nd = os.open(os.path.dirname({target!r}), os.O_RDONLY)\nos.mkdir('outside.txt', dir_fd=d)",
    ],
    ids=["open", "os.open", "pathlib", "symlink", "rename", "copyfile", "os.open-dir_fd", "mkdir-dir_fd"],
)
def test_writing_outside_the_temp_dir_is_blocked(
    sandbox: Sandbox, how: str, tmp_path: Path, no_strays: None
) -> None:
    target = tmp_path / "outside.txt"
    result = run(sandbox, how.format(target=str(target)) + "\n")
    assert (result.passed, result.status) == (False, "error")
    assert result.blocked
    assert not target.exists()


def test_removing_files_outside_the_temp_dir_is_blocked(sandbox: Sandbox, tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    result = run(sandbox, f"import os\nos.remove({str(victim)!r})\n")
    assert result.status == "error" and victim.read_text() == "keep"


def test_the_program_may_write_in_its_own_temp_dir_which_is_removed(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        """
        import os, tempfile
        with open("notes.txt", "w") as f:
            f.write("ok")
        os.mkdir("sub")
        fd, name = tempfile.mkstemp()
        os.close(fd)
        assert os.path.dirname(name) == os.getcwd() == os.environ["HOME"]
        print(os.getcwd())
        """,
    )
    assert result.status == "passed", result.stderr_tail
    workdir = Path(result.stdout_tail.strip())
    assert workdir.name == "work" and not workdir.exists() and not workdir.parent.exists()


def test_opening_a_socket_is_blocked(sandbox: Sandbox, no_strays: None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run(sandbox, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # nobody connected
    assert (result.passed, result.status) == (False, "error")
    assert result.blocked


def test_socket_guard_alone_blocks_sockets() -> None:
    guard_only = Sandbox(SandboxLimits(timeout_s=2.0), network="socket-guard")
    assert guard_only.isolation["network"] == "socket-guard"
    result = guard_only.run("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n")
    assert result.status == "error" and result.blocked == ("socket.__new__",)


@pytest.mark.skipif(not network_namespace_available(), reason="unshare -rn is not permitted on this host")
def test_network_namespace_has_only_loopback() -> None:
    sandbox = Sandbox(SandboxLimits(timeout_s=5.0), network="namespace")
    assert sandbox.isolation["network"] == "namespace+socket-guard"
    result = sandbox.run("print(open('/proc/net/dev').read())\n")
    assert result.status == "passed", result.stderr_tail
    interfaces = [line.split(":")[0].strip() for line in result.stdout_tail.splitlines()[2:] if ":" in line]
    assert interfaces == ["lo"]


def test_unknown_network_mode_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown network mode 'none'"):
        Sandbox(network="none")  # type: ignore[arg-type]


def test_environment_is_minimal(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILLMERGE_TEST_SECRET", "hunter2")
    result = run(
        sandbox,
        """
        import os, sys
        assert "SKILLMERGE_TEST_SECRET" not in os.environ
        assert sorted(os.environ) == ["HOME", "LC_ALL", "PATH", "TMPDIR"], sorted(os.environ)
        assert os.environ["PATH"] == "/usr/bin:/bin"
        assert sys.flags.isolated and sys.flags.no_site
        assert not any("site-packages" in p for p in sys.path)
        """,
    )
    assert result.status == "passed", result.stderr_tail


def test_exiting_before_the_tests_is_not_a_pass(sandbox: Sandbox) -> None:
    early = run(sandbox, "import sys\nsys.exit(0)\nassert False\n")
    hard = run(sandbox, "import os\nos._exit(0)\nassert False\n")
    assert (early.status, hard.status) == ("failed", "failed")


def test_output_is_capped(no_strays: None) -> None:
    sandbox = Sandbox(SandboxLimits(timeout_s=5.0, max_output_bytes=64 * 1024, tail_chars=100))
    result = sandbox.run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 10_000 + '\\n')\n")
    assert not result.passed
    assert len(result.stdout_tail) <= 100


def test_many_programs_run_concurrently_in_order(sandbox: Sandbox, no_strays: None) -> None:
    sources = [f"import time\ntime.sleep(0.3)\nassert {i} % 3 != 0\n" for i in range(8)]
    start = time.monotonic()
    results = sandbox.run_many(sources, workers=8)
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(8)]
    assert time.monotonic() - start < 8 * 0.3  # overlapped, not one after the other


def test_the_evaluator_survives_all_hazards_at_once(sandbox: Sandbox, no_strays: None) -> None:
    hazards = [
        "while True:\n    pass\n",
        "import os\nwhile True:\n    os.fork()\n",
        "x = bytearray(8 * 1024**3)\n",
        "open('/tmp/skillmerge-escape.txt', 'w').write('x')\n",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
    ]
    results = sandbox.run_many(hazards, workers=4)
    assert [r.passed for r in results] == [False] * len(hazards)
    assert not Path("/tmp/skillmerge-escape.txt").exists()
    assert sandbox.run("assert 2 + 2 == 4\n").passed  # still working afterwards


def nobody_sandbox() -> Sandbox | None:
    """A sandbox that drops root to ``nobody`` (root, and a Python whose stdlib nobody can read)."""
    if os.geteuid() != 0:
        return None
    for python in (sys.executable, "/usr/bin/python3"):
        if Path(python).exists():
            sandbox = Sandbox(SandboxLimits(timeout_s=5.0, max_processes=8), python=python)
            if sandbox.isolation["user"] == "nobody":
                return sandbox
    return None


@pytest.mark.skipif(nobody_sandbox() is None, reason="needs root and a Python whose stdlib nobody can read")
def test_root_drops_to_nobody_where_the_process_limit_binds(no_strays: None) -> None:
    sandbox = nobody_sandbox()
    assert sandbox is not None and sandbox.isolation["processes"] == "rlimit+audit-hook"
    result = sandbox.run(
        textwrap.dedent(
            """
            import os, threading, time
            assert (os.getuid(), os.getgid(), os.getgroups()) == (65534, 65534, [])
            threads = []
            try:
                for _ in range(50):  # threads count against RLIMIT_NPROC like processes do
                    threads.append(threading.Thread(target=time.sleep, args=(0.5,)))
                    threads[-1].start()
            except RuntimeError:
                pass
            assert len(threads) <= 8, len(threads)  # bounded by max_processes, not 50
            open("mine.txt", "w").write("the working directory belongs to nobody")
            """
        )
    )
    assert result.status == "passed", result.stderr_tail
    problems = load_code_problems()[:5]
    assert all(r.passed for r in sandbox.run_many([program_for(p, p.canonical_solution) for p in problems]))
