"""Content fingerprints of checkpoints and files, for manifests and cache keys.

``checkpoint_fingerprint`` identifies the weights, whatever the sharding:

    fp = sha256( concat over tensor names n in sorted order of  "n\\tdtype\\tshape\\tsha256(data(n))\\n" )

where ``data(n)`` is the tensor's raw little-endian bytes as stored in safetensors. Hashing each tensor on its
own (then the list) lets the shard writer compute the same value while it writes, in any tensor order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from skillmerge.errors import ModelError
from skillmerge.models.shards import TensorReader

_CHUNK = 1 << 20


def fingerprint_from_digests(digests: Mapping[str, tuple[str, tuple[int, ...], str]]) -> str:
    """Combine per-tensor ``(dtype, shape, sha256 hex of data)`` into the checkpoint fingerprint."""
    outer = hashlib.sha256()
    for name in sorted(digests):
        dtype, shape, data_sha = digests[name]
        outer.update(f"{name}\t{dtype}\t{list(shape)}\t{data_sha}\n".encode())
    return outer.hexdigest()


def checkpoint_fingerprint(model_dir: str | Path) -> str:
    """sha256 over sorted tensor names, dtypes, shapes and data; independent of how the weights are sharded.

    Streams the data straight from the files in 1 MiB chunks (no tensor is materialised).
    """
    digests: dict[str, tuple[str, tuple[int, ...], str]] = {}
    with TensorReader(model_dir) as reader:
        for name in reader.names():
            file, entry = reader.file_of(name), reader.entry(name)
            start = reader.header(file).data_start + entry.begin
            digests[name] = (entry.dtype, entry.shape, _range_sha256(file, start, entry.end - entry.begin))
    return fingerprint_from_digests(digests)


def _range_sha256(path: Path, start: int, length: int) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            remaining = length
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ModelError(f"{path}: file ended while reading tensor data (truncated)")
                digest.update(chunk)
                remaining -= len(chunk)
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror or err})") from None
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise ModelError(f"{path}: file does not exist") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror or err})") from None
    return digest.hexdigest()


def header_fingerprint(model_dir: str | Path) -> str:
    """Cheap identity of a checkpoint: sha256 over each weight file's name, size and raw safetensors header.

    Reads only the headers (kilobytes), so it is instant for any model size. It changes when tensor names,
    dtypes, shapes, sharding or header metadata change, or when a file is rewritten to another size, but NOT
    when same-shaped weights change in place: use :func:`checkpoint_fingerprint` (or the value recorded in
    ``manifest.json`` at save time) where data identity matters.
    """
    outer = hashlib.sha256()
    with TensorReader(model_dir) as reader:
        for file in reader.files():
            header = reader.header(file)
            outer.update(f"{file.name}\t{file.stat().st_size}\n".encode())
            outer.update(header.raw)
            outer.update(b"\n")
    return outer.hexdigest()
