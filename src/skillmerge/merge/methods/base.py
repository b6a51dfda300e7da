"""The contract between the merge engine and merge methods.

A method is a pure function on the tensors of ONE parameter name: it never reads files, picks devices or
dtypes, or seeds global RNGs — the engine does all of that. The engine hands it a :class:`TensorInputs` in
fp32 and a ``torch.Generator`` seeded from (merge seed, tensor name), so results do not depend on thread
count or tensor order.

With the config's ``compute_dtype`` set to a half precision, the inputs come in float16/bfloat16 instead
and a method computes in that dtype; where the order of operations decides the bits (sums over models,
ties in a top-k) it then follows mergekit's order (:func:`half_precision` tells which case holds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel

from skillmerge.merge.params import MethodParams, ModelParams

__all__ = [
    "MergeFn",
    "MergeMethod",
    "MethodParams",
    "ModelParams",
    "SliceMerge",
    "StreamedFn",
    "TensorInputs",
    "TensorSlices",
    "half_precision",
]


@dataclass
class TensorInputs:
    """One tensor name across all inputs, fp32.

    ``models[i]`` is θ_i; ``deltas[i]`` is θ_i − θ_base (for a LoRA entry the engine builds ΔW = scale·B·A
    directly, and ``models[i] = base + ΔW``). ``weights[i]`` is model i's weight after per-tensor overrides;
    ``model_params[i]`` holds model i's validated per-model parameters (e.g. ``density``).
    """

    name: str
    base: torch.Tensor | None
    models: list[torch.Tensor]
    deltas: list[torch.Tensor] | None
    weights: list[float]
    model_params: list[BaseModel] = field(default_factory=list)


def half_precision(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is float16/bfloat16: a merge computed in the output dtype, as mergekit does."""
    return tensor.dtype in (torch.float16, torch.bfloat16)


CACHE_BLOCK = 1 << 16
"""Entries per block of an in-place elementwise computation over a flat slice: every pass runs over one
block before the next block starts, so the block's output and scratch (256 KiB each in fp32) stay in a
core's L2 cache between passes. Four fp32 ops over 134M entries here: 0.17 s on 2 MiB buffers, 0.06 s on
256 KiB ones (the per-call overhead of smaller blocks takes over below ~64K entries). Used by the task
arithmetic family's in-place combine: its passes over SmolLM2's mapped inputs take 0.53 s instead of
0.60 s alone; in a 2-core merge the writer thread's hashing and writing set the pace, so the wall time
moves within noise there. (The Gram methods' mixes, over 1 MiB slices already, measured no gain.)"""


def cache_blocks(*tensors: torch.Tensor) -> list[tuple[int, int]] | None:
    """Consecutive [start, stop) of CACHE_BLOCK entries covering equally long flat tensors (the engine's
    slices), or None where they are not all 1-D of one length (shaped whole tensors: one piece)."""
    n = tensors[0].numel()
    if any(t.dim() != 1 or t.numel() != n for t in tensors):
        return None
    return [(start, min(start + CACHE_BLOCK, n)) for start in range(0, n, CACHE_BLOCK)]


def task_vector(model: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """τ = θ − θ_base, on fp32 tensors: the one place a task vector is formed from two models."""
    return model - base


MergeFn = Callable[[TensorInputs, Any, torch.Generator], torch.Tensor]


@dataclass
class TensorSlices:
    """One tensor name across all inputs, handed out as flat fp32 slices on demand (streamed methods).

    ``base_flat`` and ``model_flats`` are the inputs flattened, in whatever float dtype they were stored;
    :meth:`delta` converts one range at a time, so no whole fp32 copy of a task vector ever exists. Slices
    are ``slice_elements`` long (the engine's CHUNK_ELEMENTS), rounded to whole rows where a method asks.
    """

    name: str
    shape: tuple[int, ...]
    base_flat: torch.Tensor | None
    model_flats: list[torch.Tensor]
    weights: list[float]
    model_params: list[BaseModel] = field(default_factory=list)
    slice_elements: int = 1 << 18

    @property
    def numel(self) -> int:
        return self.model_flats[0].numel() if self.model_flats else 0

    @property
    def row(self) -> int:
        """Entries per row (the last dimension; a 0-d tensor is one row of one)."""
        return self.shape[-1] if self.shape else 1

    def ranges(self, align: int = 1) -> Iterator[tuple[int, int]]:
        """Consecutive [start, stop) covering the tensor, each a multiple of ``align`` entries long."""
        step = max(align, self.slice_elements // align * align)
        for start in range(0, self.numel, step):
            yield start, min(start + step, self.numel)

    def base(self, start: int, stop: int) -> torch.Tensor:
        if self.base_flat is None:
            raise ValueError(f"tensor {self.name}: no base model")
        return self.base_flat[start:stop].to(torch.float32)

    def model(self, i: int, start: int, stop: int) -> torch.Tensor:
        return self.model_flats[i][start:stop].to(torch.float32)

    def delta(self, i: int, start: int, stop: int) -> torch.Tensor:
        """τ_i on [start, stop): the same fp32 subtraction, entry for entry, as :func:`task_vector`."""
        return task_vector(self.model(i, start, stop), self.base(start, stop))

    def whole(self) -> TensorInputs:
        """The tensor's inputs whole, in fp32, as the engine hands them to a method's ``fn``: for a streamed
        method whose parameters leave nothing to stream (e.g. a per-row mode)."""
        base = None if self.base_flat is None else self.base(0, self.numel).reshape(self.shape)
        models = [self.model(i, 0, self.numel).reshape(self.shape) for i in range(len(self.model_flats))]
        deltas = None if base is None else [task_vector(model, base) for model in models]
        return TensorInputs(self.name, base, models, deltas, list(self.weights), list(self.model_params))


@dataclass(frozen=True)
class SliceMerge:
    """Phase 2 of a streamed method: ``merge(start, stop)`` is the merged tensor's flat fp32 entries there.

    The engine calls it on consecutive ranges from :meth:`TensorSlices.ranges` with this ``align``, in
    order (random masks are replayed slice after slice).

    ``into(start, stop, out)``, where given, writes the same entries (bitwise) into the fp32 slice ``out``
    instead of returning them: the engine then hands it the output buffer itself, so no result temporary
    is formed and copied. ``inputs_checked``: phase 1 summed a function of every entry of every input
    that is NaN/inf exactly when an entry is (the diagonal of a :class:`~.gram.Gram` matrix; the TIES/DARE
    family's top-k counts or rescale norms of every τ_i), and found them all finite (see
    ``MergeMethod.checks_inputs``).
    """

    merge: Callable[[int, int], torch.Tensor]
    align: int = 1
    into: Callable[[int, int, torch.Tensor], None] | None = None
    inputs_checked: bool = False

    @staticmethod
    def of(result: torch.Tensor) -> SliceMerge:
        """Phase 2 handing out slices of a result computed whole in phase 1."""
        flat = result.reshape(-1)
        return SliceMerge(lambda start, stop: flat[start:stop])


IntoFn = Callable[[TensorInputs, Any, torch.Tensor], None]
"""An elementwise method that writes its fp32 result into ``out`` (same shape as the inputs) instead of
returning a new tensor: bitwise the method's ``fn`` (the same fp32 operations in the same order per entry),
with in-place operations and no temporaries beyond one scratch slice. ``inputs.deltas`` is None (it forms
τ itself). The engine calls it slice by slice when the inputs are fp32 models (see :class:`MergeMethod`)."""

StreamedFn = Callable[[TensorSlices, Any, torch.Generator], SliceMerge]
"""Phase 1 of a streamed method: read the slices for per-tensor statistics (top-k thresholds, norms,
generator positions), draw from the generator exactly what the whole-tensor function draws, and return
phase 2. Together they give the whole-tensor function's result (see :class:`MergeMethod`)."""


@dataclass(frozen=True)
class MergeMethod:
    """A registered method: its function, whether it needs θ_base, and its parameter schemas.

    ``elementwise``: output entry j depends only on entry j of each input, through the same operations
    whatever the tensor's size, and the method draws nothing from its generator. The engine may then run it
    over flat slices of a large tensor (bounding memory, keeping operands in cache) with a result bitwise
    equal to one whole-tensor call. Methods that rank, sample or take norms (TIES, DARE, breadcrumbs,
    SLERP) must leave it False.

    ``into``: for an elementwise method, the same computation writing into a given fp32 slice (see
    :data:`IntoFn`): the engine then forms no task-vector temporaries and no result tensor per slice, which
    halves the compute of a task-arithmetic merge. Held to bitwise equality with ``fn`` by the tests.

    ``streamed``: the same method in two phases over slices (see :data:`StreamedFn`), for methods that
    need whole-tensor statistics first (a top-k threshold, an L1 norm, a dot product) but are elementwise
    once those are known. Its output equals ``fn``'s bitwise: the sums behind those statistics run in
    float64 over slices of NORM_SLICE entries in ``fn`` too (:mod:`.sparsify`, :mod:`.gram`). The engine
    uses it on the CPU for full-model inputs (without a base for methods that need none).

    ``checks_inputs``: the streamed phase 1 may see every input entry in a sum that a NaN/inf makes
    non-finite, and then reports ``SliceMerge.inputs_checked``; the engine skips its own NaN/inf pass over
    the inputs before phase 1 and runs it afterwards only when phase 1 did not vouch for them (to name the
    input, or to find none and let the output check decide). Phase 1 must then be safe on non-finite
    input (it only sums or counts, or computes whole-tensor results that are discarded).

    ``light``: a few elementwise passes per byte read (true of ``elementwise`` methods, and of the Gram
    methods besides: one float64 product pass, then a mix). The engine then computes on one thread and
    leaves the other cores to the threads that read, hash and write (SmolLM2 slerp 1.53 → 1.37 s, nuslerp
    1.56 → 1.35 s, model_stock 1.86 → 1.75 s on 2 cores); ranking and sampling methods take every core.
    """

    name: str
    fn: MergeFn
    needs_base: bool
    params: type[MethodParams] = MethodParams
    model_params: type[ModelParams] = ModelParams
    min_models: int = 1
    max_models: int | None = None
    formula: str = ""  # one line, "θ = …", written once here: the merged model card quotes it
    elementwise: bool = False
    into: IntoFn | None = None
    streamed: StreamedFn | None = None
    checks_inputs: bool = False
    light: bool = False
