"""Spec options that reach the cache keys: eval.limit (and --eval-limit), merge.parameters; the launcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from skillmerge.errors import UsageError
from skillmerge.experiment.dag import expand
from skillmerge.experiment.spec import load_spec
from test_experiment_dag import _inputs


def _edit(spec_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(spec_path.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    spec_path.write_text(yaml.safe_dump(raw))
    return spec_path


def _keys(spec_path: Path, eval_limit: int | None = None) -> dict[str, str]:
    return {s.id: s.key for s in expand(load_spec(spec_path), eval_limit)}


def test_eval_limit_is_in_every_eval_key_and_the_override_too(tmp_path: Path) -> None:
    spec_path = _inputs(tmp_path)
    spec = load_spec(spec_path)
    assert spec.eval_limit == 4 and "limit" not in spec.eval
    steps = expand(spec)
    assert {s.config.record()["limit"] for s in steps if s.kind == "eval"} == {4}
    spec_keys, override = _keys(spec_path), _keys(spec_path, eval_limit=2)
    changed = {i for i in spec_keys if spec_keys[i] != override[i]}
    assert changed == {s.id for s in steps if s.kind == "eval"} | {
        "merge/multi/task_arithmetic/safety+coding/validation"
    }
    assert _keys(spec_path, eval_limit=4) == spec_keys  # the override equal to the spec's limit: same keys


def test_merge_parameters_reach_the_merge_keys_and_bad_ones_are_refused(tmp_path: Path) -> None:
    spec_path = _edit(_inputs(tmp_path), merge__methods=["task_arithmetic", "ties"])
    before = {s.id: s for s in expand(load_spec(spec_path))}
    assert before["merge/ptm/ties/safety/cap2/seed0/w0.5"].config.record()["parameters"] == {
        "normalize": False,
        "density": 0.5,
    }
    _edit(spec_path, merge__parameters={"ties": {"density": 0.2}})
    after = {s.id: s for s in expand(load_spec(spec_path))}
    assert after["merge/ptm/ties/safety/cap2/seed0/w0.5"].config.record()["parameters"]["density"] == 0.2
    assert (
        after["merge/ptm/ties/safety/cap2/seed0/w0.5"].key
        != before["merge/ptm/ties/safety/cap2/seed0/w0.5"].key
    )
    ta = "merge/ptm/task_arithmetic/safety/cap2/seed0/w0.5"
    assert after[ta].key == before[ta].key
    _edit(spec_path, merge__parameters={"ties": {"bogus": 1}})
    with pytest.raises(UsageError, match=r"merge\.parameters\.ties: parameters\.bogus: not a parameter"):
        load_spec(spec_path)
    _edit(spec_path, merge__parameters={"dare_ties": {"density": 0.3}})
    with pytest.raises(UsageError, match=r"'dare_ties' is not in merge\.methods"):
        load_spec(spec_path)


def test_launcher_config_is_resolved_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    spec_path = _edit(_inputs(tmp_path))  # rewritten once so only the launcher differs below
    (tmp_path / "acc.yaml").write_text("distributed_type: 'NO'\n")
    keys = _keys(spec_path)
    _edit(spec_path, training__launcher={"accelerate_config": "acc.yaml", "num_processes": 2})
    spec = load_spec(spec_path)
    assert spec.launcher.accelerate_config == str(tmp_path / "acc.yaml") and spec.launcher.num_processes == 2
    assert _keys(spec_path) == keys  # how training is launched is not part of any key
    _edit(spec_path, training__launcher={"accelerate_config": "nowhere.yaml"})
    with pytest.raises(
        UsageError, match=r"training\.launcher\.accelerate_config: .*nowhere\.yaml does not exist"
    ):
        load_spec(spec_path)
