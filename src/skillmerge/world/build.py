"""Assemble the skill world (:func:`make_world`) and write it to disk (:func:`write_world`).

A world is four datasets — the GENERAL mix and the three SKILLS — each with a train, validation and test
split. Generation is seeded per ``(dataset, split)`` and the splits are drawn test first, then validation,
then train, so the evaluation splits do not change when only the train sizes do. A prompt is used once in
the whole world (compared after :func:`~skillmerge.data.leakage.normalise_prompt`), so no prompt repeats
within or across splits.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmerge.atomic import atomic_dir
from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.world import coding, general, safety, science

NAMES: tuple[str, ...] = ("general", "science", "safety", "coding")
SKILLS: tuple[str, ...] = ("science", "safety", "coding")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_TRAIN: dict[str, int] = {"general": 512, "science": 256, "safety": 256, "coding": 256}
DEFAULT_VALIDATION = 32
DEFAULT_TEST = 64
FORMAT_VERSION = 1
MAX_CONSECUTIVE_REPEATS = 5_000  # an endless generator that only repeats itself has run out of prompts

Item = tuple[str, str, str, dict]  # (source, prompt, answer, extra)


@dataclass(frozen=True)
class World:
    """``splits[name][split]`` is the list of records; ``heldout`` says what the test split holds out."""

    seed: int
    splits: dict[str, dict[str, list[ChatRecord]]]
    heldout: dict[str, Any] = field(default_factory=dict)

    def records(self, name: str, split: str) -> list[ChatRecord]:
        if name not in self.splits:
            raise UsageError(f"unknown world dataset {name!r}; expected one of {', '.join(self.splits)}")
        if split not in self.splits[name]:
            raise UsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return self.splits[name][split]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{name: {split: number of records}}``."""
        return {name: {split: len(recs) for split, recs in by.items()} for name, by in self.splits.items()}

    def manifest(self) -> dict[str, Any]:
        """What ``world.json`` holds: the seed, counts per file and per source, and the held-out sets."""
        files: dict[str, Any] = {}
        totals: Counter[str] = Counter()
        for name, by_split in self.splits.items():
            for split, records in by_split.items():
                per_source = Counter(r.source or "?" for r in records)
                totals.update(per_source)
                files[file_name(name, split)] = {
                    "name": name,
                    "split": split,
                    "records": len(records),
                    "sources": dict(sorted(per_source.items())),
                }
        return {
            "format_version": FORMAT_VERSION,
            "seed": self.seed,
            "files": files,
            "sources": dict(sorted(totals.items())),
            "heldout": self.heldout,
        }


def file_name(name: str, split: str) -> str:
    """``<name>-<split>.jsonl``, e.g. ``safety-test.jsonl``."""
    return f"{name}-{split}.jsonl"


def _check_size(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{what}: expected a non-negative integer, got {value!r}")
    return value


def _rng(seed: int, *parts: str) -> random.Random:
    # str seeds hash with SHA-512 in the random module: stable across runs and PYTHONHASHSEED
    return random.Random(":".join(["skillmerge-world", str(seed), *parts]))


def _take(stream: Iterable[Item], n: int, seen: set[str], what: str) -> Iterator[Item]:
    """The first ``n`` items of ``stream`` whose normalised prompt is not in ``seen`` (which it extends)."""
    if n == 0:
        return
    got = 0
    repeats = 0
    for item in stream:
        key = normalise_prompt(item[1])
        if key in seen:
            repeats += 1
            if repeats > MAX_CONSECUTIVE_REPEATS:
                break
            continue
        repeats = 0
        seen.add(key)
        yield item
        got += 1
        if got == n:
            return
    raise UsageError(f"{what}: cannot make {n} distinct records (only {got} available); ask for fewer")


def _general_stream(rng: random.Random) -> Iterator[Item]:
    order = list(general.FAMILIES)
    while True:
        rng.shuffle(order)
        for family in order:
            yield general.general_item(family, rng)


def _to_records(name: str, split: str, items: list[Item]) -> list[ChatRecord]:
    return [
        ChatRecord(
            (Message("user", prompt), Message("assistant", answer)),
            id=f"{name}-{split}-{i:05d}",
            source=source,
            extra=dict(extra),
        )
        for i, (source, prompt, answer, extra) in enumerate(items)
    ]


def _by_name(split: str, sizes: dict[str, int], given: Mapping[str, int]) -> dict[str, int]:
    """``sizes`` with the checked sizes of ``given`` (dataset name → records of ``split``) put in."""
    for name, n in given.items():
        if name not in sizes:
            raise UsageError(f"{split} size for unknown dataset {name!r}; expected one of {', '.join(NAMES)}")
        sizes[name] = _check_size(f"{split} size of {name}", n)
    return sizes


def make_world(
    seed: int = 0,
    *,
    train: Mapping[str, int] | None = None,
    validation: int = DEFAULT_VALIDATION,
    test: int | Mapping[str, int] = DEFAULT_TEST,
) -> World:
    """Generate the whole world for ``seed``.

    ``train`` overrides the default train sizes (:data:`DEFAULT_TRAIN`) by dataset name; ``validation`` is
    the size of that split for every dataset; ``test`` too, or a mapping that overrides it by dataset name
    (``{"general": 256}``: a general test set large enough to tell a 2% loss from one item). Safety splits
    are half harmful, half benign (harmful gets the odd one). Raises :class:`UsageError` for a bad size or
    an unknown name, or when a size exceeds what a generator can make without repeating a prompt.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed: expected an integer, got {seed!r}")
    sizes = _by_name("train", dict(DEFAULT_TRAIN), train or {})
    if isinstance(test, Mapping):
        test_sizes = _by_name("test", dict.fromkeys(NAMES, DEFAULT_TEST), test)
    else:
        test_sizes = dict.fromkeys(NAMES, _check_size("test size", test))
    validation = _check_size("validation size", validation)
    safety_plan = safety.make_plan(_rng(seed, "safety", "plan"))
    coding_plan = coding.make_plan(_rng(seed, "coding", "plan"))
    seen: set[str] = set()
    splits: dict[str, dict[str, list[ChatRecord]]] = {name: {} for name in NAMES}
    for split in ("test", "validation", "train"):
        for name in NAMES:
            n = {"train": sizes[name], "test": test_sizes[name], "validation": validation}[split]
            rng = _rng(seed, name, split)
            what = f"{name} {split}"
            items: list[Item]
            if name == "general":
                items = list(_take(_general_stream(rng), n, seen, what))
            elif name == "science":
                items = list(_take(science.science_stream(split, seed, rng), n, seen, what))
            elif name == "safety":
                items = []
                for label, count in (("harmful", (n + 1) // 2), ("benign", n // 2)):
                    stream = safety.label_stream(split, label, safety_plan, rng)
                    items += _take(stream, count, seen, f"{what} {label}")
            else:
                items = list(_take(coding.coding_stream(split, coding_plan, rng), n, seen, what))
            rng.shuffle(items)
            splits[name][split] = _to_records(name, split, items)
    ordered = {name: {split: splits[name][split] for split in SPLITS} for name in NAMES}
    heldout = {"safety": safety_plan.to_json(), "coding_names": coding_plan.to_json()}
    return World(seed, ordered, heldout)


def write_world(out_dir: str | Path, world: World, *, overwrite: bool = False) -> Path:
    """Write ``<name>-<split>.jsonl`` for every dataset and split plus ``world.json``, atomically.

    Refuses an existing ``out_dir`` (:class:`~skillmerge.errors.OutputExistsError`) unless ``overwrite``.
    """
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, by_split in world.splits.items():
            for split, records in by_split.items():
                write_jsonl(tmp / file_name(name, split), records)
        text = json.dumps(world.manifest(), indent=2, ensure_ascii=False) + "\n"
        (tmp / "world.json").write_text(text, encoding="utf-8")
    return out
