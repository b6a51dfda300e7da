"""Task-vector overlap: per-layer cosine and sign-conflict rate, checked against the formulas on files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_factory import tiny_llama
from skillmerge.errors import ModelError
from skillmerge.merge.overlap import layer_group, task_vector_overlap
from skillmerge.models.io import save_model, stored_state_dict


def _save(state: dict[str, torch.Tensor], template: torch.nn.Module, path: Path) -> Path:
    template.load_state_dict(state, strict=False)
    return save_model(template, None, path)


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, dict[str, torch.Tensor]]]:
    """θ_base and two skill models with seeded random deltas (skill b partly reuses a's direction)."""
    model = tiny_llama(seed=0)
    base = {k: v.clone() for k, v in stored_state_dict(model).items()}
    generator = torch.Generator().manual_seed(1)
    tau_a = {k: torch.randn(v.shape, generator=generator) * 0.01 for k, v in base.items()}
    tau_b = {k: 0.5 * tau_a[k] + torch.randn(v.shape, generator=generator) * 0.01 for k, v in base.items()}
    tau_b["model.layers.1.mlp.up_proj.weight"] = torch.zeros_like(base["model.layers.1.mlp.up_proj.weight"])
    paths = (
        _save(base, model, tmp_path / "base"),
        _save({k: base[k] + tau_a[k] for k in base}, model, tmp_path / "a"),
        _save({k: base[k] + tau_b[k] for k in base}, model, tmp_path / "b"),
    )
    return (*paths, {"a": tau_a, "b": tau_b})


def test_layer_groups_name_layers_embeddings_and_the_rest() -> None:
    assert layer_group("model.layers.12.mlp.up_proj.weight") == "12"
    assert layer_group("transformer.h.3.attn.c_attn.weight") == "3"
    assert layer_group("model.embed_tokens.weight") == "embeddings"
    assert layer_group("lm_head.weight") == "embeddings"
    assert layer_group("model.norm.weight") == "other"


def test_overlap_matches_the_formulas_per_layer_and_overall(three) -> None:
    base, a, b, taus = three
    seen: list[tuple[int, int]] = []
    out = task_vector_overlap(base, {"a": a, "b": b}, progress=lambda done, total: seen.append((done, total)))
    assert out["groups"] == ["embeddings", "0", "1", "other"]
    assert seen[-1][0] == seen[-1][1] == len(taus["a"])
    # The stored values are base + τ rounded to fp32, so τ is recomputed from the files' own arithmetic.
    for index, group in enumerate(out["groups"]):
        names = [k for k in taus["a"] if layer_group(k) == group]
        x = torch.cat([taus["a"][k].flatten() for k in names]).double()
        y = torch.cat([taus["b"][k].flatten() for k in names]).double()
        cosine = float(x @ y / (x.norm() * y.norm()))
        both = (x != 0) & (y != 0)
        conflict = float(((x * y) < 0).sum() / both.sum())
        pair = out["pairs"]["a+b"]
        assert pair["cosine"][index] == pytest.approx(cosine, abs=1e-4)
        assert pair["sign_conflict"][index] == pytest.approx(conflict, abs=2e-3)
        assert out["norms"]["a"][index] == pytest.approx(float(x.norm()), rel=1e-3)
    # b = 0.5·a + noise of the same size: cos ≈ 0.5/√1.25 ≈ 0.45, and signs agree more often than chance.
    overall = out["pairs"]["a+b"]["overall"]
    assert 0.35 < overall["cosine"] < 0.55
    assert 0.2 < overall["sign_conflict"] < 0.45


def test_a_vector_compared_with_itself_has_cosine_one_and_no_conflicts(three) -> None:
    base, a, _, _ = three
    pair = task_vector_overlap(base, {"a": a, "again": a})["pairs"]["a+again"]
    assert pair["overall"]["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert pair["overall"]["sign_conflict"] == 0.0


def test_a_model_with_other_shapes_is_named(three, tmp_path: Path) -> None:
    base, a, _, _ = three
    other = save_model(tiny_llama(seed=0, hidden_size=48, intermediate_size=96), None, tmp_path / "other")
    with pytest.raises(ModelError, match=r"other: tensor \S+ has shape"):
        task_vector_overlap(base, {"a": a, "other": other})
    with pytest.raises(ModelError, match="at least two models"):
        task_vector_overlap(base, {"a": a})
