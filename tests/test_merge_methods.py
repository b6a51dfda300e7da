"""Merge methods against plain references written straight from their formulas (numpy, float64, loops).

The references below share no code with ``skillmerge.merge.methods``: they rank magnitudes with a stable
numpy argsort and do the TIES election entry by entry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from draw_reference import ref_draw_words
from skillmerge.errors import UsageError
from skillmerge.merge.methods import (
    MergeMethod,
    TensorInputs,
    get_method,
    list_methods,
    parse_model_params,
    parse_params,
    parse_weight,
    register,
)
from skillmerge.merge.methods.sparsify import top_k_mask

BUILTIN = {
    "linear",
    "task_arithmetic",
    "wise_ft",
    "ties",
    "dare_linear",
    "dare_ties",
    "breadcrumbs",
    "breadcrumbs_ties",
    "slerp",
}
FAST = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------- inputs


def make_inputs(
    n_models: int,
    shape: tuple[int, ...] = (6, 7),
    seed: int = 0,
    weights: list[float] | None = None,
    method: str | None = None,
    model_params: list[dict] | None = None,
) -> TensorInputs:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen)
    models = [base + 0.5 * torch.randn(shape, generator=gen) for _ in range(n_models)]
    if weights is None:
        weights = [float(w) for w in torch.rand(n_models, generator=gen) * 1.5 + 0.25]
    params = []
    if method is not None:
        raw = model_params or [{} for _ in range(n_models)]
        params = [parse_model_params(get_method(method), r, f"models[{i}]") for i, r in enumerate(raw)]
    return TensorInputs(
        name="model.layers.0.mlp.up_proj.weight",
        base=base,
        models=models,
        deltas=[m - base for m in models],
        weights=weights,
        model_params=params,
    )


def run(method: str, inputs: TensorInputs, seed: int = 0, **params: object) -> torch.Tensor:
    chosen = get_method(method)
    return chosen.fn(inputs, parse_params(chosen, params), torch.Generator().manual_seed(seed))


def np_of(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def assert_close(actual: torch.Tensor, expected: np.ndarray, atol: float = 1e-5) -> None:
    assert actual.dtype == torch.float32
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.numpy().astype(np.float64), expected, atol=atol, rtol=1e-5)


# ---------------------------------------------------------------- references (from the formulas)


def ref_top_band(delta: np.ndarray, skip: int, keep: int) -> np.ndarray:
    """Keep the entries ranked skip .. skip+keep-1 by descending magnitude (ties: lower index first)."""
    flat = delta.reshape(-1)
    order = np.argsort(-np.abs(flat), kind="stable")
    out = np.zeros_like(flat)
    chosen = order[skip : skip + keep]
    out[chosen] = flat[chosen]
    return out.reshape(delta.shape)


def ref_trim(delta: np.ndarray, density: float) -> np.ndarray:
    if density >= 1:
        return delta
    return ref_top_band(delta, 0, int(density * delta.size))


def ref_band(delta: np.ndarray, density: float, gamma: float) -> np.ndarray:
    if density >= 1:
        return delta
    n = delta.size
    keep = int(density * n)
    skip = min(int(gamma * n), n - keep)
    return ref_top_band(delta, skip, keep)


def ref_sum(base, deltas, weights, normalize, lam):
    total = sum(w * d for w, d in zip(weights, deltas, strict=True))
    if normalize and abs(sum(weights)) >= 1e-8:
        total = total / sum(weights)
    return base + lam * total


def ref_ties_combine(base, deltas, weights, normalize, lam):
    """Entry by entry: elect the sign of Σ w_i δ_i (≥ 0 → +), average the agreeing w_i δ_i."""
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


def ref_dare_deltas(deltas, densities, seed, rescale=True):
    """Keep where word < ⌈density·2³²⌉, one key per model with density < 1, in order, from one generator."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for delta, density in zip(deltas, densities, strict=True):
        if density >= 1:
            out.append(delta)
            continue
        words = ref_draw_words(gen, delta.size).reshape(delta.shape)
        kept = np.where(words < math.ceil(density * 2**32), delta, 0.0)
        out.append(kept / density if rescale else kept)
    return out


def ref_slerp(t, a, b):
    a_flat, b_flat = a.reshape(-1), b.reshape(-1)
    cos = float(a_flat @ b_flat) / (np.linalg.norm(a_flat) * np.linalg.norm(b_flat))
    if abs(cos) > 0.9995:
        return (1 - t) * a + t * b
    omega = math.acos(cos)
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def parts(inputs: TensorInputs):
    return np_of(inputs.base), [np_of(d) for d in inputs.deltas], inputs.weights


# ---------------------------------------------------------------- registry and parameters


# Methods added for mergekit parity (tests/test_merge_methods_more.py); kept out of BUILTIN, whose loops below
# assume the task-arithmetic family's parameters (a base, λ).
MERGEKIT_ONLY = {
    "della",
    "della_linear",
    "model_stock",
    "sce",
    "nuslerp",
    "multislerp",
    "karcher",
    "nearswap",
}
MERGEKIT_ONLY |= {"passthrough"}


def test_importing_the_package_registers_every_builtin_method():
    everything = BUILTIN | MERGEKIT_ONLY
    assert {m.name for m in list_methods()} == everything
    assert [m.name for m in list_methods()] == sorted(everything)
    for name in everything:
        method = get_method(name)
        assert method.name == name and callable(method.fn) and method.formula.startswith("θ = ")


def test_unknown_method_is_refused_with_the_known_names():
    with pytest.raises(UsageError) as err:
        get_method("ties_v2")
    message = str(err.value)
    assert message.startswith("unknown merge method 'ties_v2'; choose one of: breadcrumbs, ")
    assert "\n" not in message and err.value.exit_code == 2


def test_registering_a_second_method_under_a_taken_name_is_refused():
    ties = get_method("ties")
    assert register(ties) is ties  # re-registering the same object is harmless
    impostor = MergeMethod(name="ties", fn=ties.fn, needs_base=True)
    with pytest.raises(ValueError, match="already registered"):
        register(impostor)
    assert get_method("ties") is ties


def test_methods_declare_base_and_model_count_needs():
    for name in BUILTIN - {"linear", "slerp"}:
        assert get_method(name).needs_base, name
    assert not get_method("linear").needs_base
    assert (get_method("wise_ft").min_models, get_method("wise_ft").max_models) == (1, 1)
    assert (get_method("slerp").min_models, get_method("slerp").max_models) == (1, 2)


@pytest.mark.parametrize("density", [1.5, 0, -0.1, 0.0])
def test_density_outside_unit_interval_is_a_one_line_error_naming_model_and_field(density):
    with pytest.raises(UsageError) as err:
        parse_model_params(get_method("ties"), {"density": density}, "models[1] (runs/code)")
    message = str(err.value)
    assert message.startswith("models[1] (runs/code): density: ")
    assert f"(got {density!r})" in message and "\n" not in message


def test_density_that_is_not_a_number_is_refused():
    with pytest.raises(UsageError, match=r"models\[0\] \(a\): density: input should be a valid number"):
        parse_model_params(get_method("dare_ties"), {"density": "half"}, "models[0] (a)")
    with pytest.raises(UsageError, match="density"):
        parse_model_params(get_method("dare_ties"), {"density": True}, "models[0] (a)")


@pytest.mark.parametrize("weight", ["abc", None, True, float("nan"), float("inf"), [1.0]])
def test_weight_that_is_not_a_finite_number_is_refused(weight):
    with pytest.raises(UsageError) as err:
        parse_weight(weight, "models[2] (runs/safety)")
    assert str(err.value) == f"models[2] (runs/safety): weight: must be a finite number (got {weight!r})"


def test_weight_accepts_ints_and_floats():
    assert parse_weight(2, "w") == 2.0
    assert parse_weight(-0.25, "w") == -0.25


def test_unknown_parameter_is_refused_naming_it_and_the_allowed_ones():
    with pytest.raises(UsageError) as err:
        parse_params(get_method("ties"), {"lamda": 0.5}, "parameters")
    assert str(err.value) == (
        "parameters: unknown parameter 'lamda' for method ties "
        "(allowed: lambda, normalize, rescale, rescale_norm, int8_mask)"
    )
    with pytest.raises(UsageError, match="unknown parameter 'gamma' for method ties"):
        parse_model_params(get_method("ties"), {"gamma": 0.1}, "models[0]")
    with pytest.raises(UsageError, match="unknown parameter 'density' for method linear"):
        parse_model_params(get_method("linear"), {"density": 0.5}, "models[0]")


def test_slerp_requires_t():
    with pytest.raises(UsageError, match=r"^parameters: t: required by method slerp$"):
        parse_params(get_method("slerp"), {})


def test_lambda_is_accepted_by_its_mergekit_name_and_its_python_name():
    method = get_method("task_arithmetic")
    assert parse_params(method, {"lambda": 0.3}).lambda_ == 0.3
    assert parse_params(method, {"lambda_": 0.3}).lambda_ == 0.3
    assert parse_params(method, {"lambda": 0.3}).model_dump(by_alias=True)["lambda"] == 0.3
    with pytest.raises(UsageError, match="lambda: input should be a finite number"):
        parse_params(method, {"lambda": float("nan")})


def test_defaults_match_mergekit():
    defaults = {name: parse_params(get_method(name), {}) for name in BUILTIN - {"slerp", "wise_ft"}}
    assert defaults["linear"].normalize is True
    assert defaults["task_arithmetic"].normalize is False
    assert defaults["ties"].normalize is True and defaults["ties"].rescale is False
    for name in ("dare_linear", "dare_ties"):
        assert defaults[name].normalize is False and defaults[name].rescale is True
    for name in ("breadcrumbs", "breadcrumbs_ties"):
        assert defaults[name].normalize is False and defaults[name].rescale is False
    for name in BUILTIN - {"slerp", "wise_ft", "linear"}:
        assert defaults[name].lambda_ == 1.0
    assert parse_model_params(get_method("ties"), {}, "m").density == 1.0
    crumbs = parse_model_params(get_method("breadcrumbs"), {}, "m")
    assert (crumbs.density, crumbs.gamma) == (1.0, 0.01)


# ---------------------------------------------------------------- each method against its reference


@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize("normalize", [True, False])
def test_linear_matches_formula(n_models, normalize):
    inputs = make_inputs(n_models, seed=n_models)
    expected = sum(w * np_of(m) for w, m in zip(inputs.weights, inputs.models, strict=True))
    if normalize:
        expected = expected / sum(inputs.weights)
    assert_close(run("linear", inputs, normalize=normalize), expected)


def test_linear_with_weights_summing_to_zero_is_refused_when_normalizing():
    inputs = make_inputs(2, weights=[1.0, -1.0])
    with pytest.raises(UsageError, match=r"tensor model\.layers\.0\.mlp\.up_proj\.weight: .*sum to 0"):
        run("linear", inputs)
    expected = np_of(inputs.models[0]) - np_of(inputs.models[1])
    assert_close(run("linear", inputs, normalize=False), expected)


@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize(("lam", "normalize"), [(1.0, False), (0.7, False), (0.7, True)])
def test_task_arithmetic_matches_formula(n_models, lam, normalize):
    inputs = make_inputs(n_models, seed=10 + n_models)
    base, deltas, weights = parts(inputs)
    expected = ref_sum(base, deltas, weights, normalize, lam)
    assert_close(run("task_arithmetic", inputs, **{"lambda": lam, "normalize": normalize}), expected)


def test_task_arithmetic_computes_task_vectors_when_the_engine_passes_none():
    inputs = make_inputs(3, seed=3)
    expected = run("task_arithmetic", inputs)
    inputs.deltas = None
    torch.testing.assert_close(run("task_arithmetic", inputs), expected, rtol=0, atol=1e-6)


def test_papers_ptm_is_generalist_plus_omega_times_skill_vector():
    """θ_G at weight 1 and θ_D at weight ω against the pretrained base: θ_G + ω·(θ_D − θ_base)."""
    inputs = make_inputs(2, weights=[1.0, 0.3], seed=4)
    theta_g, theta_d, base = (np_of(t) for t in (inputs.models[0], inputs.models[1], inputs.base))
    assert_close(run("task_arithmetic", inputs), theta_g + 0.3 * (theta_d - base))


@pytest.mark.parametrize("omega", [0.0, 0.25, 1.0, 1.5])
def test_wise_ft_interpolates_from_generalist_to_continued_fine_tune(omega):
    inputs = make_inputs(1, weights=[omega], seed=5)
    base, cft = np_of(inputs.base), np_of(inputs.models[0])
    expected = base + omega * (cft - base)
    assert_close(run("wise_ft", inputs), expected)
    inputs.weights = [1.0]
    assert_close(run("wise_ft", inputs, omega=omega), expected)  # the parameter overrides the weight


@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize("normalize", [True, False])
def test_ties_matches_formula_with_per_model_density(n_models, normalize):
    densities = [0.2, 0.5, 1.0, 0.75][:n_models]
    inputs = make_inputs(
        n_models, seed=20 + n_models, method="ties", model_params=[{"density": d} for d in densities]
    )
    base, deltas, weights = parts(inputs)
    trimmed = [ref_trim(d, k) for d, k in zip(deltas, densities, strict=True)]
    expected = ref_ties_combine(base, trimmed, weights, normalize, 0.8)
    assert_close(run("ties", inputs, normalize=normalize, **{"lambda": 0.8}), expected)


def test_ties_with_negative_weight_elects_on_weighted_deltas():
    inputs = make_inputs(
        3, seed=6, weights=[1.0, -0.5, 0.8], method="ties", model_params=[{"density": 0.6}] * 3
    )
    base, deltas, weights = parts(inputs)
    trimmed = [ref_trim(d, 0.6) for d in deltas]
    assert_close(run("ties", inputs), ref_ties_combine(base, trimmed, weights, True, 1.0))


def test_ties_sign_tie_elects_positive_and_averages_agreeing_entries():
    base = torch.zeros(4)
    d1 = torch.tensor([1.0, -2.0, 3.0, 0.0])
    d2 = torch.tensor([-1.0, 2.0, 1.0, 0.0])
    inputs = TensorInputs("t", base, [base + d1, base + d2], [d1, d2], [1.0, 1.0])
    # entry 0: sum 0 → +, only model 1 agrees; entry 1: sum 0 → +, only model 2; entry 2: both agree.
    torch.testing.assert_close(run("ties", inputs), torch.tensor([1.0, 2.0, 2.0, 0.0]))
    torch.testing.assert_close(run("ties", inputs, normalize=False), torch.tensor([1.0, 2.0, 4.0, 0.0]))


def test_ties_keeps_exactly_floor_density_n_entries_and_at_least_one():
    delta = torch.arange(1.0, 11.0)  # magnitudes 1..10
    inputs = TensorInputs("bias", torch.zeros(10), [delta], [delta], [1.0], [])
    inputs.model_params = [parse_model_params(get_method("ties"), {"density": 0.3}, "m")]
    torch.testing.assert_close(run("ties", inputs), torch.tensor([0.0] * 7 + [8.0, 9.0, 10.0]))
    inputs.model_params = [parse_model_params(get_method("ties"), {"density": 0.05}, "m")]
    # ⌊0.5⌋ = 0, but a non-empty tensor keeps its largest entry (mergekit 0.1.5)
    torch.testing.assert_close(run("ties", inputs), torch.tensor([0.0] * 9 + [10.0]))


def test_ties_rescale_l1_preserves_each_task_vectors_l1_norm():
    inputs = make_inputs(1, seed=7, weights=[1.0], method="ties", model_params=[{"density": 0.3}])
    out = run("ties", inputs, rescale=True, rescale_norm="l1", normalize=False) - inputs.base
    assert float(out.abs().sum()) == pytest.approx(float(inputs.deltas[0].abs().sum()), rel=1e-5)
    assert int((out != 0).sum()) == int(0.3 * 42)


@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_dare_linear_matches_formula(n_models, seed):
    densities = [0.3, 0.9, 1.0, 0.5][:n_models]
    inputs = make_inputs(
        n_models, seed=30 + n_models, method="dare_linear", model_params=[{"density": d} for d in densities]
    )
    base, deltas, weights = parts(inputs)
    dropped = ref_dare_deltas(deltas, densities, seed)
    assert_close(run("dare_linear", inputs, seed=seed), ref_sum(base, dropped, weights, False, 1.0))
    dropped_raw = ref_dare_deltas(deltas, densities, seed, rescale=False)
    assert_close(
        run("dare_linear", inputs, seed=seed, rescale=False, normalize=True, **{"lambda": 0.5}),
        ref_sum(base, dropped_raw, weights, True, 0.5),
    )


@pytest.mark.parametrize("n_models", [2, 3, 4])
def test_dare_ties_matches_formula(n_models):
    densities = [0.5, 0.7, 0.4, 1.0][:n_models]
    inputs = make_inputs(
        n_models, seed=40 + n_models, method="dare_ties", model_params=[{"density": d} for d in densities]
    )
    base, deltas, weights = parts(inputs)
    dropped = ref_dare_deltas(deltas, densities, seed=9)
    assert_close(run("dare_ties", inputs, seed=9), ref_ties_combine(base, dropped, weights, False, 1.0))
    assert_close(
        run("dare_ties", inputs, seed=9, normalize=True), ref_ties_combine(base, dropped, weights, True, 1.0)
    )


def test_dare_same_seed_same_output_across_thread_counts():
    """Large enough (2^18 entries) that torch parallelises elementwise kernels over threads."""
    inputs = make_inputs(3, shape=(512, 512), seed=8, method="dare_ties", model_params=[{"density": 0.3}] * 3)
    before = torch.get_num_threads()
    try:
        outputs = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs[threads] = (run("dare_ties", inputs, seed=123), run("dare_linear", inputs, seed=123))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outputs[1][0], outputs[2][0])
    assert torch.equal(outputs[1][1], outputs[2][1])
    assert not torch.equal(outputs[1][0], run("dare_ties", inputs, seed=124))  # the seed matters


def test_dare_output_depends_only_on_its_own_generator():
    inputs = make_inputs(2, seed=9, method="dare_linear", model_params=[{"density": 0.5}] * 2)
    other = make_inputs(2, shape=(33,), seed=10, method="dare_linear", model_params=[{"density": 0.5}] * 2)
    alone = run("dare_linear", inputs, seed=5)
    run("dare_linear", other, seed=5)  # another tensor merged first, with its own generator
    torch.manual_seed(999)  # and the global RNG disturbed
    torch.rand(100)
    assert torch.equal(run("dare_linear", inputs, seed=5), alone)


def test_dare_drops_one_minus_density_of_entries():
    inputs = make_inputs(
        1, shape=(200, 100), seed=11, weights=[1.0], method="dare_linear", model_params=[{"density": 0.3}]
    )
    out = run("dare_linear", inputs) - inputs.base
    kept = (out != 0).float().mean().item()
    assert kept == pytest.approx(0.3, abs=0.01)  # binomial std ≈ 0.003
    survivors = out != 0
    torch.testing.assert_close(out[survivors], inputs.deltas[0][survivors] / 0.3)


def test_dare_linear_expectation_is_task_arithmetic():
    inputs = make_inputs(3, shape=(5, 8), seed=12, method="dare_linear", model_params=[{"density": 0.5}] * 3)
    n_seeds = 400
    mean = sum(run("dare_linear", inputs, seed=s) for s in range(n_seeds)) / n_seeds
    expected = run("task_arithmetic", inputs)
    # per entry: Var = Σ_i w_i² δ_i² (1 − p)/p / N
    sigma = torch.sqrt(sum(w**2 * d**2 for w, d in zip(inputs.weights, inputs.deltas, strict=True)) / n_seeds)
    z = ((mean - expected).abs() / sigma).max().item()
    assert z < 5.0


@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize(("density", "gamma"), [(0.5, 0.1), (0.3, 0.0), (0.8, 0.3), (0.9, 0.05)])
def test_breadcrumbs_matches_formula(n_models, density, gamma):
    params = [{"density": density, "gamma": gamma}] * n_models
    inputs = make_inputs(
        n_models, shape=(10, 12), seed=50 + n_models, method="breadcrumbs", model_params=params
    )
    base, deltas, weights = parts(inputs)
    banded = [ref_band(d, density, gamma) for d in deltas]
    assert_close(run("breadcrumbs", inputs), ref_sum(base, banded, weights, False, 1.0))
    assert_close(run("breadcrumbs_ties", inputs), ref_ties_combine(base, banded, weights, False, 1.0))


def test_breadcrumbs_drops_the_top_gamma_and_keeps_the_next_density():
    delta = torch.arange(1.0, 21.0)  # magnitudes 1..20
    inputs = TensorInputs("w", torch.zeros(20), [delta], [delta], [1.0])
    inputs.model_params = [
        parse_model_params(get_method("breadcrumbs"), {"density": 0.25, "gamma": 0.1}, "m")
    ]
    expected = torch.zeros(20)
    expected[13:18] = delta[13:18]  # 20, 19 dropped as outliers; 18..14 kept; the rest too small
    torch.testing.assert_close(run("breadcrumbs", inputs), expected)


def test_breadcrumbs_on_a_tensor_too_small_for_gamma_keeps_the_band():
    """⌊0.01·8⌋ = 0 outliers: the top ⌊0.5·8⌋ entries stay (mergekit would zero the whole vector)."""
    delta = torch.tensor([5.0, -1.0, 3.0, 0.5, -4.0, 2.0, 0.1, 6.0])
    inputs = TensorInputs("norm", torch.zeros(8), [delta], [delta], [1.0])
    inputs.model_params = [parse_model_params(get_method("breadcrumbs"), {"density": 0.5}, "m")]
    torch.testing.assert_close(run("breadcrumbs", inputs), torch.tensor([5.0, 0, 3.0, 0, -4.0, 0, 0, 6.0]))


def test_breadcrumbs_with_density_one_keeps_outliers_too():
    inputs = make_inputs(2, seed=13, method="breadcrumbs", model_params=[{"density": 1.0, "gamma": 0.5}] * 2)
    torch.testing.assert_close(run("breadcrumbs", inputs), run("task_arithmetic", inputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
def test_slerp_matches_formula(t):
    inputs = make_inputs(2, shape=(16, 9), seed=14)
    a, b = np_of(inputs.models[0]), np_of(inputs.models[1])
    assert_close(run("slerp", inputs, t=t), ref_slerp(t, a, b))


def test_slerp_with_a_base_and_one_model_starts_at_the_base():
    inputs = make_inputs(1, shape=(16, 9), seed=15)
    assert_close(run("slerp", inputs, t=0.4), ref_slerp(0.4, np_of(inputs.base), np_of(inputs.models[0])))
    torch.testing.assert_close(run("slerp", inputs, t=0.0), inputs.base)


def test_slerp_of_nearly_colinear_tensors_falls_back_to_lerp():
    a = torch.randn(50, generator=torch.Generator().manual_seed(16))
    b = 2.0 * a + 1e-4  # cos ≈ 1
    inputs = TensorInputs("w", None, [a, b], None, [1.0, 1.0])
    torch.testing.assert_close(run("slerp", inputs, t=0.25), 0.75 * a + 0.25 * b)


def test_slerp_with_wrong_number_of_endpoints_is_refused():
    inputs = make_inputs(3, seed=17)
    with pytest.raises(UsageError, match=r"slerp needs exactly two endpoints .* got 3 model"):
        run("slerp", inputs, t=0.5)


def test_all_zero_task_vectors_return_the_base_for_every_base_method():
    base = torch.randn(5, 6, generator=torch.Generator().manual_seed(18))
    zeros = [torch.zeros(5, 6) for _ in range(3)]
    for name in ("task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties"):
        method = get_method(name)
        density = {"density": 0.5} if "density" in method.model_params.model_fields else {}
        inputs = TensorInputs("w", base, [base.clone() for _ in zeros], zeros, [0.5, 1.0, 2.0])
        inputs.model_params = [parse_model_params(method, density, "m") for _ in zeros]
        torch.testing.assert_close(run(name, inputs, normalize=True), base, rtol=0, atol=0, msg=name)


def test_methods_leave_their_inputs_untouched():
    for name in BUILTIN:
        method = get_method(name)
        n = {"wise_ft": 1, "slerp": 2}.get(name, 3)
        density = {"density": 0.5} if "density" in method.model_params.model_fields else {}
        inputs = make_inputs(n, seed=19, method=name, model_params=[density] * n)
        snapshot = [t.clone() for t in [inputs.base, *inputs.models, *inputs.deltas]]
        run(name, inputs, **({"t": 0.5} if name == "slerp" else {}))
        for before, after in zip(snapshot, [inputs.base, *inputs.models, *inputs.deltas], strict=True):
            assert torch.equal(before, after), name


def test_top_k_mask_with_many_equal_magnitudes_keeps_exactly_k_lowest_index_first():
    magnitudes = torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 3.0, 0.0])
    for k in range(9):
        mask = top_k_mask(magnitudes, k)
        expected = np.zeros(8, dtype=bool)
        expected[np.argsort(-magnitudes.numpy(), kind="stable")[:k]] = True
        assert mask.tolist() == expected.tolist(), k


# ---------------------------------------------------------------- properties


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4), normalize=st.booleans())
def test_task_arithmetic_with_lambda_zero_returns_base(seed, n, normalize):
    inputs = make_inputs(n, shape=(4, 5), seed=seed)
    out = run("task_arithmetic", inputs, normalize=normalize, **{"lambda": 0.0})
    torch.testing.assert_close(out, inputs.base, rtol=0, atol=0)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    weights=st.lists(st.floats(0.05, 5.0), min_size=1, max_size=4),
)
def test_linear_of_identical_models_returns_the_model(seed, weights):
    model = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed))
    inputs = TensorInputs("w", None, [model.clone() for _ in weights], None, weights)
    torch.testing.assert_close(run("linear", inputs), model, rtol=1e-5, atol=1e-5)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    weight=st.floats(0.05, 3.0),
    lam=st.floats(-2.0, 2.0),
    normalize=st.booleans(),
)
def test_ties_with_density_one_and_one_model_equals_task_arithmetic(seed, weight, lam, normalize):
    inputs = make_inputs(1, shape=(4, 5), seed=seed, weights=[weight], method="ties")
    params = {"lambda": lam, "normalize": normalize}
    torch.testing.assert_close(
        run("ties", inputs, **params), run("task_arithmetic", inputs, **params), rtol=1e-6, atol=1e-6
    )


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4), normalize=st.booleans())
def test_dare_linear_with_density_one_equals_task_arithmetic(seed, n, normalize):
    inputs = make_inputs(n, shape=(4, 5), seed=seed, method="dare_linear")
    torch.testing.assert_close(
        run("dare_linear", inputs, seed=seed, normalize=normalize),
        run("task_arithmetic", inputs, normalize=normalize),
        rtol=0,
        atol=0,
    )


@FAST
@given(seed=st.integers(0, 2**31 - 1), t=st.floats(0.0, 1.0))
def test_slerp_hits_its_endpoints_and_stays_on_the_sphere(seed, t):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(6, 6, generator=gen), torch.randn(6, 6, generator=gen)
    b = b * (torch.linalg.vector_norm(a) / torch.linalg.vector_norm(b))  # same radius
    inputs = TensorInputs("w", None, [a, b], None, [1.0, 1.0])
    torch.testing.assert_close(run("slerp", inputs, t=0.0), a)
    torch.testing.assert_close(run("slerp", inputs, t=1.0), b)
    norm = torch.linalg.vector_norm(run("slerp", inputs, t=t)).item()
    assert norm == pytest.approx(torch.linalg.vector_norm(a).item(), rel=1e-5)


def test_the_task_arithmetic_family_is_one_table_of_registered_methods():
    from skillmerge.merge.methods.family import FAMILY

    assert [v.name for v in FAMILY] == [
        "task_arithmetic",
        "ties",
        "dare_linear",
        "dare_ties",
        "breadcrumbs",
        "breadcrumbs_ties",
        "della",
        "della_linear",
    ]
    for variant in FAMILY:
        method = get_method(variant.name)
        assert method.fn == variant.merge and method.formula == variant.formula
        assert method.params is variant.params and method.model_params is variant.model_params
        assert method.elementwise == (variant.sparsify is None) and method.needs_base
    assert [v.consensus for v in FAMILY] == [False, True, False, True, False, True, True, False]


def test_disjoint_sum_is_bitwise_the_masked_sum_and_skips_the_divisor_when_asked() -> None:
    from skillmerge.merge.methods.sparsify import disjoint_sum

    gen = torch.Generator().manual_seed(3)
    deltas = [torch.randn(5000, generator=gen) * (torch.rand(5000, generator=gen) < 0.6) for _ in range(3)]
    deltas[0][:100] = -0.0  # zeros of either sign never agree
    weights = [0.5, -0.7, 1.3]
    elected = torch.where(sum(d * w for d, w in zip(deltas, weights, strict=True)) >= 0, 1.0, -1.0)
    mixed_ref, divisor_ref = torch.zeros(5000), torch.zeros(5000)
    for delta, weight in zip(deltas, weights, strict=True):
        agree = torch.sign(delta * weight) == elected
        mixed_ref += (delta * weight).masked_fill(~agree, 0.0)
        divisor_ref += agree * weight
    mixed, divisor = disjoint_sum(deltas, weights)
    assert divisor is not None and torch.equal(divisor, divisor_ref)
    assert torch.equal(mixed, mixed_ref) and torch.equal(mixed.signbit(), mixed_ref.signbit())
    alone, none = disjoint_sum(deltas, weights, with_divisor=False)
    assert none is None and torch.equal(alone, mixed)
