"""A synthetic "skill world" in the shape of the Merge-to-Learn setup, small enough to train on in minutes.

Four chat datasets, each split into train / validation / test: the GENERAL mix (copy, reverse, arithmetic,
sort, count, lookup; :mod:`~skillmerge.world.general`) and three SKILLS — SCIENCE passage questions
(:mod:`~skillmerge.world.science`), SAFETY refusals with benign look-alikes (:mod:`~skillmerge.world.safety`)
and CODING tiny functions (:mod:`~skillmerge.world.coding`). Every record is one user turn and one short,
fixed assistant answer, so a model can be scored by teacher-forced exact match.

:func:`make_world` builds it from a seed; :func:`write_world` writes ``<name>-<split>.jsonl`` files and
``world.json``. A data-stage package: it imports only ``skillmerge.data``, ``skillmerge.errors``,
``skillmerge.atomic`` and the standard library.
"""

from __future__ import annotations

from skillmerge.world.build import (
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    DEFAULT_VALIDATION,
    NAMES,
    SKILLS,
    SPLITS,
    World,
    file_name,
    make_world,
    write_world,
)
from skillmerge.world.safety import COMPLIANCE, REFUSAL

__all__ = [
    "COMPLIANCE",
    "DEFAULT_TEST",
    "DEFAULT_TRAIN",
    "DEFAULT_VALIDATION",
    "NAMES",
    "REFUSAL",
    "SKILLS",
    "SPLITS",
    "World",
    "file_name",
    "make_world",
    "write_world",
]
