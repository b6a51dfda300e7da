"""skillmerge: add skills to a language model by training them in isolation and merging.

Stages (one direction, no back-edges): ``data`` and ``models`` (foundations) → ``train``, ``merge``,
``evaluate`` → ``experiment`` → ``report``.
"""

from typing import Any


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skillmerge")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    # Read on first use: importlib.metadata costs ~0.05 s that `skillmerge --help` does not need.
    if name == "__version__":
        value = _installed_version()
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'skillmerge' has no attribute {name!r}")


__all__ = ["__version__"]
