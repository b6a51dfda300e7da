"""skillmerge: add skills to a language model by training them in isolation and merging.

Stages (one direction, no back-edges): ``data`` and ``models`` (foundations) → ``train``, ``merge``,
``evaluate`` → ``experiment`` → ``report``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skillmerge")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
