"""The generalised task-arithmetic family in one table: every variant is a sparsifier × a combination rule.

Each row below is one registered method. Per tensor, every variant computes (see :mod:`.task_arithmetic`)::

    τ_i' = sparsify(τ_i; model i's parameters)        τ_i = θ_i − θ_base
    θ    = θ_base + λ·Σ_i w_i·τ_i'          (÷ Σ_i w_i if normalize)             without consensus
    θ    = θ_base + λ·Σ_i w_i·τ_i'·a_i      (÷ Σ_i w_i·a_i if normalize)         with TIES consensus
                                           (a_i: entry agrees with the sign elected by Σ_i w_i·τ_i')

    method            sparsify (per model)                       consensus  normalize  rescale
    task_arithmetic   none                                       no         False      -
    ties              top-density magnitudes          (ties)     yes        True       False
    dare_linear       Bernoulli(density) drop         (dare)     no         False      True
    dare_ties         Bernoulli(density) drop         (dare)     yes        False      True
    breadcrumbs       magnitude band (γ, density)   (breadcrumbs) no        False      False
    breadcrumbs_ties  magnitude band (γ, density)   (breadcrumbs) yes       False      False
    della             rank-graded Bernoulli (density ± ε) (della)  yes    True       True (l1)
    della_linear      rank-graded Bernoulli (density ± ε) (della)  no     False      True (l1)

Defaults are mergekit's. A new variant is one more row: a sparsifier, a consensus flag and its schemas.
Each sparsifier also has a streamed form (:mod:`.streaming`): the engine then runs the variant over slices
(:meth:`Variant.merge_streamed`) with the same output, so no fp32 temporary is as large as the tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, SliceMerge, TensorInputs, TensorSlices
from skillmerge.merge.methods.breadcrumbs import (
    BreadcrumbsModelParams,
    BreadcrumbsParams,
    keep_band,
    keep_band_streamed,
)
from skillmerge.merge.methods.dare import DareParams, drop_at_random, drop_at_random_streamed
from skillmerge.merge.methods.della import (
    DellaLinearParams,
    DellaModelParams,
    DellaParams,
    magnitude_sample,
    magnitude_sample_streamed,
)
from skillmerge.merge.methods.sparsify import DensityParams
from skillmerge.merge.methods.streaming import KEEP_ALL, DrawStream, StreamedSparsifier
from skillmerge.merge.methods.task_arithmetic import (
    GeneralizedParams,
    TaskArithmeticParams,
    checked_model_params,
    combine_deltas_into,
    combine_models_into,
    combine_task_vectors,
    per_model_params,
    require_base,
    task_vectors,
)
from skillmerge.merge.methods.ties import TiesParams, trim_by_magnitude, trim_by_magnitude_streamed
from skillmerge.merge.params import ModelParams

Sparsifier = Callable[[torch.Tensor, ModelParams, GeneralizedParams, torch.Generator], torch.Tensor]
"""τ_i' from τ_i, model i's parameters, the method's parameters and the tensor's generator."""


@dataclass(frozen=True)
class Variant:
    """One member of the family: how each task vector is sparsified and how the vectors are combined."""

    name: str
    sparsify: Sparsifier | None
    consensus: bool
    params: type[GeneralizedParams]
    model_params: type[ModelParams]
    formula: str
    streamed_sparsify: StreamedSparsifier | None = None  # the same sparsifier over slices (.streaming)

    def merge(self, inputs: TensorInputs, params: GeneralizedParams, rng: torch.Generator) -> torch.Tensor:
        """θ_base + λ·(combined sparsified τ_i): the module docstring's formula for this row."""
        base = require_base(inputs)
        deltas = task_vectors(inputs)
        if self.sparsify is not None:
            models = per_model_params(inputs, self.model_params)
            # model order: DARE's and DELLA's masks are drawn from rng one model after another
            deltas = [self.sparsify(d, m, params, rng) for d, m in zip(deltas, models, strict=True)]
        return combine_task_vectors(
            base,
            deltas,
            inputs.weights,
            consensus=self.consensus,
            normalize=params.normalize,
            lambda_=params.lambda_,
        )

    def merge_into(self, inputs: TensorInputs, params: GeneralizedParams, out: torch.Tensor) -> None:
        """:meth:`merge` of a plain (no sparsifier, no consensus) row written into ``out`` (``IntoFn``)."""
        combine_models_into(
            out,
            inputs.models,
            inputs.weights,
            require_base(inputs),
            normalize=params.normalize,
            lambda_=params.lambda_,
        )

    def merge_streamed(
        self, slices: TensorSlices, params: GeneralizedParams, rng: torch.Generator
    ) -> SliceMerge:
        """:meth:`merge` in two phases: each model's sparsifier reads its slices for its statistics (in model
        order, drawing as :meth:`merge` does), then every slice is sparsified and combined on its own —
        the combination is elementwise, so each entry sees the same fp32 operations as in :meth:`merge`."""
        if slices.base_flat is None:
            raise UsageError(f"tensor {slices.name}: this merge method needs a base model")
        assert self.streamed_sparsify is not None
        count = len(slices.model_flats)
        models = checked_model_params(slices.name, slices.model_params, count, self.model_params)
        stream = DrawStream(rng)
        sparsifiers = [self.streamed_sparsify(slices, i, m, params, stream) for i, m in enumerate(models)]
        weights = list(slices.weights)

        options = {"consensus": self.consensus, "normalize": params.normalize, "lambda_": params.lambda_}

        def sparsified(start: int, stop: int) -> list[torch.Tensor]:
            return [s.apply(slices.delta(i, start, stop)) for i, s in enumerate(sparsifiers)]

        def merge(start: int, stop: int) -> torch.Tensor:
            return combine_task_vectors(slices.base(start, stop), sparsified(start, stop), weights, **options)

        def into(start: int, stop: int, out: torch.Tensor) -> None:
            combine_deltas_into(out, slices.base(start, stop), sparsified(start, stop), weights, **options)

        return SliceMerge(
            merge,
            into=into,
            align=max((s.align for s in sparsifiers), default=KEEP_ALL.align),
            inputs_checked=bool(sparsifiers) and all(s.checked for s in sparsifiers),
        )

    def method(self) -> MergeMethod:
        return MergeMethod(
            name=self.name,
            fn=self.merge,
            needs_base=True,
            params=self.params,
            model_params=self.model_params,
            formula=self.formula,
            # without a sparsifier every entry goes through the same fp32 sums: safe to run in slices
            elementwise=self.sparsify is None,
            into=self.merge_into if self.sparsify is None and not self.consensus else None,
            streamed=self.merge_streamed if self.streamed_sparsify is not None else None,
            # phase 1 vouches for finite inputs where every model's statistic saw every entry
            checks_inputs=self.streamed_sparsify is not None,
        )


FAMILY: tuple[Variant, ...] = (
    Variant(
        "task_arithmetic",
        None,
        False,
        TaskArithmeticParams,
        ModelParams,
        "θ = θ_base + λ·Σ w_i (θ_i − θ_base)",
    ),
    Variant(
        "ties",
        trim_by_magnitude,
        True,
        TiesParams,
        DensityParams,
        "θ = θ_base + λ·disjoint_mean(sign-elected top-density τ_i)",
        trim_by_magnitude_streamed,
    ),
    Variant(
        "dare_linear",
        drop_at_random,
        False,
        DareParams,
        DensityParams,
        "θ = θ_base + λ·Σ w_i·(Bernoulli(density) ⊙ τ_i / density)",
        drop_at_random_streamed,
    ),
    Variant(
        "dare_ties",
        drop_at_random,
        True,
        DareParams,
        DensityParams,
        "θ = θ_base + λ·TIES-consensus sum of DARE-dropped τ_i",
        drop_at_random_streamed,
    ),
    Variant(
        "breadcrumbs",
        keep_band,
        False,
        BreadcrumbsParams,
        BreadcrumbsModelParams,
        "θ = θ_base + λ·Σ w_i·band_γ,density(τ_i)",
        keep_band_streamed,
    ),
    Variant(
        "breadcrumbs_ties",
        keep_band,
        True,
        BreadcrumbsParams,
        BreadcrumbsModelParams,
        "θ = θ_base + λ·TIES-consensus sum of band_γ,density(τ_i)",
        keep_band_streamed,
    ),
    Variant(
        "della",
        magnitude_sample,
        True,
        DellaParams,
        DellaModelParams,
        "θ = θ_base + λ·disjoint_mean(Bernoulli(density−ε+2ε·rank/(n−1)) ⊙ τ_i, L1-rescaled)",
        magnitude_sample_streamed,
    ),
    Variant(
        "della_linear",
        magnitude_sample,
        False,
        DellaLinearParams,
        DellaModelParams,
        "θ = θ_base + λ·Σ w_i·(Bernoulli(density−ε+2ε·rank/(n−1)) ⊙ τ_i, L1-rescaled)",
        magnitude_sample_streamed,
    ),
)

METHODS = tuple(variant.method() for variant in FAMILY)
