"""Where the tests find the offline evaluation data (XSTest, HarmBench, Do-Not-Answer).

The project's checkouts sit beside a ``shared/`` folder (``<repo>/../shared/data``). ``SKILLMERGE_DATA_DIR``
overrides that; ``/work/shared/data`` is the workplace's fixed location, used when a clone lives elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _find() -> Path:
    candidates = [os.environ.get("SKILLMERGE_DATA_DIR"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "xstest").is_dir():
            return Path(candidate)
    raise RuntimeError(
        "offline test data not found: set SKILLMERGE_DATA_DIR to the folder holding xstest/, harmbench/ "
        "and donotanswer/ (looked in " + ", ".join(str(c) for c in candidates if c) + ")"
    )


SHARED_DATA: Path = _find()
