"""README model cards: what a saved model is and how it was made, for a person browsing the directory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def render_model_card(
    title: str,
    *,
    summary: str = "",
    base_model: str | None = None,
    details: Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown card: YAML front matter (library, base model), a summary, a details table, the recipe.

    ``recipe`` (e.g. a merge configuration) is shown as JSON so it can be copied back into a config.
    """
    front = ["---", "library_name: transformers", "tags:", "- skillmerge"]
    if base_model:
        front.append(f"base_model: {json.dumps(base_model)}")
    front.append("---")
    lines = [*front, "", f"# {title}", ""]
    if summary:
        lines += [summary, ""]
    if details:
        lines += ["| | |", "| --- | --- |"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in details.items()]
        lines.append("")
    if recipe:
        lines += ["## Recipe", "", "```json", json.dumps(recipe, indent=2, default=str), "```", ""]
    lines.append("Written by skillmerge.")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
