"""DELLA, Model Stock, SCE, NuSLERP, Multi-SLERP, Karcher, Nearswap and Passthrough against their formulas.

The references below are numpy float64 loops written from each module's formula; they share no code with
``skillmerge.merge.methods`` (ranks come from a stable numpy argsort, geodesics from the textbook maps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from draw_reference import ref_draw_words
from skillmerge.errors import UsageError
from skillmerge.merge.methods import TensorInputs, get_method, parse_model_params, parse_params

NEW = (
    "della",
    "della_linear",
    "model_stock",
    "sce",
    "nuslerp",
    "multislerp",
    "karcher",
    "nearswap",
    "passthrough",
)


def make_inputs(
    n_models: int,
    shape: tuple[int, ...] = (6, 7),
    seed: int = 0,
    weights: list[float] | None = None,
    method: str | None = None,
    model_params: list[dict] | None = None,
    with_base: bool = True,
    spread: float = 0.5,
) -> TensorInputs:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen)
    models = [base + spread * torch.randn(shape, generator=gen) for _ in range(n_models)]
    if weights is None:
        weights = [float(w) for w in torch.rand(n_models, generator=gen) * 1.5 + 0.25]
    params = []
    if method is not None and model_params is not None:
        params = [
            parse_model_params(get_method(method), r, f"models[{i}]") for i, r in enumerate(model_params)
        ]
    return TensorInputs(
        name="model.layers.0.mlp.up_proj.weight",
        base=base if with_base else None,
        models=models,
        deltas=[m - base for m in models] if with_base else None,
        weights=weights,
        model_params=params,
    )


def run(method: str, inputs: TensorInputs, seed: int = 0, **params: object) -> torch.Tensor:
    chosen = get_method(method)
    return chosen.fn(inputs, parse_params(chosen, params), torch.Generator().manual_seed(seed))


def np_of(t: torch.Tensor | None) -> np.ndarray:
    assert t is not None
    return t.detach().numpy().astype(np.float64)


def assert_close(actual: torch.Tensor, expected: np.ndarray, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    assert actual.dtype == torch.float32
    assert tuple(actual.shape) == expected.shape
    np.testing.assert_allclose(actual.numpy().astype(np.float64), expected, atol=atol, rtol=rtol)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def ref_slerp(t: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = float(a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    if abs(cos) > 0.9995:
        return (1 - t) * a + t * b
    omega = math.acos(cos)
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def ref_ties(base: np.ndarray, deltas: list[np.ndarray], weights: list[float], normalize: bool, lam: float):
    """Entry by entry: elect the sign of Σ w_i δ_i (≥ 0 → +), sum (or average) the agreeing w_i δ_i."""
    out = base.copy().reshape(-1)
    flats = [d.reshape(-1) for d in deltas]
    for j in range(out.size):
        contributions = [w * f[j] for w, f in zip(weights, flats, strict=True)]
        elected = 1.0 if sum(contributions) >= 0 else -1.0
        mixed = divisor = 0.0
        for w, c in zip(weights, contributions, strict=True):
            if c != 0 and math.copysign(1.0, c) == elected:
                mixed += c
                divisor += w
        if normalize and divisor != 0:
            mixed /= divisor
        out[j] += lam * mixed
    return out.reshape(base.shape)


# ---------------------------------------------------------------- registry and mergekit YAML


def test_every_new_method_is_registered_with_its_formula():
    for name in NEW:
        method = get_method(name)
        assert method.name == name and method.formula.startswith("θ = "), name
    assert {n for n in NEW if get_method(n).needs_base} == {
        "della",
        "della_linear",
        "model_stock",
        "sce",
        "nearswap",
    }
    assert {n for n in NEW if get_method(n).elementwise} == {"nearswap", "passthrough"}


def test_new_methods_defaults_match_mergekit():
    della = parse_params(get_method("della"), {})
    linear = parse_params(get_method("della_linear"), {})
    assert (della.normalize, della.rescale, della.rescale_norm, della.lambda_) == (True, True, "l1", 1.0)
    assert (linear.normalize, linear.rescale, linear.rescale_norm) == (False, True, "l1")
    own = parse_model_params(get_method("della"), {}, "m")
    assert (own.density, own.epsilon) == (1.0, 0.15)
    assert parse_params(get_method("sce"), {}).select_topk == 1.0
    assert parse_params(get_method("model_stock"), {}).filter_wise is False
    nu = parse_params(get_method("nuslerp"), {})
    assert (nu.nuslerp_flatten, nu.nuslerp_row_wise) == (True, False)
    multi = parse_params(get_method("multislerp"), {})
    assert (multi.normalize_weights, multi.eps) == (True, 1e-8)
    karcher = parse_params(get_method("karcher"), {})
    assert (karcher.max_iter, karcher.tol) == (10, 1e-5)
    with pytest.raises(UsageError, match="t: required"):
        parse_params(get_method("nearswap"), {})


@pytest.mark.parametrize("density, epsilon", [(0.1, 0.2), (0.9, 0.15)])
def test_della_refuses_keep_probabilities_outside_the_unit_interval(density, epsilon):
    with pytest.raises(UsageError) as err:
        parse_model_params(get_method("della"), {"density": density, "epsilon": epsilon}, "models.0 (a)")
    assert "\n" not in str(err.value) and "epsilon" in str(err.value)


def test_mergekit_yaml_with_each_new_method_is_accepted(tmp_path):
    from skillmerge.merge.config import load_merge_config

    bodies = {
        "della": "base_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 0.5, epsilon: 0.1}}]",
        "della_linear": "base_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 0.5}}]",
        "sce": "base_model: b\nmodels: [{model: a}, {model: c}]\nparameters: {select_topk: 0.5}",
        "model_stock": "base_model: b\nmodels: [{model: b}, {model: a}, {model: c}]",
        "nuslerp": "models: [{model: a, parameters: {weight: 0.3}}, {model: c, parameters: {weight: 0.7}}]",
        "multislerp": "base_model: b\nmodels: [{model: a, parameters: {weight: 1}}, {model: c}]",
        "karcher": "base_model: b\nmodels: [{model: a}, {model: b}]\nparameters: {max_iter: 5}",
        "nearswap": "base_model: b\nmodels: [{model: b}, {model: a}]\nparameters: {t: 0.001}",
        "passthrough": "models: [{model: a, parameters: {scale: [{filter: o_proj, value: 0}, {value: 1}]}}]",
    }
    for method, body in bodies.items():
        path = tmp_path / f"{method}.yaml"
        path.write_text(f"merge_method: {method}\n{body}\n")
        config = load_merge_config(path)
        assert config.method == method
    karcher = load_merge_config(tmp_path / "karcher.yaml")
    assert karcher.base_model is None and len(karcher.models) == 2  # mergekit ignores base_model there
    stock = load_merge_config(tmp_path / "model_stock.yaml")
    assert stock.base_model == str(tmp_path / "b") and len(stock.models) == 2
    della = load_merge_config(tmp_path / "della_linear.yaml")
    assert della.method_params().rescale_norm == "l1" and della.method_params().normalize is False


# ---------------------------------------------------------------- DELLA


def ref_keep_probabilities(delta: np.ndarray, density: float, epsilon: float) -> np.ndarray:
    rows = delta.reshape(-1, delta.shape[-1])
    n = rows.shape[1]
    out = np.empty_like(rows)
    for r, row in enumerate(rows):
        order = np.argsort(np.abs(row), kind="stable")  # ascending magnitude
        for rank, j in enumerate(order):
            out[r, j] = density - epsilon + 2 * epsilon * rank / (n - 1)
    return out.reshape(delta.shape)


def ref_della_deltas(deltas, densities, epsilons, seed, rescale="l1"):
    """Masks u < p_j, u the draws' 24-bit uniforms, one key per model with density < 1, in order."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for delta, density, epsilon in zip(deltas, densities, epsilons, strict=True):
        if density >= 1:
            out.append(delta)
            continue
        p = ref_keep_probabilities(delta, density, epsilon)
        u = (ref_draw_words(gen, delta.size) >> np.uint64(8)).astype(np.float64) / 2**24
        keep = u.reshape(delta.shape) < p
        kept = np.where(keep, delta, 0.0)
        if rescale == "l1":
            kept = kept * (np.abs(delta).sum() / np.abs(kept).sum())
        elif rescale == "density":
            kept = np.where(keep, delta / p, 0.0)
        out.append(kept)
    return out


def test_della_keep_probabilities_run_from_density_minus_to_plus_epsilon_by_rank_in_each_row():
    from skillmerge.merge.methods.della import keep_probabilities

    delta = torch.tensor([[0.3, -2.0, 0.1, 1.0, -0.5], [5.0, 4.0, -3.0, 2.0, 1.0]])
    p = keep_probabilities(delta, 0.5, 0.2)
    # row 0 ascending |δ|: 0.1, 0.3, -0.5, 1.0, -2.0 → ranks 1, 4, 0, 3, 2; row 1 is descending
    expected = np.array([[0.4, 0.7, 0.3, 0.6, 0.5], [0.7, 0.6, 0.5, 0.4, 0.3]])
    assert_close(p, expected, atol=1e-6)
    assert_close(keep_probabilities(delta, 0.5, 0.2), ref_keep_probabilities(np_of(delta), 0.5, 0.2), 1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (40, 576), (2, 5000)])
def test_stable_row_order_is_the_stable_argsort_with_ties_and_zeros(shape):
    from skillmerge.merge.methods.row_order import stable_row_order

    gen = torch.Generator().manual_seed(shape[1])
    values = torch.randn(shape, generator=gen)
    coarse = (values * 4).round() / 4  # many equal magnitudes per row, zeros among them
    coarse[:, ::3] = -0.0  # a negative zero is a zero magnitude too
    for matrix in (values.abs(), coarse.abs(), coarse.abs().t().contiguous().t()):  # last: not contiguous
        order = stable_row_order(matrix)
        assert order.dtype == torch.int64
        assert torch.equal(order, torch.argsort(matrix, dim=-1, stable=True))
    wide = coarse.abs().double()  # another dtype: torch's own stable argsort
    assert torch.equal(stable_row_order(wide), torch.argsort(wide, dim=-1, stable=True))
    with pytest.raises(ValueError, match="2-D"):
        stable_row_order(values.reshape(-1))


@pytest.mark.parametrize("n_models", [1, 3])
def test_della_linear_matches_formula(n_models):
    densities, epsilons = [0.5, 0.7, 1.0][:n_models], [0.3, 0.1, 0.15][:n_models]
    raw = [{"density": d, "epsilon": e} for d, e in zip(densities, epsilons, strict=True)]
    inputs = make_inputs(n_models, seed=50 + n_models, method="della_linear", model_params=raw)
    base, deltas = np_of(inputs.base), [np_of(d) for d in inputs.deltas]
    dropped = ref_della_deltas(deltas, densities, epsilons, seed=3)
    expected = base + sum(w * d for w, d in zip(inputs.weights, dropped, strict=True))
    assert_close(run("della_linear", inputs, seed=3), expected)
    paper = ref_della_deltas(deltas, densities, epsilons, seed=3, rescale="density")
    expected = base + 0.5 * sum(w * d for w, d in zip(inputs.weights, paper, strict=True)) / sum(
        inputs.weights
    )
    got = run("della_linear", inputs, seed=3, rescale_norm="density", normalize=True, **{"lambda": 0.5})
    assert_close(got, expected)


def test_della_matches_formula_with_ties_consensus():
    densities, epsilons = [0.4, 0.6, 0.8], [0.2, 0.3, 0.1]
    raw = [{"density": d, "epsilon": e} for d, e in zip(densities, epsilons, strict=True)]
    inputs = make_inputs(3, seed=61, method="della", model_params=raw)
    base, deltas = np_of(inputs.base), [np_of(d) for d in inputs.deltas]
    dropped = ref_della_deltas(deltas, densities, epsilons, seed=11)
    assert_close(run("della", inputs, seed=11), ref_ties(base, dropped, inputs.weights, True, 1.0))
    raw_kept = ref_della_deltas(deltas, densities, epsilons, seed=11, rescale=None)
    got = run("della", inputs, seed=11, rescale=False, normalize=False, **{"lambda": 0.7})
    assert_close(got, ref_ties(base, raw_kept, inputs.weights, False, 0.7))


def test_della_keeps_large_entries_more_often_than_small_ones():
    inputs = make_inputs(1, shape=(4000, 10), seed=3, method="della_linear", model_params=[{"density": 0.5}])
    inputs.weights = [1.0]
    kept = (run("della_linear", inputs, seed=5) - inputs.base) != 0
    ranks = inputs.deltas[0].abs().argsort(dim=-1).argsort(dim=-1)
    low, high = float(kept[ranks == 0].float().mean()), float(kept[ranks == 9].float().mean())
    assert abs(low - 0.35) < 0.03 and abs(high - 0.65) < 0.03  # density ∓ ε with ε = 0.15
    assert abs(float(kept.float().mean()) - 0.5) < 0.01


def test_della_with_density_one_is_task_arithmetic_or_ties():
    inputs = make_inputs(3, seed=62, method="della", model_params=[{}] * 3)
    base, deltas = np_of(inputs.base), [np_of(d) for d in inputs.deltas]
    assert_close(run("della", inputs), ref_ties(base, deltas, inputs.weights, True, 1.0))
    linear = make_inputs(3, seed=62, method="della_linear", model_params=[{}] * 3)
    expected = base + sum(w * d for w, d in zip(linear.weights, deltas, strict=True))
    assert_close(run("della_linear", linear), expected)


# ---------------------------------------------------------------- Model Stock


def ref_model_stock(base: np.ndarray, models: list[np.ndarray]) -> np.ndarray:
    taus = [(m - base).ravel() for m in models]
    n = len(models)
    cosines = [
        taus[i] @ taus[j] / (np.linalg.norm(taus[i]) * np.linalg.norm(taus[j]))
        for i in range(n)
        for j in range(i + 1, n)
    ]
    cos = sum(cosines) / len(cosines)
    t = n * cos / (1 + (n - 1) * cos)
    return t * sum(models) / n + (1 - t) * base


@pytest.mark.parametrize("n_models", [2, 3, 4])
def test_model_stock_matches_formula(n_models):
    gen = torch.Generator().manual_seed(70 + n_models)
    shared = torch.randn(6, 7, generator=gen)
    inputs = make_inputs(n_models, seed=70 + n_models)
    # fine-tunes that share a direction, so cos > 0 as in the paper
    inputs.models = [m + shared for m in inputs.models]
    inputs.deltas = [m - inputs.base for m in inputs.models]
    expected = ref_model_stock(np_of(inputs.base), [np_of(m) for m in inputs.models])
    assert_close(run("model_stock", inputs), expected)


def test_model_stock_filter_wise_takes_one_t_per_row():
    inputs = make_inputs(3, seed=74)
    base, models = np_of(inputs.base), [np_of(m) for m in inputs.models]
    expected = np.stack([ref_model_stock(base[r], [m[r] for m in models]) for r in range(base.shape[0])])
    assert_close(run("model_stock", inputs, filter_wise=True), expected)


def test_model_stock_of_orthogonal_task_vectors_returns_the_base_and_of_equal_ones_the_model():
    base = torch.zeros(4)
    inputs = TensorInputs(
        "w", base, [torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 2.0, 0, 0])], None, [1, 1]
    )
    assert_close(run("model_stock", inputs), np.zeros(4))  # cos = 0 → t = 0
    same = torch.tensor([1.0, 2.0, 3.0, 4.0])
    inputs = TensorInputs("w", base, [same, same.clone()], None, [1, 1])
    assert_close(run("model_stock", inputs), np_of(same))  # cos = 1 → t = 1


def test_model_stock_needs_two_models():
    with pytest.raises(UsageError, match="at least two"):
        run("model_stock", make_inputs(1))


# ---------------------------------------------------------------- SCE


def ref_sce(base: np.ndarray, deltas: list[np.ndarray], topk: float) -> np.ndarray:
    stacked = np.stack(deltas)
    if topk < 1:
        variance = stacked.var(axis=0).ravel()
        keep = np.zeros(variance.size, dtype=bool)
        k = int(np.float32(np.count_nonzero(variance)) * np.float32(topk))  # mergekit: among nonzero ones
        keep[np.argsort(-variance, kind="stable")[:k]] = True
        stacked = stacked * keep.reshape(base.shape)
    energy = np.array([np.mean(d**2) for d in stacked])
    if energy.sum() == 0:
        return base.copy()
    weights = energy / energy.sum()
    out = base.copy().ravel()
    flats = [d.ravel() for d in stacked]
    for j in range(out.size):
        elected = 1.0 if sum(f[j] for f in flats) >= 0 else -1.0
        mixed = divisor = 0.0
        for w, f in zip(weights, flats, strict=True):
            if f[j] != 0 and math.copysign(1.0, f[j]) == elected:
                mixed += w * f[j]
                divisor += w
        out[j] += mixed / divisor if divisor else 0.0
    return out.reshape(base.shape)


@pytest.mark.parametrize("topk", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("n_models", [2, 3])
def test_sce_matches_formula(n_models, topk):
    inputs = make_inputs(n_models, seed=80 + n_models)
    expected = ref_sce(np_of(inputs.base), [np_of(d) for d in inputs.deltas], topk)
    assert_close(run("sce", inputs, select_topk=topk), expected)


def test_sce_ignores_model_weights_and_keeps_the_base_when_nothing_is_selected():
    inputs = make_inputs(3, seed=83)
    reweighted = make_inputs(3, seed=83, weights=[5.0, 0.1, 1.0])
    assert torch.equal(run("sce", inputs), run("sce", reweighted))
    assert torch.equal(run("sce", inputs, select_topk=0.01), inputs.base)  # ⌊0.01·42⌋ = 0 positions


def test_sce_counts_its_selection_among_the_nonzero_variances():
    """mergekit 0.1.5 keeps ⌊select_topk · #(nonzero variances)⌋ positions (with torch's float32 product)."""
    from skillmerge.merge.methods.sce import select_count

    tau = torch.arange(1.0, 11.0)
    twice = torch.where(torch.arange(10) >= 4, 2 * tau, tau)  # equal task vectors (variance 0) on 0..3
    inputs = TensorInputs("w", torch.zeros(10), [tau, twice], None, [1, 1])
    out = run("sce", inputs, select_topk=0.5)
    assert torch.nonzero(out).reshape(-1).tolist() == [7, 8, 9]  # ⌊0.5·6⌋ = 3, not ⌊0.5·10⌋ = 5
    assert select_count(6, 0.5) == 3 and select_count(0, 0.5) == 0
    assert select_count(28_311_503, 0.3) == 8_493_452  # float32: the exact ⌊0.3·m⌋ is 8,493,450


def test_sce_weights_follow_the_mean_square_of_each_task_vector():
    base = torch.zeros(2)
    inputs = TensorInputs("w", base, [torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0])], None, [1, 1])
    # w = (1, 9)/10: both agree everywhere → (0.1·1 + 0.9·3)/(0.1 + 0.9) = 2.8
    assert_close(run("sce", inputs), np.array([2.8, 2.8]))


# ---------------------------------------------------------------- NuSLERP


@pytest.mark.parametrize("with_base", [False, True])
def test_nuslerp_flat_matches_slerp_at_the_weight_fraction(with_base):
    inputs = make_inputs(2, seed=90, weights=[0.3, 0.5], with_base=with_base, spread=1.0)
    t = 0.5 / 0.8
    a, b = np_of(inputs.models[0]), np_of(inputs.models[1])
    if with_base:
        base = np_of(inputs.base)
        expected = base + ref_slerp(t, a - base, b - base)
    else:
        expected = ref_slerp(t, a, b)
    assert_close(run("nuslerp", inputs), expected)


@pytest.mark.parametrize("row_wise", [False, True])
def test_nuslerp_unflattened_interpolates_each_vector_on_its_own(row_wise):
    inputs = make_inputs(2, seed=91, weights=[1.0, 3.0], with_base=False, spread=1.0)
    a, b = np_of(inputs.models[0]), np_of(inputs.models[1])
    if row_wise:  # vectors along the first dimension
        expected = np.stack([ref_slerp(0.75, a[:, c], b[:, c]) for c in range(a.shape[1])], axis=1)
    else:  # vectors along the last dimension
        expected = np.stack([ref_slerp(0.75, a[r], b[r]) for r in range(a.shape[0])])
    got = run("nuslerp", inputs, nuslerp_flatten=False, nuslerp_row_wise=row_wise)
    assert_close(got, expected)


def test_nuslerp_weight_zero_gives_the_other_model_and_needs_two_models():
    inputs = make_inputs(2, seed=92, weights=[0.0, 2.0], with_base=False)
    assert_close(run("nuslerp", inputs), np_of(inputs.models[1]))
    with pytest.raises(UsageError, match="exactly two"):
        run("nuslerp", make_inputs(3, with_base=False))


# ---------------------------------------------------------------- Multi-SLERP


def ref_multislerp(points: list[np.ndarray], weights: list[float], normalize: bool) -> np.ndarray:
    w = np.array(weights) / (sum(weights) if normalize else 1.0)
    units = [unit(p.ravel()) for p in points]
    mean = unit(sum(wi * u for wi, u in zip(w, units, strict=True)))
    # project onto the tangent space at the mean, average, map back with exp
    tangent = sum(wi * (u - (mean @ u) * mean) for wi, u in zip(w, units, strict=True))
    length = np.linalg.norm(tangent)
    direction = mean if length < 1e-12 else math.cos(length) * mean + math.sin(length) * tangent / length
    scale = sum(wi * np.linalg.norm(p) for wi, p in zip(w, points, strict=True))
    return (direction * scale).reshape(points[0].shape)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("with_base", [False, True])
def test_multislerp_matches_formula(with_base, normalize):
    inputs = make_inputs(3, seed=100, weights=[0.2, 1.5, 0.8], with_base=with_base, spread=1.0)
    points = [np_of(m) for m in inputs.models]
    if with_base:
        base = np_of(inputs.base)
        expected = base + ref_multislerp([p - base for p in points], inputs.weights, normalize)
    else:
        expected = ref_multislerp(points, inputs.weights, normalize)
    assert_close(run("multislerp", inputs, normalize_weights=normalize), expected)


def test_multislerp_of_two_models_is_on_their_great_circle_and_one_model_passes_through():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    merged = run("multislerp", TensorInputs("w", None, [a, b], None, [1.0, 1.0]))
    assert_close(merged, np.array([3 / math.sqrt(2), 3 / math.sqrt(2)]))  # 45°, mean norm 3
    single = TensorInputs("w", None, [a], None, [0.3])
    assert_close(run("multislerp", single, normalize_weights=False), np_of(a))


# ---------------------------------------------------------------- Karcher


def ref_karcher(points: list[np.ndarray], max_iter: int = 10, tol: float = 1e-5) -> np.ndarray:
    norms = [np.linalg.norm(p) for p in points]
    units = [p.ravel() / n for p, n in zip(points, norms, strict=True) if n > 1e-8]
    chordal = sum(units) / len(units)
    m = unit(chordal) if np.linalg.norm(chordal) > tol else units[0]
    for _ in range(max_iter):
        tangent = np.zeros_like(m)
        for u in units:
            theta = math.acos(float(np.clip(m @ u, -1, 1)))
            if theta > 1e-12:
                tangent += theta / math.sin(theta) * (u - math.cos(theta) * m) / len(units)
        length = np.linalg.norm(tangent)
        if length < tol:
            break
        m = unit(math.cos(length) * m + math.sin(length) * tangent / length)
    return (m * sum(norms) / len(norms)).reshape(points[0].shape)


@pytest.mark.parametrize("max_iter, tol", [(10, 1e-5), (1, 1e-9), (3, 1e-9), (50, 1e-12)])
def test_karcher_matches_formula(max_iter, tol):
    inputs = make_inputs(3, seed=110, with_base=False, spread=2.0)
    expected = ref_karcher([np_of(m) for m in inputs.models], max_iter, tol)
    assert_close(run("karcher", inputs, max_iter=max_iter, tol=tol), expected)


def test_karcher_starts_from_the_first_model_when_the_chordal_mean_is_shorter_than_tol():
    points = [torch.eye(3)[i] * (i + 1) for i in range(3)]  # ‖ū‖ = 1/√3 ≈ 0.577 < tol
    inputs = TensorInputs("w", None, points, None, [1, 1, 1])
    got = run("karcher", inputs, tol=0.6)
    assert_close(got, ref_karcher([np_of(p) for p in points], 10, 0.6))
    # one geodesic step from e_1 (‖T‖ = π√2/6 ≈ 0.74 ≥ tol), then ‖T‖ < tol: not the symmetric mean
    assert not np.allclose(np_of(got), np.full(3, 2 / math.sqrt(3)), atol=1e-3)


def test_karcher_converges_to_a_point_where_the_mean_log_is_zero():
    inputs = make_inputs(4, seed=111, with_base=False, spread=2.0)
    merged = np_of(run("karcher", inputs, max_iter=200, tol=1e-9)).ravel()
    m = unit(merged)
    units = [unit(np_of(x).ravel()) for x in inputs.models]
    grad = sum(math.acos(np.clip(m @ u, -1, 1)) * unit(u - (m @ u) * m) for u in units)
    assert np.linalg.norm(grad) < 1e-4
    assert np.linalg.norm(merged) == pytest.approx(
        np.mean([np.linalg.norm(u) for u in map(np_of, inputs.models)])
    )


def test_karcher_of_antipodal_pair_starts_from_the_first_model_and_zero_models_only_scale():
    a = torch.tensor([1.0, 0.0, 0.0])
    inputs = TensorInputs("w", None, [a, -3 * a], None, [1, 1])
    assert_close(run("karcher", inputs), np.array([2.0, 0.0, 0.0]))  # ū = 0 → m = u_1, mean norm 2
    inputs = TensorInputs("w", None, [a * 4, torch.zeros(3)], None, [1, 1])
    assert_close(run("karcher", inputs), np.array([2.0, 0.0, 0.0]))
    inputs = TensorInputs("w", None, [torch.zeros(3), torch.zeros(3)], None, [1, 1])
    assert_close(run("karcher", inputs), np.zeros(3))


# ---------------------------------------------------------------- Nearswap and Passthrough


@pytest.mark.parametrize("t", [0.0, 0.05, 0.5, 10.0])
def test_nearswap_matches_formula(t):
    inputs = make_inputs(1, seed=120)
    base, other = np_of(inputs.base), np_of(inputs.models[0])
    distance = np.abs(base - other)
    weight = np.clip(t / distance, 0, 1)
    expected = weight * other + (1 - weight) * base
    assert_close(run("nearswap", inputs, t=t), expected)


def test_nearswap_takes_equal_entries_and_refuses_a_negative_t():
    base = torch.tensor([1.0, 2.0, 3.0])
    inputs = TensorInputs("w", base, [torch.tensor([1.0, 2.5, 7.0])], None, [1.0])
    # w = [1 (equal), 0.1/0.5 = 0.2, 0.1/4 = 0.025]
    assert_close(run("nearswap", inputs, t=0.1), np.array([1.0, 2.1, 3.1]))
    with pytest.raises(UsageError, match="t"):
        run("nearswap", inputs, t=-1.0)


def test_passthrough_copies_the_model_and_applies_its_scale():
    inputs = make_inputs(1, seed=130, with_base=False)
    assert torch.equal(run("passthrough", inputs), inputs.models[0])
    scaled = make_inputs(1, seed=130, with_base=False, method="passthrough", model_params=[{"scale": 0.5}])
    assert_close(run("passthrough", scaled), 0.5 * np_of(scaled.models[0]))
    with pytest.raises(UsageError, match="exactly one"):
        run("passthrough", make_inputs(2, with_base=False))


def test_new_methods_leave_their_inputs_untouched():
    for name in NEW:
        n = {"nuslerp": 2, "nearswap": 1, "passthrough": 1}.get(name, 3)
        raw = [{"density": 0.5}] * n if name.startswith("della") else None
        inputs = make_inputs(n, seed=140, method=name, model_params=raw)
        snapshot = [t.clone() for t in [inputs.base, *inputs.models, *inputs.deltas]]
        run(name, inputs, **({"t": 0.1} if name == "nearswap" else {}))
        for before, after in zip(snapshot, [inputs.base, *inputs.models, *inputs.deltas], strict=True):
            assert torch.equal(before, after), name


def test_nearswap_with_t_zero_keeps_the_base_even_where_the_distance_is_subnormal():
    """0/d = 0 for every d > 0; torch's 0·(1/d) would be NaN where 1/d overflows (d < 2.9e-39)."""
    base = torch.tensor([1e-45, 0.0, 5.0, 3.0])
    other = torch.tensor([0.0, 1e-40, 5.0, 4.0])
    got = run("nearswap", TensorInputs("w", base, [other], None, [1.0]), t=0.0)
    assert torch.equal(got, base)
