"""The Ray executor on a real two-node Ray cluster on 127.0.0.1 (a head and a second node, one CPU each).

The tiny pipeline spec runs end to end on the cluster and its outputs equal the local executor's; a worker
killed mid-training is retried without leaking its temporary directory; a driver killed mid-run is resumed
from the cache; a failing step is recorded once and blocks only its dependents.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from skillmerge.errors import UsageError
from skillmerge.experiment.ray_pool import Cluster, forwarded_env
from skillmerge.experiment.runner import RunSummary, run_experiment
from skillmerge.experiment.status import STEPS_DIR, run_status
from skillmerge.models.fingerprint import checkpoint_fingerprint
from test_experiment_runner import _spec

ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (make test installs it)")

STEPS = 9  # of the small spec
NODE_OPTIONS = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=80000000", "--disable-usage-stats"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[str, Path, dict]]:
    """A head node and a second node process, each in its own process group, stopped (killed) at the end,
    and the local executor's run of the tiny spec (made while the head starts): (address, spec, outputs)."""
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    logs = tmp_path_factory.mktemp("ray-logs")
    head_args = [
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={address.split(':')[1]}",
    ]
    head_args += ["--include-dashboard=false", *NODE_OPTIONS]
    nodes = [_start(_ray_cli(*head_args), env, logs / "head.log")]
    try:
        spec, expected = _local_reference(tmp_path_factory.mktemp("local"), tiny_model_dir)
        _wait_for_nodes(address, [logs / "head.log"], nodes)
        node_args = ["start", "--block", f"--address={address}", "--node-ip-address=127.0.0.1", *NODE_OPTIONS]
        nodes.append(_start(_ray_cli(*node_args), env, logs / "node.log"))
        _wait_for_nodes(address, [logs / "head.log", logs / "node.log"], nodes)
        yield address, spec, expected
    finally:
        for node in reversed(nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for_nodes(address: str, logs: list[Path], nodes: list[subprocess.Popen]) -> None:
    """Until each node's log says its runtime started (`ray start` prints it once it joined the cluster)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert all(node.poll() is None for node in nodes), "a Ray node process exited at start-up"
        if all("Ray runtime started" in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {len(logs)} nodes")


def _outputs(run_dir: Path) -> dict[str, dict]:
    """Per step id: its key and what its output is, without times or worker names."""
    found = {}
    for manifest_file in (run_dir / STEPS_DIR).glob("*/manifest.json"):
        manifest = json.loads(manifest_file.read_text())
        result = manifest["result"]
        kept = {"key": manifest["key"]}
        if manifest["kind"] in ("train", "merge"):
            kept["weights"] = checkpoint_fingerprint(manifest_file.parent / "model")
        elif manifest["kind"] == "eval":
            kept["scores"] = result["scores"]
        else:
            kept["result"] = result
        found[manifest["id"]] = kept
    return found


def _small_spec(root: Path, tiny_model_dir: Path, **training: dict) -> Path:
    """The runner tests' tiny spec with RT and PTM at one ω: 9 steps (data 2, train 3, merge 1, eval 3)."""
    path = _spec(root, tiny_model_dir, **training)
    spec = yaml.safe_load(path.read_text())
    spec["methods"] = ["rt", "ptm"]
    spec["merge"]["omegas"] = [1.0]
    path.write_text(yaml.safe_dump(spec))
    return path


def _local_reference(root: Path, tiny_model_dir: Path) -> tuple[Path, dict]:
    spec = _small_spec(root, tiny_model_dir, rt={"max_steps": 40})  # long enough to be caught mid-step
    summary = run_experiment(spec, root / "run", eval_limit=2, echo=lambda _line: None)
    assert summary.ok
    return spec, _outputs(root / "run")


def _ray_run(spec: Path, run_dir: Path, address: str) -> RunSummary:
    return run_experiment(spec, run_dir, eval_limit=2, executor="ray", address=address, echo=lambda _l: None)


def _temporaries(run_dir: Path) -> list[str]:
    return [p.name for p in (run_dir / STEPS_DIR).iterdir() if ".tmp-" in p.name]


def _kill_the_first_worker_of(run_dir: Path, step: str, killed: list[int]) -> None:
    """SIGKILL the process building ``step``: its temporary directory ``.NAME.tmp-HOST-PID-*`` names it.

    Directories present at the start (a killed run's leftovers, whose process may be gone) are not looked at.
    """
    pattern = re.compile(rf"\.{re.escape(step)}[^.]*\.[0-9a-f]{{16}}\.tmp-.+-(\d+)-\w+")
    old = set((run_dir / STEPS_DIR).iterdir())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for entry in set((run_dir / STEPS_DIR).iterdir()) - old:
            match = pattern.fullmatch(entry.name)
            if match:
                os.kill(int(match.group(1)), signal.SIGKILL)
                killed.append(int(match.group(1)))
                return
        time.sleep(0.01)


def test_the_tiny_pipeline_on_two_nodes_survives_a_killed_driver_and_a_killed_worker_and_equals_the_local_run(
    tmp_path: Path, cluster: tuple[str, Path, dict]
) -> None:
    ray_address, spec, expected = cluster
    run_dir = tmp_path / "run"
    # 1. The driver (the CLI) killed once the data steps are done and the first trainings run.
    command = [
        sys.executable,
        "-m",
        "skillmerge",
        "run",
        str(spec),
        "--out",
        str(run_dir),
        "--eval-limit",
        "2",
    ]
    command += ["--executor", "ray", "--address", ray_address]
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            if len(list((run_dir / STEPS_DIR).glob("*/manifest.json"))) >= 2:
                break
            time.sleep(0.02)
        assert driver.poll() is None, "the run finished before its driver could be killed"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    done_before = {p.parent.name for p in (run_dir / STEPS_DIR).glob("*/manifest.json")}
    assert 2 <= len(done_before) < STEPS and not any(name.startswith("train--rt") for name in done_before)

    # 2. The same run again, in this process; the worker training RT is killed mid-step and Ray retries it.
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_the_first_worker_of, args=(run_dir, "train--rt", killed), daemon=True
    )
    killer.start()
    resumed = _ray_run(spec, run_dir, ray_address)
    killer.join(timeout=1)

    assert killed, "no RT training worker was seen mid-step"
    assert resumed.ok, resumed.text()
    assert resumed.count("cached") >= len(done_before) and resumed.count("ran") == STEPS - resumed.count(
        "cached"
    )
    assert set(run_status(run_dir).values()) == {"done"}
    assert _outputs(run_dir) == expected  # the same keys, weights and scores as the local executor's
    assert _temporaries(run_dir) == []  # neither the killed driver's steps nor the killed worker's leak
    manifests = {
        p.parent.name.split(".")[0]: json.loads(p.read_text()) for p in run_dir.glob("steps/*/manifest.json")
    }
    assert manifests["train--rt--echo--cap16--seed0"]["worker"]["pid"] != killed[0]  # the retry made it
    assert os.getpid() not in {m["worker"]["pid"] for m in manifests.values()}  # every step was a Ray task


def test_a_failing_step_is_recorded_once_and_blocks_only_its_dependents(
    tmp_path: Path, cluster: tuple[str, Path, dict], tiny_model_dir: Path
) -> None:
    ray_address = cluster[0]
    # 16 skill examples are fewer than one batch of 64: the skill training raises (deterministically).
    spec = _small_spec(tmp_path, tiny_model_dir, skill={"batch_size": 64})
    summary = _ray_run(spec, tmp_path / "run", ray_address)
    outcomes = summary.by_id()
    assert outcomes["train/skill/echo/cap16/seed0"] == "failed" and summary.count("failed") == 1
    assert {step for step, outcome in outcomes.items() if outcome == "blocked"} == {
        f"{kind}/ptm/task_arithmetic/echo/cap16/seed0/w1" for kind in ("merge", "eval")
    }
    assert summary.count("ran") == STEPS - 3  # everything else, as the local executor does
    error = json.loads(next((tmp_path / "run" / STEPS_DIR).glob("train--skill--*/error.json")).read_text())
    assert error["type"] == "UsageError" and "fewer than one effective batch" in error["message"]


def test_a_request_no_node_can_hold_is_named() -> None:
    cluster = Cluster(({"CPU": 2.0, "memory": 8 * 2**30}, {"CPU": 4.0, "GPU": 1.0, "memory": 4 * 2**30}))
    assert cluster.infeasible({"num_cpus": 4, "num_gpus": 1}) is None
    assert cluster.infeasible({"num_cpus": 1, "memory": 6 * 2**30}) is None
    reason = cluster.infeasible({"num_cpus": 4, "memory": 6 * 2**30})
    assert reason == (
        "needs 4 CPU, 6.0 GiB memory on one node, "
        "but the cluster's largest offers 4 CPU, 1 GPU, 8.0 GiB memory"
    )
    assert cluster.has_gpus and cluster.largest_cpus == 4


def test_only_the_offline_settings_of_the_driver_travel_to_the_workers() -> None:
    env = {"HF_HUB_OFFLINE": "1", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false", "PATH": "/bin"}
    assert forwarded_env(env) == {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_ray_options_are_checked_before_anything_is_written(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec = _spec(tmp_path, tiny_model_dir)
    with pytest.raises(UsageError, match="--address names a Ray cluster; it needs --executor ray"):
        run_experiment(spec, tmp_path / "run", address="127.0.0.1:1")
    with pytest.raises(UsageError, match="--executor must be one of local, ray"):
        run_experiment(spec, tmp_path / "run", executor="slurm")
    assert not (tmp_path / "run").exists()


def test_resources_follow_the_step_kind_and_the_cluster(tmp_path: Path, tiny_model_dir: Path) -> None:
    from skillmerge.experiment.dag import expand
    from skillmerge.experiment.ray_pool import step_resources
    from skillmerge.experiment.spec import load_spec
    from skillmerge.experiment.steps import StepContext

    cpus = Cluster(({"CPU": 4.0}, {"CPU": 8.0}))
    gpus = Cluster(({"CPU": 16.0, "GPU": 8.0},))
    spec = load_spec(_small_spec(tmp_path, tiny_model_dir))
    steps = {s.id: s for s in expand(spec)}
    ctx = StepContext(spec, steps, tmp_path / "run")
    train, evaluation = steps["train/general"], steps["eval/general"]
    assert step_resources(train, ctx, cpus) == {"num_cpus": 8, "num_gpus": 0}  # the largest node, whole
    assert step_resources(train, ctx, gpus) == {"num_cpus": 1, "num_gpus": 1}  # in-process: one GPU
    assert step_resources(evaluation, ctx, cpus) == {"num_cpus": 1, "num_gpus": 0}
    assert step_resources(evaluation, ctx, gpus) == {"num_cpus": 1, "num_gpus": 1}

    config = tmp_path / "ddp.yaml"
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 4\n")
    launched = spec.model_copy(
        update={"launcher": spec.launcher.model_copy(update={"accelerate_config": str(config)})}
    )
    ctx = StepContext(launched, steps, tmp_path / "run")
    assert step_resources(train, ctx, gpus) == {"num_cpus": 4, "num_gpus": 4}  # the config's processes
    assert gpus.infeasible({"num_cpus": 4, "num_gpus": 16}) == (
        "needs 4 CPU, 16 GPU on one node, but the cluster's largest offers 16 CPU, 8 GPU, 0.0 GiB memory"
    )
