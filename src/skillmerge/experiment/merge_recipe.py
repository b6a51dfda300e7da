"""How PTM merges θ_G with skill models, per merge method: the formula, the defaults and the merge config.

One row per method the experiment layer merges with (the merge stage's own registry has more):

===============  ==============================================  =========  ======================
method           θ (one skill; several: Σ over k)                base       defaults
===============  ==============================================  =========  ======================
task_arithmetic  θ_G + ω·(θ_D − θ_base)                          θ_base     —
ties             θ_G + ω·trim_elect_sign(θ_D − θ_base)           θ_base     density 0.5, no normalize
dare_ties        θ_G + ω·dare(θ_D − θ_base)                      θ_base     density 0.5, no normalize
linear           (θ_G + ω·θ_D) / (1 + ω)                         —          normalize
wise_ft          θ_G + ω·(θ_CFT − θ_G)   (one model only)        θ_G        —
===============  ==============================================  =========  ======================

TIES/DARE keep half of each task vector; normalize is off so the result stays θ_G + ω·τ_D (normalizing
would divide by 1 + ω). The formula text is part of every PTM merge step's config (and so of its key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillmerge.errors import UsageError


@dataclass(frozen=True)
class MergeForm:
    """One method as PTM uses it: its formula (ASCII, as recorded), defaults and which models it reads."""

    formula: str
    defaults: dict[str, Any] = field(default_factory=dict)
    uses_base: bool = True  # task vectors against θ_base (linear needs no base; wise_ft's base is θ_G)
    towards_cft: bool = False  # interpolates θ_G towards the CFT model instead of adding τ_D
    several_skills: bool = True


FORMS: dict[str, MergeForm] = {
    "task_arithmetic": MergeForm("theta_G + omega * (theta_D - theta_base)"),
    "linear": MergeForm("(theta_G + omega * theta_D) / (1 + omega)", {"normalize": True}, uses_base=False),
    "wise_ft": MergeForm(
        "theta_G + omega * (theta_CFT - theta_G)", uses_base=False, towards_cft=True, several_skills=False
    ),
    "ties": MergeForm(
        "theta_G + omega * trim_elect_sign(theta_D - theta_base)", {"normalize": False, "density": 0.5}
    ),
    "dare_ties": MergeForm(
        "theta_G + omega * dare(theta_D - theta_base)", {"normalize": False, "density": 0.5}
    ),
}
MERGE_METHODS = tuple(FORMS)
DEFAULT_MERGE_PARAMETERS: dict[str, dict[str, Any]] = {
    name: dict(form.defaults) for name, form in FORMS.items()
}


def merge_recipe(
    method: str,
    base: str,
    general: str,
    skills: list[str],
    omegas: list[float],
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The merge config (dict form, for :func:`skillmerge.merge.config.config_from_dict`) of ``method``.

    task_arithmetic / ties / dare_ties: θ_base as base, θ_G at weight 1, θ_D_k at ω_k;
    linear: ``(θ_G + Σ ω_k θ_D_k) / (1 + Σ ω_k)``; wise_ft: ``θ_G + ω·(θ_D − θ_G)`` (one model only).
    ``parameters``: the method's parameters (default: :data:`DEFAULT_MERGE_PARAMETERS`).
    """
    form = FORMS[method]
    params = dict(form.defaults if parameters is None else parameters)
    if not form.several_skills:
        if len(skills) != 1:
            raise UsageError(f"merge method {method} interpolates two models; got {len(skills)} skills")
        single: dict[str, Any] = {
            "method": method,
            "base_model": general,
            "models": [{"model": skills[0], "weight": omegas[0]}],
        }
        if params:
            single["parameters"] = params
        return single
    models = [{"model": general, "weight": 1.0}]
    models += [{"model": path, "weight": omega} for path, omega in zip(skills, omegas, strict=True)]
    recipe: dict[str, Any] = {"method": method, "models": models, "parameters": params}
    if form.uses_base:
        recipe["base_model"] = base
    return recipe
