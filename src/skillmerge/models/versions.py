"""Library versions recorded in every manifest (kept free of heavy imports: merge start-up reads it)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_VERSIONED = ("skillmerge", "torch", "transformers", "safetensors", "tokenizers")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries that shape a saved artifact (plus ``extra`` packages), for manifests."""
    versions = {"python": platform.python_version()}
    for package in (*_VERSIONED, *extra):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
