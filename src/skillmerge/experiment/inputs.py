"""Fingerprints of what an experiment reads from outside its run: data files, model directories, options.

A data file is its sha256, a model directory its recorded weights fingerprint (headers as the cheap
fallback), a folder option the sha256 over its files' names and hashes, and a ``hub:ID[@REVISION]``
reference its own text (nothing is downloaded at plan time: pin a revision for a key that changes exactly
when the hub content does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from skillmerge.errors import UsageError
from skillmerge.experiment.step import InputRef, canonical_json


def fingerprint_input(path: str, field_name: str) -> InputRef:
    """A data file's sha256, a model directory's weights fingerprint, or a ``hub:`` reference's own text."""
    if path.startswith("hub:"):
        hub_id = path.removeprefix("hub:")
        if not hub_id or hub_id.startswith("@") or " " in hub_id:
            raise UsageError(f"{field_name}: {path!r} is not a hub reference (hub:OWNER/NAME[@REVISION])")
        return InputRef(path, "hub:" + hashlib.sha256(path.encode()).hexdigest())
    target = Path(path)
    if target.is_file():
        from skillmerge.models.fingerprint import file_fingerprint

        return InputRef(path, file_fingerprint(target))
    if target.is_dir():
        return InputRef(path, _model_fingerprint(target, field_name))
    raise UsageError(f"{field_name}: {path} does not exist")


def _model_fingerprint(model_dir: Path, field_name: str) -> str:
    # The weights fingerprint recorded at save time identifies the data; headers alone are the cheap fallback.
    from skillmerge.models.io import recorded_fingerprint

    fingerprint = recorded_fingerprint(model_dir)
    if fingerprint is None:
        raise UsageError(f"{field_name}: {model_dir} is not a model directory (no config.json + safetensors)")
    return fingerprint


def file_inputs(paths: list[str], field_name: str) -> dict[str, InputRef]:
    """``{"<field>.<i>": ref}`` for a list of input files (the roles a step's inputs are keyed by)."""
    return {f"{field_name}.{i}": fingerprint_input(p, f"{field_name}.{i}") for i, p in enumerate(paths)}


def option_inputs(option_paths: dict[str, str]) -> dict[str, InputRef]:
    """Fingerprints of file/folder suite options (a folder: sha256 over its files' names and hashes)."""
    refs = {}
    for role, path in option_paths.items():
        target = Path(path)
        if target.is_dir() and not (target / "config.json").exists():
            from skillmerge.models.fingerprint import file_fingerprint

            files = sorted(p for p in target.rglob("*") if p.is_file())
            listing = [[str(p.relative_to(target)), file_fingerprint(p)] for p in files]
            refs[role] = InputRef(path, hashlib.sha256(canonical_json(listing).encode()).hexdigest())
        else:
            refs[role] = fingerprint_input(path, role)
    return refs


def same_model(a: InputRef, b: InputRef) -> bool:
    """The same directory, or two copies with equal recorded weights fingerprints (a header-only
    fingerprint sees shapes, not values, so it never proves two models equal)."""
    if a.path.startswith("hub:") or b.path.startswith("hub:"):
        return a.path == b.path
    if Path(a.path).resolve() == Path(b.path).resolve():
        return True
    from skillmerge.models.fingerprint import header_fingerprint

    return a.fingerprint == b.fingerprint and a.fingerprint != header_fingerprint(Path(a.path))
