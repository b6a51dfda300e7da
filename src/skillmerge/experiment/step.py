"""A step of an experiment: its id, typed config, dependencies, inputs and content-addressed key.

    key = sha256( canonical_json({kind, config, inputs: {role: fingerprint}, deps: {step id: key}}) )

where ``config`` is the typed config's :meth:`~skillmerge.experiment.step_configs.StepConfig.record` and
``canonical_json`` sorts keys. Paths are not part of the key, contents are: moving a file keeps the keys,
editing one skill's data changes exactly the keys of the steps downstream of it.

Step ids name what a step makes, e.g. ``train/cft/safety/cap100/seed0``; its directory in a run is
``<id with '/' as '--'>.<key[:16]>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from skillmerge.experiment.step_configs import StepConfig

KINDS = ("data", "train", "merge", "eval")


@dataclass(frozen=True)
class InputRef:
    """A file or model read from outside the run: where it is and what its content hashes to."""

    path: str
    fingerprint: str


@dataclass
class Step:
    """One unit of work; ``config`` (typed) is all but the inputs and dependencies that defines its output."""

    id: str
    config: StepConfig
    deps: tuple[str, ...] = ()
    inputs: dict[str, InputRef] = field(default_factory=dict)
    key: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)
    used_by: list[str] = field(default_factory=list)  # arms whose cost includes this training (not keyed)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def dirname(self) -> str:
        return f"{self.id.replace('/', '--')}.{self.key[:16]}"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def step_key(kind: str, config: dict[str, Any], inputs: dict[str, str], dep_keys: dict[str, str]) -> str:
    """sha256 of the step's kind, canonical config, input fingerprints and dependency keys."""
    payload = {"kind": kind, "config": config, "inputs": inputs, "deps": dep_keys}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
