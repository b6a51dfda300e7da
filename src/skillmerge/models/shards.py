"""Sharded safetensors checkpoints, read and written one tensor at a time.

Layout (the one transformers writes and reads):

* one shard:  ``model.safetensors``
* N shards:   ``model-00001-of-0000N.safetensors`` ... plus ``model.safetensors.index.json`` holding
  ``{"metadata": {"total_size": bytes, "total_parameters": n}, "weight_map": {tensor: shard file}}``.

A safetensors file is ``u64 little-endian header length H`` + ``H bytes of JSON header`` + tensor data; the
header maps each tensor to ``dtype``, ``shape`` and ``data_offsets`` (relative to the end of the header).
The writer holds at most one shard in memory (peak O(max_shard_bytes + largest tensor)); the reader
memory-maps one shard per tensor it is asked for, so merging never needs a whole model in memory.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import mmap
import os
import struct
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from safetensors.torch import save_file

from skillmerge.errors import ModelError, OutputExistsError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
# A header larger than this is not a real checkpoint (a 70B model's header is a few hundred KB).
_MAX_HEADER_BYTES = 100 * 1024**2

TORCH_TO_SAFETENSORS: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.bool: "BOOL",
}
SAFETENSORS_TO_TORCH: dict[str, torch.dtype] = {v: k for k, v in TORCH_TO_SAFETENSORS.items()}
# The order in which safetensors.save_file lays out tensor data by dtype (then by name).
_SAVE_ORDER = ("U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "F8_E4M3", "F8_E5M2")
_SAVE_ORDER += ("I8", "U8", "BOOL")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shard_file_name(index: int, count: int) -> str:
    """``model-0000i-of-0000N.safetensors`` (1-based), as transformers names shards."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a contiguous CPU tensor, as safetensors stores them (no copy)."""
    flat = tensor.detach().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor in a safetensors header: dtype (safetensors name), shape and byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one safetensors file (no tensor data is read)."""

    path: Path
    raw: bytes
    data_start: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def read_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate a safetensors header; a truncated or corrupt file raises :class:`ModelError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
                raise ModelError(
                    f"{path}: corrupt or truncated safetensors file (header length {header_len})"
                )
            raw = handle.read(header_len)
    except FileNotFoundError:
        raise ModelError(f"{path}: safetensors file is missing") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read safetensors file ({err.strerror or err})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_start = 8 + header_len
    data_len = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorEntry] = {}
    for name, info in header.items():
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            entry = TensorEntry(str(info["dtype"]), tuple(int(d) for d in info["shape"]), begin, end)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: tensor {name}: malformed header entry") from None
        if end > data_len or begin > end:
            raise ModelError(
                f"{path}: tensor {name}: data runs past the end of the file (truncated: "
                f"{data_len} data bytes, needs {end})"
            )
        tensors[name] = entry
    return SafetensorsHeader(path, raw, data_start, tensors, {str(k): str(v) for k, v in metadata.items()})


def weight_files(model_dir: str | Path) -> dict[str, Path]:
    """Map each tensor name to the file holding it, from the index or the single ``model.safetensors``.

    ``model_dir`` may also be a ``.safetensors`` file or an index JSON file.
    """
    path = Path(model_dir)
    if path.is_file() and path.name.endswith(".json"):
        return _weight_map_from_index(path)
    if path.is_file():
        return dict.fromkeys(read_header(path).tensors, path)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory does not exist")
    if (path / INDEX_FILE).is_file():
        return _weight_map_from_index(path / INDEX_FILE)
    if (path / SINGLE_FILE).is_file():
        return dict.fromkeys(read_header(path / SINGLE_FILE).tensors, path / SINGLE_FILE)
    raise ModelError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} in model directory")


def _weight_map_from_index(index_path: Path) -> dict[str, Path]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise ModelError(
            f"{index_path}: not a valid safetensors index (needs a 'weight_map' object)"
        ) from None
    return {str(name): index_path.parent / str(shard) for name, shard in weight_map.items()}


class TensorReader:
    """Lazy access to the tensors of a checkpoint (single file or sharded with an index).

    All headers are read and cross-checked on construction (missing shard, a tensor the index names but its
    shard lacks, truncated files) so that errors surface before any work; tensor data is read on ``get``.
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.path = Path(model_dir)
        self._file_of = weight_files(self.path)
        self._headers: dict[Path, SafetensorsHeader] = {}
        for name, file in self._file_of.items():
            if file not in self._headers:
                if not file.is_file():
                    raise ModelError(f"{file}: shard file is missing (named by {self.path})")
                self._headers[file] = read_header(file)
            if name not in self._headers[file].tensors:
                raise ModelError(f"{file}: tensor {name} is named by the index but absent from this shard")
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()
        self.bytes_read = 0  # tensor bytes read so far (the merge reports its I/O from this)

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the opened shard files (a later ``get`` reopens them)."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self._file_of)

    def __contains__(self, name: object) -> bool:
        return name in self._file_of

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._file_of)

    def file_of(self, name: str) -> Path:
        """The shard file holding ``name``."""
        return self._entry(name)[0]

    def entry(self, name: str) -> TensorEntry:
        """dtype, shape and byte range of ``name`` in its shard's header."""
        return self._entry(name)[1]

    def header(self, file: Path) -> SafetensorsHeader:
        """The parsed header of one of this checkpoint's files."""
        return self._headers[file]

    def files(self) -> list[Path]:
        """The checkpoint's weight files, sorted by name."""
        return sorted(self._headers)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name)[1].shape

    def dtype(self, name: str) -> torch.dtype:
        file, entry = self._entry(name)
        if entry.dtype not in SAFETENSORS_TO_TORCH:
            raise ModelError(f"{file}: tensor {name}: unsupported dtype {entry.dtype}")
        return SAFETENSORS_TO_TORCH[entry.dtype]

    def get(self, name: str) -> torch.Tensor:
        """Load one tensor into its own CPU memory. Thread-safe: positional reads on one descriptor per file.

        The bytes go straight from the file into the tensor's buffer (no memory map, no second copy), so
        several threads can read ahead while another merges.
        """
        file, entry = self._entry(name)
        dtype = SAFETENSORS_TO_TORCH.get(entry.dtype)
        if dtype is None:
            raise ModelError(f"{file}: tensor {name}: unsupported dtype {entry.dtype}")
        nbytes = entry.end - entry.begin
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            with self._lock:
                fd = self._fds.get(file)
                if fd is None:
                    fd = self._fds[file] = os.open(file, os.O_RDONLY)
            offset = self._headers[file].data_start + entry.begin
            view = memoryview(buffer.numpy())
            done = 0
            while done < nbytes:  # preadv may return short counts on large reads
                try:
                    got = os.preadv(fd, [view[done:]], offset + done)
                except OSError as err:
                    raise ModelError(f"{file}: tensor {name}: read failed ({err.strerror or err})") from None
                if got <= 0:
                    raise ModelError(f"{file}: tensor {name}: file ended early (truncated)")
                done += got
        with self._lock:
            self.bytes_read += nbytes
        return buffer.view(dtype).reshape(entry.shape)

    def map(self, name: str) -> torch.Tensor:
        """One tensor as a copy-on-write memory map of its bytes in the file: no read, no copy.

        A file already in the page cache costs only the page-table entries (~0.1 s for 1.6 GB here, where
        reading the same bytes into fresh buffers takes ~1 s), filled when the map is made
        (``MADV_POPULATE_READ``), so the thread that maps (the merge's read-ahead pool) pays, and a file
        not yet cached is read then. Writes to the tensor stay private to this process. The mapping lives
        as long as the tensor: drop the tensor and its pages leave this process's memory. Falls back to
        :meth:`get` for an empty tensor or one whose bytes are not aligned to its element size.
        """
        file, entry = self._entry(name)
        dtype = SAFETENSORS_TO_TORCH.get(entry.dtype)
        if dtype is None:
            raise ModelError(f"{file}: tensor {name}: unsupported dtype {entry.dtype}")
        nbytes = entry.end - entry.begin
        start = self._headers[file].data_start + entry.begin
        page = start - start % mmap.ALLOCATIONGRANULARITY
        if not nbytes or (start - page) % dtype.itemsize:
            return self.get(name)
        with self._lock:
            fd = self._fds.get(file)
            if fd is None:
                fd = self._fds[file] = os.open(file, os.O_RDONLY)
            self.bytes_read += nbytes
        try:
            region = mmap.mmap(
                fd,
                start - page + nbytes,
                flags=mmap.MAP_PRIVATE,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
                offset=page,
            )
        except (OSError, ValueError):  # a file system without mmap, or a file cut short since it was opened
            with self._lock:
                self.bytes_read -= nbytes
            return self.get(name)  # reads it, or names the truncated file
        flat = torch.frombuffer(region, dtype=torch.uint8, count=nbytes, offset=start - page)
        # fill the page tables now, read-only (MAP_POPULATE would copy every page of a private map)
        if not _populate(flat.data_ptr() - (start - page), start - page + nbytes):
            region.madvise(mmap.MADV_WILLNEED)  # Linux < 5.14: the first touch faults the pages in instead
        return flat.view(dtype).reshape(entry.shape)

    def _entry(self, name: str) -> tuple[Path, TensorEntry]:
        file = self._file_of.get(name)
        if file is None:
            raise ModelError(f"{self.path}: no tensor named {name}")
        return file, self._headers[file].tensors[name]


def publish_shards(
    out_dir: Path, partials: Sequence[tuple[Path, Sequence[str]]], total_params: int, total_bytes: int
) -> list[Path]:
    """Rename finished partial shards to their final names; write the index when there are several.

    One shard becomes ``model.safetensors``; N shards become ``model-0000i-of-0000N.safetensors`` plus
    ``model.safetensors.index.json`` (transformers' layout). Returns the files written, index last.
    """
    if len(partials) == 1:
        final = out_dir / SINGLE_FILE
        os.replace(partials[0][0], final)
        return [final]
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    for i, (partial, names) in enumerate(partials, start=1):
        final = out_dir / shard_file_name(i, len(partials))
        os.replace(partial, final)
        files.append(final)
        weight_map.update(dict.fromkeys(names, final.name))
    index = {
        "metadata": {"total_parameters": total_params, "total_size": total_bytes},
        "weight_map": dict(sorted(weight_map.items())),
    }
    index_path = out_dir / INDEX_FILE
    index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    files.append(index_path)
    return files


class ShardedSafetensorsWriter:
    """Write tensors arriving one at a time into shards of at most ``max_shard_bytes`` each.

    A shard is flushed to disk as soon as the next tensor would overflow it (a tensor larger than the limit
    gets a shard of its own), so memory stays O(one shard). Shards are written under temporary names and
    renamed on :meth:`finish`, once their count N is known. Used as a context manager, it finishes on a
    clean exit and removes its partial files on an error. ``tensor_digests`` records, per tensor,
    ``(dtype, shape, sha256(data))`` for a content fingerprint at no extra read.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if max_shard_bytes <= 0:
            raise ValueError("max_shard_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stale = sorted(p.name for p in self.out_dir.glob("model*.safetensors*"))
        if stale:
            raise OutputExistsError(f"{self.out_dir}: already holds weight files ({stale[0]})")
        self.max_shard_bytes = max_shard_bytes
        self.metadata = dict(metadata) if metadata is not None else {"format": "pt"}
        self.tensor_digests: dict[str, tuple[str, tuple[int, ...], str]] = {}
        self.files: list[Path] = []  # final paths, known after finish()
        self._pending: dict[str, torch.Tensor] = {}
        self._storages: set[int] = set()
        self._pending_bytes = 0
        self._partials: list[tuple[Path, list[str]]] = []
        self._total_bytes = 0
        self._total_params = 0
        self._finished = False

    def __enter__(self) -> ShardedSafetensorsWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            if not self._finished:
                self.finish()
        else:
            self.abort()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Queue one tensor; flushes the current shard first if this tensor would overflow it."""
        if self._finished:
            raise RuntimeError("writer already finished")
        if name in self.tensor_digests:
            raise ModelError(f"{self.out_dir}: tensor {name} added twice")
        if tensor.dtype not in TORCH_TO_SAFETENSORS:
            raise ModelError(f"{self.out_dir}: tensor {name}: dtype {tensor.dtype} cannot be stored")
        tensor = tensor.detach().to("cpu").contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        # safetensors refuses tensors that share storage (views, tied weights): those get their own copy.
        storage = tensor.untyped_storage()
        if storage.nbytes() != nbytes or tensor.storage_offset() != 0 or storage.data_ptr() in self._storages:
            tensor = tensor.clone()
            storage = tensor.untyped_storage()
        if self._pending and self._pending_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        self.tensor_digests[name] = (
            TORCH_TO_SAFETENSORS[tensor.dtype],
            tuple(tensor.shape),
            hashlib.sha256(tensor_bytes(tensor)).hexdigest(),
        )
        self._pending[name] = tensor
        self._storages.add(storage.data_ptr())
        self._pending_bytes += nbytes
        self._total_bytes += nbytes
        self._total_params += tensor.numel()

    def _flush(self) -> None:
        path = self.out_dir / f".shard-{len(self._partials) + 1:05d}.safetensors.partial"
        self._partials.append((path, list(self._pending)))
        save_file(self._pending, str(path), metadata=self.metadata)
        # safetensors creates files owner-only (0600); weights should be as readable as any other output.
        os.chmod(path, 0o666 & ~_umask())
        self._pending = {}
        self._storages = set()
        self._pending_bytes = 0

    def finish(self) -> list[Path]:
        """Flush the last shard, give shards their final names and write the index; returns the files."""
        if self._finished:
            return self.files
        if self._pending or not self._partials:
            self._flush()
        self.files = publish_shards(self.out_dir, self._partials, self._total_params, self._total_bytes)
        self._finished = True
        return self.files

    def abort(self) -> None:
        """Remove whatever this writer put on disk."""
        self._pending = {}
        for partial, _ in self._partials:
            partial.unlink(missing_ok=True)
        for file in self.files:
            file.unlink(missing_ok=True)
        self._finished = True


class PlannedShardWriter:
    """Stream tensors straight into shard files whose layout is fixed up front from (name, dtype, shape).

    The same shards as :class:`ShardedSafetensorsWriter` (greedy split in the given order, a tensor larger
    than the limit alone in its shard) and the same file format as ``safetensors.save_file`` (compact JSON
    header padded with spaces to 8 bytes, data ordered by element size then name). Because every header is
    known before any data arrives, each tensor is written at its offset the moment it is added and dropped:
    memory is O(one tensor), not O(one shard). Tensors may arrive in any order; each exactly once.
    """

    def __init__(
        self,
        out_dir: str | Path,
        layout: list[tuple[str, torch.dtype, tuple[int, ...]]],
        *,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if max_shard_bytes <= 0:
            raise ValueError("max_shard_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stale = sorted(p.name for p in self.out_dir.glob("model*.safetensors*"))
        if stale:
            raise OutputExistsError(f"{self.out_dir}: already holds weight files ({stale[0]})")
        metadata = dict(metadata) if metadata is not None else {"format": "pt"}
        self.tensor_digests: dict[str, tuple[str, tuple[int, ...], str]] = {}
        self.files: list[Path] = []
        groups: list[list[tuple[str, torch.dtype, tuple[int, ...], int]]] = [[]]
        size = 0
        for name, dtype, shape in layout:
            if dtype not in TORCH_TO_SAFETENSORS:
                raise ModelError(f"{self.out_dir}: tensor {name}: dtype {dtype} cannot be stored")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if groups[-1] and size + nbytes > max_shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append((name, dtype, tuple(shape), nbytes))
            size += nbytes
        # name -> (shard index, absolute file offset, dtype, shape)
        self._where: dict[str, tuple[int, int, torch.dtype, tuple[int, ...]]] = {}
        self._headers: list[bytes] = []
        self._names: list[list[str]] = []
        self._left: list[int] = []
        for shard, group in enumerate(groups):
            # safetensors' order (wider dtypes first, which keeps every tensor aligned), then by name
            ordered = sorted(group, key=lambda t: (_SAVE_ORDER.index(TORCH_TO_SAFETENSORS[t[1]]), t[0]))
            header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
            offset = 0
            offsets = {}
            for name, dtype, shape, nbytes in ordered:
                header[name] = {
                    "dtype": TORCH_TO_SAFETENSORS[dtype],
                    "shape": list(shape),
                    "data_offsets": [offset, offset + nbytes],
                }
                offsets[name] = offset
                offset += nbytes
            raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
            raw += b" " * (-len(raw) % 8)
            data_start = 8 + len(raw)
            for name, dtype, shape, _ in group:
                if name in self._where:
                    raise ModelError(f"{self.out_dir}: tensor {name} planned twice")
                self._where[name] = (shard, data_start + offsets[name], dtype, shape)
            self._headers.append(struct.pack("<Q", len(raw)) + raw)
            self._names.append([t[0] for t in group])
            self._left.append(len(group))
        self._total_bytes = sum(t[3] for g in groups for t in g)
        self._total_params = sum(math.prod(t[2]) for g in groups for t in g)
        self._partials = [
            self.out_dir / f".shard-{i + 1:05d}.safetensors.partial" for i in range(len(groups))
        ]
        self._fds: dict[int, int] = {}
        self._finished = False

    def __enter__(self) -> PlannedShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            if not self._finished:
                self.finish()
        else:
            self.abort()

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(
                self._partials[shard], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666
            )
            _pwrite_all(fd, memoryview(self._headers[shard]), 0)
        return fd

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Write one planned tensor at its offset (hashing it for ``tensor_digests``)."""
        shard, offset, dtype, shape = self._planned(name)
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ModelError(
                f"{self.out_dir}: tensor {name}: got {tensor.dtype} {list(tensor.shape)}, "
                f"planned {dtype} {list(shape)}"
            )
        tensor = tensor.detach().to("cpu").contiguous()
        data = tensor_bytes(tensor)
        digest = hashlib.sha256(data).hexdigest()
        _pwrite_all(self._fd(shard), data, offset)
        self._written(name, digest)

    def open_stream(self, name: str) -> TensorStream:
        """Write planned tensor ``name`` as consecutive pieces of its bytes (:class:`TensorStream`)."""
        shard, offset, dtype, shape = self._planned(name)
        nbytes = math.prod(shape) * dtype.itemsize
        return TensorStream(self, name, self._fd(shard), offset, nbytes)

    def _planned(self, name: str) -> tuple[int, int, torch.dtype, tuple[int, ...]]:
        if self._finished:
            raise RuntimeError("writer already finished")
        if name in self.tensor_digests:
            raise ModelError(f"{self.out_dir}: tensor {name} added twice")
        planned = self._where.get(name)
        if planned is None:
            raise ModelError(f"{self.out_dir}: tensor {name} is not in the planned layout")
        return planned

    def _written(self, name: str, digest: str) -> None:
        shard, _, dtype, shape = self._where[name]
        self.tensor_digests[name] = (TORCH_TO_SAFETENSORS[dtype], shape, digest)
        self._left[shard] -= 1
        if self._left[shard] == 0:
            os.close(self._fds.pop(shard))

    def finish(self) -> list[Path]:
        """Check every planned tensor arrived, give shards their final names and write the index."""
        if self._finished:
            return self.files
        missing = [n for n in self._where if n not in self.tensor_digests]
        if missing:
            raise ModelError(f"{self.out_dir}: tensor {missing[0]} was planned but never written")
        for shard in range(len(self._partials)):
            if not self._partials[shard].exists():  # only a shard with no tensors: header only
                self._fd(shard)
                os.close(self._fds.pop(shard))
            os.chmod(self._partials[shard], 0o666 & ~_umask())
        partials = list(zip(self._partials, self._names, strict=True))
        self.files = publish_shards(self.out_dir, partials, self._total_params, self._total_bytes)
        self._finished = True
        return self.files

    def abort(self) -> None:
        """Remove whatever this writer put on disk."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for partial in self._partials:
            partial.unlink(missing_ok=True)
        for file in self.files:
            file.unlink(missing_ok=True)
        self._finished = True


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux ≥ 5.14; Python 3.11 lacks the name


def _libc_madvise() -> Any:
    """libc's ``madvise`` through ctypes, or None where there is none (not Linux, a static libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _libc_madvise()


def _populate(address: int, length: int) -> bool:
    """Fill the page tables of the mapping at ``address`` (page-aligned) read-only: MADV_POPULATE_READ.

    Called through ctypes, which lets go of the GIL for the call, rather than ``mmap.madvise``, which holds
    it: populating a 1.6 GB model takes ~0.1 s, and the read-ahead threads that do it stalled the merging
    thread (whose next Python line waits for the GIL) for that long. False where the call is unavailable
    or refused (Linux < 5.14 knows no MADV_POPULATE_READ), so the caller falls back.
    """
    return _MADVISE is not None and _MADVISE(address, length, _MADV_POPULATE_READ) == 0


class TensorStream:
    """One planned tensor written in consecutive pieces: each :meth:`write` lands after the previous one and
    feeds the running sha256, so the digest equals that of the whole tensor's bytes; :meth:`close` checks
    that exactly the planned bytes arrived and records the tensor. Call it from one thread at a time."""

    def __init__(self, writer: PlannedShardWriter, name: str, fd: int, offset: int, nbytes: int) -> None:
        self._writer, self.name, self._fd = writer, name, fd
        self._offset, self._end = offset, offset + nbytes
        self._hash = hashlib.sha256()

    def write(self, data: memoryview) -> None:
        if self._offset + len(data) > self._end:
            raise ModelError(f"{self._writer.out_dir}: tensor {self.name}: more bytes than planned")
        self._hash.update(data)
        _pwrite_all(self._fd, data, self._offset)
        self._offset += len(data)

    def close(self) -> None:
        if self._offset != self._end:
            missing = self._end - self._offset
            raise ModelError(
                f"{self._writer.out_dir}: tensor {self.name}: {missing} planned bytes never written"
            )
        self._writer._written(self.name, self._hash.hexdigest())


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """os.pwrite until every byte is written (large writes may be short)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
