"""The streaming merge: one tensor name at a time, from every input, through the method, into output shards.

For each planned tensor the engine maps the raw bytes of every input (copy-on-write memory maps of the
files, :meth:`TensorReader.map`: a small thread pool maps the next few tensors ahead and fills their page
tables, so a cold disk's reads overlap compute and a warm page cache costs no copy), converts them to fp32 on
the chosen device, checks they are finite, builds the task vectors (LoRA: ΔW = s·B·A), calls the method with
a generator seeded from ``sha256(f"{seed}:{name}")`` (so the result does not depend on thread count or
tensor order), casts to the output dtype and hands the result to a writer thread, which hashes it and writes
it at its offset (the output's shard layout is fixed from the plan up front). Elementwise methods (linear,
task_arithmetic, wise_ft, nearswap, passthrough) run over cache-sized flat slices, all but passthrough
writing each fp32 slice in place (their ``into`` form); so do streamed methods (on the CPU: the TIES/DARE
family, breadcrumbs, DELLA, SCE, SLERP, NuSLERP, Model Stock), which first read the slices for their
per-tensor statistics (top-k thresholds, norms and dot products, generator positions). Their slices go to
the writer one by one (:class:`SliceSink`), so even a 100M-entry embedding never exists as a whole fp32
copy or a whole output. Peak memory is O(the tensors mapped ahead + a few slices) for those, O(the
largest tensor's working copies) for the others, never O(model).

Everything is written inside :func:`skillmerge.atomic.atomic_dir`: an error at any point (a NaN found in
tensor 200, a full disk) leaves nothing at the destination.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import resource
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillmerge.atomic import atomic_dir
from skillmerge.errors import ModelError
from skillmerge.merge.methods.base import TensorInputs, TensorSlices, task_vector
from skillmerge.merge.plan import (
    CHUNK_ELEMENTS,
    ELEMENTWISE_CHUNK_ELEMENTS,
    OUTPUT_SLICES,
    PREFETCH_BYTES,
    InputModel,
    MergePlan,
    TensorTask,
    format_weight,
    streams,
)
from skillmerge.merge.tensor_tasks import numel
from skillmerge.merge.vectors import lora_delta
from skillmerge.models.card import render_model_card
from skillmerge.models.fingerprint import file_fingerprint, fingerprint_from_digests, header_fingerprint
from skillmerge.models.shards import PlannedShardWriter, TensorReader, TensorStream, tensor_bytes
from skillmerge.models.versions import library_versions

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
_CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
MANIFEST_FILE = "manifest.json"
# Not models.io.library_versions: importing models.io loads transformers, seconds a merge does not need.


@dataclass
class MergeResult:
    """What a merge did (or, for a dry run, would do)."""

    out_dir: Path
    dry_run: bool
    plan: dict[str, Any]
    tensors: int
    bytes_read: int
    bytes_written: int
    wall_seconds: float = 0.0
    peak_rss_bytes: int = 0
    weights_fingerprint: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    description: str = ""  # the human-readable plan (MergePlan.describe)


def tensor_seed(seed: int, name: str) -> int:
    """The per-tensor RNG seed: the first 63 bits of sha256(f"{seed}:{name}")."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _readers(plan: MergePlan) -> list[TensorReader]:
    """Every tensor reader the merge reads from: each input model's, and each LoRA adapter's."""
    readers = []
    for item in plan.inputs():
        if item.reader is not None:
            readers.append(item.reader)
        if item.adapter is not None:
            readers.append(item.adapter.reader)
    return readers


@dataclass
class _Loaded:
    base: torch.Tensor | None
    models: list[Any]  # a raw tensor, or for LoRA (a, b, replacement | None)


def _load(plan: MergePlan, task: TensorTask) -> _Loaded:
    base = None
    if plan.base is not None and task.base_source is not None:
        assert plan.base.reader is not None
        base = plan.base.reader.map(task.base_source)
    models: list[Any] = []
    for model, source in zip(plan.task_models(task), task.sources, strict=True):
        if model.kind == "lora":
            adapter = model.adapter
            assert adapter is not None
            module = adapter.modules.get(task.name)
            factors = (
                (adapter.reader.get(module.a_key), adapter.reader.get(module.b_key))
                if module is not None
                else (None, None)
            )
            key = adapter.replacements.get(task.name)
            replacement = adapter.reader.get(key) if key is not None else None
            models.append((*factors, replacement))
        else:
            assert model.reader is not None and source is not None
            models.append(model.reader.map(source))
    return _Loaded(base, models)


def _finite(tensor: torch.Tensor, owner: InputModel, name: str) -> torch.Tensor:
    # A sum is one vectorised pass with no temporary and is NaN/inf whenever an entry is (isfinite().all()
    # is ~5× slower here); only a non-finite sum, or a finite-valued overflow, pays for the exact check.
    if tensor.numel() and math.isfinite(float(tensor.sum())):
        return tensor
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ModelError(f"{owner.path}: tensor {name} has {bad} non-finite value(s) (NaN or inf)")
    return tensor


def compute_dtype(plan: MergePlan, task: TensorTask) -> torch.dtype:
    """The dtype ``task``'s inputs are converted to and merged in: float32 unless the config's
    ``compute_dtype`` asks for a half precision (``dtype``: the task's output dtype, as mergekit)."""
    name = plan.config.compute_dtype
    if name == "dtype":
        return task.out_dtype if task.out_dtype.is_floating_point else torch.float32
    return getattr(torch, name)


class SliceSink:
    """Merged slices on their way to the writer thread, through a ring of ``RING`` (OUTPUT_SLICES) reused
    slice buffers.

    A tensor merged slice by slice is written slice by slice (:meth:`PlannedShardWriter.open_stream`): the
    writer thread hashes and writes one slice while the merge computes the next, and a buffer is reused only
    once its write is done, so output memory is O(RING slices) whatever the tensor's size (no whole
    embedding-sized output buffer, no page faults for one per tensor). Whole tensors (the other methods)
    go through :meth:`add`, one in the writer at a time. Every writer call runs on the one writer thread, in
    submission order; :meth:`finish` waits for all and raises the first error.
    """

    RING = OUTPUT_SLICES

    def __init__(self, pool: ThreadPoolExecutor, writer: PlannedShardWriter) -> None:
        self._pool, self._writer = pool, writer
        self._pending: deque[Future[None]] = deque()
        self._slots: list[torch.Tensor] = []
        self._count = 0
        self._stream: TensorStream | None = None

    def open(self, name: str) -> None:
        """Start tensor ``name``; its slices follow with :meth:`slot` / :meth:`put`, then :meth:`close`."""
        self._submit(self._open, name)

    def slot(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """A buffer for the next slice (``n`` entries of ``dtype``) that no pending write still reads."""
        self._drain(self.RING - 1)
        i = self._count % self.RING
        nbytes = n * dtype.itemsize
        if i == len(self._slots):
            self._slots.append(torch.empty(nbytes, dtype=torch.uint8))
        elif self._slots[i].numel() < nbytes:
            self._slots[i] = torch.empty(nbytes, dtype=torch.uint8)
        return self._slots[i][:nbytes].view(dtype)

    def put(self, data: torch.Tensor) -> None:
        """Queue the slice just filled in the buffer from :meth:`slot`."""
        self._count += 1
        self._submit(self._write, tensor_bytes(data))

    def close(self) -> None:
        self._submit(self._close)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Queue a whole tensor, after everything before it is written (memory: one tensor in the writer)."""
        self._drain(0)
        self._submit(self._writer.add, name, tensor)

    def finish(self) -> None:
        self._drain(0)

    def abort(self) -> None:
        """Let queued writes end (errors ignored) before the writer closes its files."""
        while self._pending:
            future = self._pending.popleft()
            if not future.cancel():
                future.exception()

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def _open(self, name: str) -> None:  # writer thread
        self._stream = self._writer.open_stream(name)

    def _write(self, data: memoryview) -> None:  # writer thread
        assert self._stream is not None
        self._stream.write(data)

    def _close(self) -> None:  # writer thread
        assert self._stream is not None
        self._stream.close()
        self._stream = None


def merge_tensor(
    plan: MergePlan, task: TensorTask, loaded: _Loaded, sink: SliceSink | None = None
) -> torch.Tensor | None:
    """Run the method on one tensor's inputs (fp32, or the compute dtype, on the plan's device); returns the
    output-dtype tensor. With ``sink``, a tensor merged in slices (elementwise and streamed methods) goes to
    it slice by slice, already checked for NaN/inf, and None is returned."""
    device = torch.device(plan.config.device)
    compute = compute_dtype(plan, task)

    def fp32(raw: torch.Tensor, owner: InputModel) -> torch.Tensor:
        return _finite(raw.to(device=device, dtype=compute), owner, task.name)

    if not task.merge:  # integer buffers and the like: the reference's value, unchanged
        raw = loaded.base if loaded.base is not None else loaded.models[0]
        return raw.clone()
    task_models = plan.task_models(task)
    full_models = all(model.kind == "model" for model in task_models)
    if _chunked(plan, task):
        return _merge_chunked(plan, task, loaded, device, compute, sink)
    if (
        streams(plan.method, device, compute)
        and full_models
        and numel(task.shape)
        and (loaded.base is not None or not plan.method.needs_base)
    ):
        return _merge_streamed(plan, task, loaded, sink)
    base = fp32(loaded.base, plan.base) if loaded.base is not None and plan.base is not None else None
    loaded.base = None  # drop raw (e.g. bf16) buffers as soon as their fp32 copy exists
    models: list[torch.Tensor] = []
    deltas: list[torch.Tensor] = []
    for i, model in enumerate(task_models):
        raw, loaded.models[i] = loaded.models[i], None
        if model.kind == "lora":
            assert base is not None and model.adapter is not None
            a, b, replacement = raw
            theta = base if replacement is None else fp32(replacement, model)
            delta_w = None
            if a is not None:
                b32 = fp32(b, model)
                delta_w = lora_delta(model.adapter.modules[task.name], fp32(a, model), b32)
            if delta_w is None:
                models.append(theta)
                deltas.append(task_vector(theta, base))
            elif replacement is None:
                models.append(base + delta_w)
                deltas.append(delta_w)  # exact: no (base + ΔW) − base rounding
            else:
                models.append(theta + delta_w)
                deltas.append(task_vector(models[-1], base))
        else:
            theta = fp32(raw, model)
            models.append(theta)
            if base is not None:
                deltas.append(task_vector(theta, base))
    inputs = TensorInputs(
        name=task.name,
        base=base,
        models=models,
        deltas=deltas if base is not None else None,
        weights=list(task.weights),
        model_params=list(task.model_params),
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(tensor_seed(plan.config.seed, task.name))
    out = plan.method.fn(inputs, task.params, generator)
    if tuple(out.shape) != task.shape:
        raise ModelError(
            f"method {plan.method.name} returned shape {list(out.shape)} for {task.name}, "
            f"expected {list(task.shape)}"
        )
    return out.to(dtype=task.out_dtype).to("cpu")


def _chunked(plan: MergePlan, task: TensorTask) -> bool:
    """Whether ``task`` runs through :func:`_merge_chunked` (which checks its own output for NaN/inf)."""
    return (
        task.merge
        and plan.method.elementwise
        and all(model.kind == "model" for model in plan.task_models(task))
    )


def _merge_chunked(
    plan: MergePlan,
    task: TensorTask,
    loaded: _Loaded,
    device: torch.device,
    compute: torch.dtype,
    sink: SliceSink | None,
) -> torch.Tensor | None:
    """An elementwise method over flat slices (ELEMENTWISE_CHUNK_ELEMENTS entries), written straight into
    the output.

    Bitwise equal to one whole-tensor call (each entry goes through the same operations), but only a
    chunk of fp32 operands exists at a time and they stay in cache across the method's passes. A method
    with an in-place form (``into``) writes each fp32 slice straight into the output (or into one reused
    slice when the output dtype is narrower), forming no task-vector or result temporaries. Inputs are not
    checked one by one: any NaN/inf in an input makes these methods' output non-finite, so each output
    slice is summed (in its output dtype, which also catches a cast that overflows), and only a non-finite
    one pays for finding and naming the cause.
    """
    owners, raws, has_base = _take_raw_inputs(plan, task, loaded)
    flats = [raw.reshape(-1) for raw in raws]
    out = _SliceOutput(task, sink)
    generator = torch.Generator(device=device)
    generator.manual_seed(tensor_seed(plan.config.seed, task.name))
    total = numel(task.shape)
    chunk = ELEMENTWISE_CHUNK_ELEMENTS  # read at call time, so tests can force many small slices
    into = plan.method.into if compute == torch.float32 and device.type == "cpu" else None
    direct = task.out_dtype == torch.float32
    scratch = torch.empty(min(chunk, total), dtype=torch.float32) if into and not direct else None
    for start in range(0, max(total, 1), chunk):  # an empty tensor still gets one (empty) call
        stop = min(start + chunk, total)
        parts = [flat[start:stop].to(device=device, dtype=compute) for flat in flats]
        base = parts[0] if has_base else None
        models = parts[1:] if has_base else parts
        inputs = TensorInputs(
            name=task.name,
            base=base,
            models=models,
            deltas=[task_vector(model, base) for model in models] if base is not None and not into else None,
            weights=list(task.weights),
            model_params=list(task.model_params),
        )
        target = out.target(start, stop)
        if into is not None:
            merged = target if direct else scratch[: stop - start]  # type: ignore[index]
            into(inputs, task.params, merged)
        else:
            merged = plan.method.fn(inputs, task.params, generator)
            if tuple(merged.shape) != (stop - start,):
                raise ModelError(
                    f"method {plan.method.name} (elementwise) returned shape {list(merged.shape)} for a "
                    f"slice of {task.name}, expected {[stop - start]}"
                )
        if merged is not target:
            target.copy_(merged)
        if out.done(target):  # the first non-finite slice: a bad input is named, else the count goes on
            _name_non_finite(owners, raws, task.name)
    return out.finish()


def _take_raw_inputs(
    plan: MergePlan, task: TensorTask, loaded: _Loaded
) -> tuple[list[InputModel], list[torch.Tensor], bool]:
    """(owners, raw tensors, whether the base is first) of a sliced merge, base first; ``loaded`` lets go
    of them, so the raw buffers live only as long as the caller's lists."""
    owners: list[InputModel] = list(plan.task_models(task))
    raws: list[torch.Tensor] = list(loaded.models)
    with_base = plan.base is not None and loaded.base is not None
    if plan.base is not None and loaded.base is not None:
        owners.insert(0, plan.base)
        raws.insert(0, loaded.base)
    loaded.base, loaded.models = None, [None] * len(loaded.models)
    return owners, raws, with_base


def _merge_streamed(
    plan: MergePlan,
    task: TensorTask,
    loaded: _Loaded,
    sink: SliceSink | None,
) -> torch.Tensor | None:
    """A streamed method (TIES/DARE family, SCE, SLERP, ...) over flat slices, written straight to the output.

    Phase 1 (``method.streamed``) reads slices of the inputs for the tensor's statistics; phase 2 merges one
    slice at a time. Only slices of fp32 operands exist (besides the raw inputs and the output), and the
    result equals the whole-tensor call (see :class:`MergeMethod`). Inputs are checked for NaN/inf first,
    slice by slice: phase 1 ranks and sums them — unless the method's phase 1 checks them itself
    (``checks_inputs``: the Gram methods, whose norms are finite exactly when their inputs are, and the
    TIES/DARE family, whose top-k counts and rescale norms see every τ_i entry); the pass then runs
    afterwards only when phase 1 did not vouch for every input. A phase 2 with an ``into`` form
    writes fp32 output slices in place.
    """
    owners, raws, with_base = _take_raw_inputs(plan, task, loaded)
    chunk = CHUNK_ELEMENTS  # read at call time, so tests can force many small slices
    flats = [raw.reshape(-1) for raw in raws]
    method = plan.method
    if not method.checks_inputs:
        for owner, flat in zip(owners, flats, strict=True):
            _finite_in_slices(flat, owner, task.name, chunk)
    slices = TensorSlices(
        name=task.name,
        shape=task.shape,
        base_flat=flats[0] if with_base else None,
        model_flats=flats[1:] if with_base else flats,
        weights=list(task.weights),
        model_params=list(task.model_params),
        slice_elements=chunk,
    )
    generator = torch.Generator()
    generator.manual_seed(tensor_seed(plan.config.seed, task.name))
    assert method.streamed is not None
    merge = method.streamed(slices, task.params, generator)
    if method.checks_inputs and not merge.inputs_checked:
        for owner, flat in zip(owners, flats, strict=True):
            _finite_in_slices(flat, owner, task.name, chunk)
    out = _SliceOutput(task, sink)
    into = merge.into if task.out_dtype == torch.float32 else None
    for start, stop in slices.ranges(merge.align):
        target = out.target(start, stop)
        if into is not None:
            into(start, stop, target)
        else:
            merged = merge.merge(start, stop)
            if tuple(merged.shape) != (stop - start,):
                raise ModelError(
                    f"method {method.name} (streamed) returned shape {list(merged.shape)} for a slice of "
                    f"{task.name}, expected {[stop - start]}"
                )
            target.copy_(merged)
        out.done(target)  # inputs were checked: a non-finite output overflowed (counted, then refused)
    return out.finish()


class _SliceOutput:
    """Where a tensor merged slice by slice goes: the sink (written slice by slice), or one whole tensor.

    Each filled slice is summed in its output dtype (a NaN/inf, or a cast beyond the dtype's range, makes
    the sum non-finite); from the first such slice on, non-finite entries are counted, and :meth:`finish`
    refuses the tensor with the total, as :func:`_check_output` would for a whole one.
    """

    def __init__(self, task: TensorTask, sink: SliceSink | None) -> None:
        self.task, self.sink = task, sink
        self.tensor = torch.empty(task.shape, dtype=task.out_dtype) if sink is None else None
        self._flat = self.tensor.view(-1) if self.tensor is not None else None
        self.bad, self._suspect = 0, False
        if sink is not None:
            sink.open(task.name)

    def target(self, start: int, stop: int) -> torch.Tensor:
        if self._flat is not None:
            return self._flat[start:stop]
        assert self.sink is not None
        return self.sink.slot(stop - start, self.task.out_dtype)

    def done(self, target: torch.Tensor) -> bool:
        """Check the filled ``target`` and pass it on; True for the first slice whose sum is not finite."""
        first = False
        if target.numel() and not math.isfinite(float(target.sum(dtype=torch.float32))):
            first, self._suspect = not self._suspect, True
            self.bad += int((~torch.isfinite(target)).sum())  # 0 when only the sum overflowed
        if self.sink is not None:
            self.sink.put(target)
        return first

    def finish(self) -> torch.Tensor | None:
        if self.bad:
            raise _non_finite_output(self.task, self.bad)
        if self.sink is not None:
            self.sink.close()
            return None
        return self.tensor


def _finite_in_slices(flat: torch.Tensor, owner: InputModel, name: str, chunk: int) -> None:
    """:func:`_finite` over slices of a flat raw input: no whole fp32 copy, the same error."""
    starts = range(0, flat.numel(), chunk)
    if all(math.isfinite(float(flat[i : i + chunk].to(torch.float32).sum())) for i in starts):
        return
    bad = sum(int((~torch.isfinite(flat[i : i + chunk])).sum()) for i in starts)
    if bad:
        raise ModelError(f"{owner.path}: tensor {name} has {bad} non-finite value(s) (NaN or inf)")


def _check_output(task: TensorTask, out: torch.Tensor) -> None:
    """Refuse an output tensor holding NaN/inf before it is written (inputs were checked already).

    Finite inputs can still give a non-finite output: weights large enough to overflow float32, or values
    beyond the output dtype's range (float16 ends at 65504). The merge then stops and publishes nothing.
    """
    if not out.is_floating_point() or not out.numel():
        return
    if math.isfinite(float(out.sum(dtype=torch.float32))):
        return
    finite = torch.isfinite(out)
    if not bool(finite.all()):
        raise _non_finite_output(task, int((~finite).sum()))


def _non_finite_output(task: TensorTask, bad: int) -> ModelError:
    dtype = str(task.out_dtype).removeprefix("torch.")
    return ModelError(
        f"tensor {task.name}: the merge produced {bad} non-finite value(s) in {dtype} from finite inputs "
        f"(weights too large, or values beyond {dtype}'s range); nothing was written"
    )


def _name_non_finite(owners: list[InputModel], raws: list[torch.Tensor], name: str) -> None:
    """Raise for the first input (base, then models) holding a NaN/inf in tensor ``name``."""
    for owner, raw in zip(owners, raws, strict=True):
        finite = torch.isfinite(raw)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ModelError(f"{owner.path}: tensor {name} has {bad} non-finite value(s) (NaN or inf)")


@contextmanager
def _intra_op_threads(count: int | None) -> Iterator[None]:
    """Run torch ops on ``count`` threads inside the block (None: leave the setting alone).

    Elementwise methods work on cache-sized slices, where a parallel region costs more than it saves (and
    far more on a busy machine); one compute thread leaves the other cores to the read and write threads.
    """
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prefetched(plan: MergePlan, pool: ThreadPoolExecutor, depth: int) -> Iterator[tuple]:
    """Yield (task, loaded) in plan order while up to ``depth`` later tensors are being read.

    Read-ahead also stops at PREFETCH_BYTES of raw input (the next tensor is always read), so two large
    neighbours (lm_head, embed_tokens) are not held at once just because the queue had room.
    """
    pending: dict[int, Future[_Loaded]] = {}
    tasks = plan.tensors
    for i, task in enumerate(tasks):
        ahead = 0
        for j in range(i, min(i + depth + 1, len(tasks))):
            if j > i and ahead + tasks[j].bytes_in > PREFETCH_BYTES:
                break
            ahead += tasks[j].bytes_in
            if j not in pending:
                pending[j] = pool.submit(_load, plan, tasks[j])
        yield task, pending.pop(i).result()


def execute(
    plan: MergePlan, out_dir: str | Path, *, overwrite: bool = False, progress: bool = False
) -> MergeResult:
    """Merge per ``plan`` into ``out_dir`` (atomically) and write config, tokenizer, card and manifest."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    readers = _readers(plan)
    read_before = sum(reader.bytes_read for reader in readers)
    config = plan.config
    try:
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            try:
                digests, weight_files = _write_weights(plan, tmp, progress)
                _copy_side_files(plan, tmp)
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise ModelError(
                        f"{out_dir}: no space left on the device while writing the merge"
                    ) from None
                raise ModelError(f"{out_dir}: cannot write the merge ({err.strerror or err})") from None
            wall = time.perf_counter() - start
            bytes_read = sum(reader.bytes_read for reader in readers) - read_before
            fingerprint = fingerprint_from_digests(digests)
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            manifest = {
                "kind": "merge",
                "method": plan.method.name,
                "config": config.model_dump(mode="json"),
                "inputs": [_input_record(item) for item in plan.inputs()],
                "weights_fingerprint": fingerprint,
                "weight_files": weight_files,
                "library_versions": library_versions(("pydantic",)),
                "seed": config.seed,
                "tensors": len(plan.tensors),
                "bytes_read": bytes_read,
                "bytes_written": plan.bytes_written,
                "wall_seconds": round(wall, 3),
                "peak_rss_bytes": peak_rss,
                "warnings": plan.warnings,
            }
            (tmp / "README.md").write_text(_model_card(plan, out_dir), encoding="utf-8")
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    finally:
        for reader in readers:
            reader.close()  # the descriptors the reads opened (a later read reopens them)
    return MergeResult(
        out_dir=out_dir,
        dry_run=False,
        plan=plan.to_dict(),
        tensors=len(plan.tensors),
        bytes_read=bytes_read,
        bytes_written=plan.bytes_written,
        wall_seconds=wall,
        peak_rss_bytes=peak_rss,
        weights_fingerprint=fingerprint,
        manifest=manifest,
        description=plan.describe(),
    )


def _write_weights(
    plan: MergePlan, tmp: Path, progress: bool
) -> tuple[dict[str, tuple[str, tuple[int, ...], str]], list[str]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    config = plan.config
    depth = max(1, config.io_threads)
    # The layout is known from the plan, so each tensor goes to disk as it is merged: no shard in memory.
    layout = [(task.name, task.out_dtype, task.shape) for task in plan.tensors]
    bar = Progress(
        TextColumn("merging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress
    )
    with (
        ThreadPoolExecutor(config.io_threads, thread_name_prefix="merge-read") as read_pool,
        ThreadPoolExecutor(1, thread_name_prefix="merge-write") as write_pool,
        PlannedShardWriter(tmp, layout, max_shard_bytes=config.max_shard_bytes) as writer,
        # Elementwise and other light methods (SLERP, Model Stock: see MergeMethod.light): one compute thread,
        # the other core hashes and writes at the same pace. Ranking and sampling methods (TIES, DARE, ...)
        # compute ~10× more per byte written: every core on each slice's ops (TIES / DARE-TIES on SmolLM2:
        # 9.6 → 6.8 s, the same bytes; their random draws run on one thread).
        _intra_op_threads(1 if plan.method.elementwise or plan.method.light else None),
        bar,
    ):
        job = bar.add_task("merge", total=len(plan.tensors))
        sink = SliceSink(write_pool, writer)
        try:
            for task, loaded in _prefetched(plan, read_pool, depth):
                out = merge_tensor(plan, task, loaded, sink)
                del loaded
                if out is not None:  # a whole tensor (slice-by-slice merges went to the sink, checked)
                    _check_output(task, out)
                    sink.add(task.name, out)
                bar.advance(job)
            sink.finish()
        except BaseException:
            sink.abort()  # let in-flight writes end before the writer closes its files
            raise
    return writer.tensor_digests, [f.name for f in writer.files]


def _copy_side_files(plan: MergePlan, tmp: Path) -> None:
    """config.json (dtype updated), generation config, tokenizer files and the chat template."""
    config = plan.output_config
    if plan.config.dtype is not None:
        key = "torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"
        config[key] = plan.config.dtype
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    generation = plan.reference.path / "generation_config.json"
    if generation.is_file():
        shutil.copyfile(generation, tmp / generation.name)
    for name in _TOKENIZER_FILES + _CHAT_TEMPLATE_FILES:
        if (plan.tokenizer_dir / name).is_file():
            shutil.copyfile(plan.tokenizer_dir / name, tmp / name)
    if plan.chat_template_dir.resolve() != plan.tokenizer_dir.resolve():
        _replace_chat_template(plan.chat_template_dir, tmp)


def _replace_chat_template(source: Path, tmp: Path) -> None:
    for name in _CHAT_TEMPLATE_FILES:
        (tmp / name).unlink(missing_ok=True)
    tok_config = tmp / "tokenizer_config.json"
    if tok_config.is_file():
        data = json.loads(tok_config.read_text(encoding="utf-8"))
        data.pop("chat_template", None)
        tok_config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name in _CHAT_TEMPLATE_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
            return
    source_config = source / "tokenizer_config.json"
    if source_config.is_file():
        template = json.loads(source_config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
            return
    raise ModelError(f"{source}: chat_template source has no chat template")


def _input_record(item: InputModel) -> dict[str, Any]:
    record: dict[str, Any] = {"role": item.role, "path": str(item.path), "kind": item.kind}
    if item.kind == "lora":
        assert item.adapter is not None
        record["fingerprint"] = file_fingerprint(item.adapter.reader.files()[0])
        record["adapter_config_fingerprint"] = file_fingerprint(item.path / "adapter_config.json")
        return record
    record["header_fingerprint"] = header_fingerprint(item.path)
    manifest = item.path / MANIFEST_FILE
    if manifest.is_file():  # the exact data fingerprint, recorded when that model was saved
        try:
            weights = json.loads(manifest.read_text(encoding="utf-8")).get("weights_fingerprint")
        except (OSError, json.JSONDecodeError):
            weights = None
        if weights:
            record["weights_fingerprint"] = weights
    return record


def _model_card(plan: MergePlan, out_dir: Path) -> str:
    config = plan.config
    weights = ", ".join(f"{e.label} × {format_weight(e.weight)}" for e in config.models)
    formula = plan.method.formula or plan.method.name
    return render_model_card(
        f"{out_dir.name}: {plan.method.name} merge",
        summary=f"Merged with skillmerge ({plan.method.name}): {formula}. Models: {weights}.",
        base_model=config.base_model,
        details={
            "method": plan.method.name,
            "base model": config.base_model or "(none)",
            "models": len(config.models),
            "seed": config.seed,
            "output dtype": config.dtype or "as base",
            "tensors": len(plan.tensors),
        },
        recipe=config.model_dump(mode="json"),
    )
