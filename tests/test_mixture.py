"""Mixtures: fractions, counts, up-sampling, source tags, determinism, and the YAML spec."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from skillmerge.data.mixture import MixtureSpec, build_mixture, load_mixture_yaml
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.errors import UsageError


def _records(name: str, n: int, *, tagged: bool = False) -> list[ChatRecord]:
    return [
        ChatRecord(
            (Message("user", f"{name} question {i}"), Message("assistant", f"answer {i}")),
            id=f"{name}-{i}",
            source=f"tag-{name}" if tagged else None,
        )
        for i in range(n)
    ]


POOL = {"code": _records("code", 40), "math": _records("math", 10), "chat": _records("chat", 7, tagged=True)}


def pool_loader(source: str) -> list[ChatRecord]:
    return POOL[source]


def test_fraction_keeps_floor_of_the_share() -> None:
    mix = build_mixture({"code": 0.25, "math": 0.55}, seed=0, loader=pool_loader)
    assert Counter(r.source for r in mix) == {"code": 10, "math": 5}
    assert len({r.id for r in mix}) == 15  # a fraction draws without replacement


def test_count_within_the_source_draws_without_replacement() -> None:
    mix = build_mixture({"code": 33}, seed=1, loader=pool_loader)
    assert len(mix) == 33 and len({r.id for r in mix}) == 33


def test_count_larger_than_the_source_upsamples_whole_copies_plus_remainder() -> None:
    mix = build_mixture({"math": 25}, seed=3, loader=pool_loader)
    copies = Counter(r.id for r in mix)
    assert len(mix) == 25
    assert set(copies) == {f"math-{i}" for i in range(10)}  # every record at least twice
    assert Counter(copies.values()) == {2: 5, 3: 5}  # 25 = 2·10 + 5 extra distinct records


def test_records_without_source_get_the_source_name_and_tagged_ones_keep_theirs() -> None:
    mix = build_mixture({"math": 1.0, "chat": 1.0}, seed=0, loader=pool_loader)
    assert Counter(r.source for r in mix) == {"math": 10, "tag-chat": 7}


def test_mixture_is_deterministic_for_a_seed_and_shuffled() -> None:
    spec = {"code": 1.0, "math": 1.0}
    first = [r.id for r in build_mixture(spec, seed=7, loader=pool_loader)]
    again = [r.id for r in build_mixture(spec, seed=7, loader=pool_loader)]
    other = [r.id for r in build_mixture(spec, seed=8, loader=pool_loader)]
    assert first == again
    assert first != other and sorted(first) == sorted(other)
    # shuffled across sources, not 40 code records followed by 10 math ones
    sources = [i.split("-")[0] for i in first]
    assert sources != sorted(sources, key=lambda s: s != "code")


def test_adding_a_source_does_not_change_what_another_contributes() -> None:
    alone = {r.id for r in build_mixture({"code": 0.5}, seed=4, loader=pool_loader)}
    mixed = {r.id for r in build_mixture({"code": 0.5, "math": 3}, seed=4, loader=pool_loader)}
    assert alone == {i for i in mixed if i.startswith("code")}


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "count 0 must be at least 1"),
        (-3, "count -3"),
        (1.5, r"fraction 1.5 must be in \(0, 1\]"),
        (0.0, "fraction 0.0"),
        (True, "boolean"),
        ("10", "not a number"),
    ],
)
def test_bad_amount_is_refused_naming_the_source(amount: object, message: str) -> None:
    with pytest.raises(UsageError, match=rf"mixture source 'math': .*{message}"):
        build_mixture({"code": 1.0, "math": amount}, seed=0, loader=pool_loader)  # type: ignore[dict-item]


def test_empty_source_is_refused_by_name() -> None:
    with pytest.raises(UsageError, match="mixture source 'none': no records"):
        build_mixture({"none": 1.0}, seed=0, loader=lambda _s: [])


def test_yaml_spec_reads_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "math.jsonl", POOL["math"])
    write_jsonl(tmp_path / "data" / "code.jsonl", POOL["code"])
    spec_path = tmp_path / "mix.yaml"
    spec_path.write_text(
        "sources:\n  data/math.jsonl: 12\n  data/code.jsonl: 0.5\nseed: 5\n", encoding="utf-8"
    )
    spec = load_mixture_yaml(spec_path)
    assert spec.sources == {"data/math.jsonl": 12, "data/code.jsonl": 0.5} and spec.seed == 5
    assert isinstance(spec.sources["data/math.jsonl"], int)
    mix = spec.build()
    assert Counter(r.source for r in mix) == {"data/math.jsonl": 12, "data/code.jsonl": 20}
    assert [r.id for r in mix] == [r.id for r in load_mixture_yaml(spec_path).build()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources:\n  a.jsonl: 2.5\nseed: 1\n", r"mix\.yaml: sources: .*'a\.jsonl': fraction 2\.5"),
        ("sources: {}\n", "mix.yaml: sources: .*at least one source"),
        ("sources:\n  a.jsonl: 1\nseed: one\n", "mix.yaml: seed: "),
        ("sources:\n  a.jsonl: 1\nweights: 3\n", "mix.yaml: weights: Extra inputs"),
        ("- a\n- b\n", "mix.yaml: expected a mapping"),
        ("sources: [\n", r"mix\.yaml:2: malformed YAML"),
    ],
)
def test_bad_yaml_spec_is_one_line_naming_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=message) as info:
        load_mixture_yaml(path)
    assert "\n" not in str(info.value)


def test_spec_keeps_hub_and_absolute_sources_as_written(tmp_path: Path) -> None:
    spec = MixtureSpec(sources={"hub:org/name": 1.0, "/abs/x.jsonl": 1.0, "rel.jsonl": 2}, base_dir=tmp_path)
    assert spec.resolve("hub:org/name") == "hub:org/name"
    assert spec.resolve("/abs/x.jsonl") == "/abs/x.jsonl"
    assert spec.resolve("rel.jsonl") == str(tmp_path / "rel.jsonl")


def test_fraction_is_read_as_the_decimal_written() -> None:
    hundred = {"h": _records("h", 100)}
    mix = build_mixture({"h": 0.29}, seed=0, loader=hundred.__getitem__)
    assert len(mix) == 29  # ⌊0.29·100⌋ in floating point would be 28
