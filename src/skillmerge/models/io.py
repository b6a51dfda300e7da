"""Load and save Hugging Face model directories.

A saved directory holds ``config.json``, ``generation_config.json``, tokenizer files (with the chat template),
sharded safetensors weights (see :mod:`skillmerge.models.shards`), any extra files (a README model card) and
``manifest.json``. It is built in a temporary sibling and renamed into place, so the destination appears only
once complete; a failure at any point (a full disk included) leaves nothing behind.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from skillmerge.atomic import atomic_dir
from skillmerge.errors import ModelError
from skillmerge.models.fingerprint import fingerprint_from_digests
from skillmerge.models.shards import (
    DEFAULT_MAX_SHARD_BYTES,
    INDEX_FILE,
    SINGLE_FILE,
    ShardedSafetensorsWriter,
    TensorReader,
)
from skillmerge.models.versions import library_versions

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def recorded_fingerprint(model_dir: str | Path) -> str | None:
    """The model's identity for cache keys and manifests: the weights fingerprint recorded in its
    manifest at save time, else the (cheap) safetensors-header fingerprint; None if it is no model dir."""
    model_dir = Path(model_dir)
    manifest = model_dir / MANIFEST_FILE
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8")).get("weights_fingerprint")
        except (OSError, json.JSONDecodeError, AttributeError):
            recorded = None
        if isinstance(recorded, str):
            return recorded
    from skillmerge.models.fingerprint import header_fingerprint

    return header_fingerprint(model_dir) if is_model_dir(model_dir) else None


def is_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory with ``config.json`` and safetensors weights (single or indexed)."""
    path = Path(path)
    return (path / "config.json").is_file() and (
        (path / SINGLE_FILE).is_file() or (path / INDEX_FILE).is_file()
    )


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (never the hub).

    The weight files are checked first (every shard present, headers intact), so a broken checkpoint fails
    with one line naming the file instead of a transformers traceback.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory does not exist")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json (not a Hugging Face model directory)")
    TensorReader(path).close()  # validates index, shards and headers
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(f"{path}: no tokenizer files ({', '.join(_TOKENIZER_FILES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load tokenizer ({_first_line(err)})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelError(f"{path}: cannot load model ({_first_line(err)})") from None
    model.eval()
    return model, tokenizer


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    extra_files: Mapping[str, str | bytes] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (+ tokenizer) as a complete HF directory at ``out_dir``, atomically; returns it.

    Tied weights (``lm_head`` tied to the embeddings) are stored once, as transformers does; on load
    transformers re-ties them. ``manifest.json`` gets the given ``manifest`` plus ``weights_fingerprint``
    (:func:`skillmerge.models.fingerprint.checkpoint_fingerprint` of what was written, computed while writing)
    and ``library_versions``. Refuses an existing ``out_dir`` unless ``overwrite``; with ``overwrite`` the old
    directory is replaced only after the new one is complete.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        config = copy.deepcopy(model.config)
        config.architectures = [type(model).__name__]  # what from_pretrained uses to pick the class
        config.save_pretrained(tmp)
        if model.can_generate() and model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        with ShardedSafetensorsWriter(tmp, max_shard_bytes=max_shard_bytes) as writer:
            for name, tensor in stored_state_dict(model).items():
                writer.add(name, tensor)
        for name, content in (extra_files or {}).items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        record = dict(manifest or {})
        record["weights_fingerprint"] = fingerprint_from_digests(writer.tensor_digests)
        record["weight_files"] = [f.name for f in writer.files]
        record.setdefault("library_versions", library_versions())
        (tmp / MANIFEST_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("saved %s (%d weight files)", out_dir, len(writer.files))
    return out_dir


def stored_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: the state dict minus tied copies (e.g. ``lm_head.weight``).

    A key the model declares tied is dropped only if it really holds the same values as its source, so a
    model whose head was untied by hand keeps its own head.
    """
    state = model.state_dict()
    tied: Mapping[str, str] = getattr(model, "all_tied_weights_keys", None) or {}
    for target, source in tied.items():
        if target in state and source in state:
            a, b = state[target], state[source]
            same = a.data_ptr() == b.data_ptr() or (a.shape == b.shape and torch.equal(a, b))
            if same:
                del state[target]
    return state


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a saved directory."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no manifest") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: unreadable manifest ({err})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
