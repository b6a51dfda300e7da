"""Accept mergekit's YAML for the methods both tools share, translated into our :class:`MergeConfig` form.

Supported: ``merge_method`` (linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs,
breadcrumbs_ties, della, della_linear, sce, model_stock, slerp, nuslerp, multislerp, karcher, nearswap,
passthrough with one model),
``base_model``, ``models[].model``, ``models[].parameters`` (``weight`` and per-model keys such as
``density``, ``gamma``), top-level ``parameters`` (``normalize``, ``lambda``, ``t``, ... and per-model
defaults), ``dtype`` / ``out_dtype``, ``tokenizer_source`` / ``tokenizer.source`` and ``chat_template``
(a directory).
A parameter given as a list of ``{filter, value}`` conditions becomes overrides: mergekit takes the first
condition whose ``filter`` is a substring of the tensor name, we apply matching overrides in order with the
last winning, so the conditions are emitted in reverse.
Refused with one line: ``slices``, ``modules``, gradients (a list of numbers across layers), ``model+lora``
references, mergekit's built-in chat template names and methods outside the shared set.

mergekit's per-method defaults for ``normalize`` (and DARE's and DELLA's ``rescale``, with mergekit's L1
rescale) are filled in when our method has that parameter and the YAML leaves it out, so the same YAML
means the same merge in both tools. ``base_model`` is ignored by linear, karcher and passthrough (as in
mergekit: a base listed among ``models`` is then an ordinary input); every other method takes it as θ_base
and leaves it out of ``models``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError
from skillmerge.merge.params import field_names

# methods for which mergekit ignores base_model: it is neither θ_base nor dropped from the inputs
_BASE_IGNORED = ("linear", "karcher", "passthrough")
# mergekit's defaults when the YAML does not set them (see its method registry).
MERGEKIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"normalize": True},
    "task_arithmetic": {"normalize": False},
    "ties": {"normalize": True},
    "dare_linear": {"normalize": False, "rescale": True, "rescale_norm": "l1"},
    "dare_ties": {"normalize": False, "rescale": True, "rescale_norm": "l1"},
    "breadcrumbs": {"normalize": False},
    "breadcrumbs_ties": {"normalize": False},
    "della": {"normalize": True, "rescale": True, "rescale_norm": "l1"},
    "della_linear": {"normalize": False, "rescale": True, "rescale_norm": "l1"},
    "sce": {"select_topk": 1.0},
    "model_stock": {"filter_wise": False},
    "slerp": {},
    "nuslerp": {"nuslerp_flatten": True, "nuslerp_row_wise": False},
    "multislerp": {"normalize_weights": True, "eps": 1e-8},
    "karcher": {"max_iter": 10, "tol": 1e-5},
    "nearswap": {},
    "passthrough": {},
}
SUPPORTED = tuple(MERGEKIT_DEFAULTS)
_KNOWN_KEYS = {
    "merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source",
    "tokenizer", "chat_template", "slices", "modules",
}  # fmt: skip
_IGNORED_PARAMETERS = {"int8_mask"}  # a mergekit memory saving that does not change the result
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}  # fmt: skip


def is_mergekit(data: Any) -> bool:
    """A mergekit config is recognised by its ``merge_method`` key (ours says ``method``)."""
    return isinstance(data, dict) and "merge_method" in data


def from_mergekit(data: dict[str, Any], source: str | Path = "<config>") -> dict[str, Any]:
    """Translate a parsed mergekit YAML into a dict of our form; validation happens in MergeConfig."""

    def refuse(field: str, problem: str) -> UsageError:
        return UsageError(f"{source}: {field}: {problem} (mergekit feature not supported by skillmerge)")

    for key in data:
        if key not in _KNOWN_KEYS:
            raise refuse(str(key), "unknown mergekit key")
    for key in ("slices", "modules"):
        if data.get(key):
            raise refuse(key, "slices/modules (layer ranges, passthrough stacking)")
    method = data.get("merge_method")
    if method not in SUPPORTED:
        raise UsageError(
            f"{source}: merge_method: {method!r} is not supported (supported: {', '.join(SUPPORTED)})"
        )
    models_in = data.get("models")
    if not isinstance(models_in, list) or not models_in:
        raise UsageError(f"{source}: models: a non-empty list of {{model: path}} entries is required")

    base = data.get("base_model")
    if base is not None:
        base = _model_ref(base, "base_model", refuse)
    overrides: list[dict[str, Any]] = []
    top = dict(data.get("parameters") or {})
    for key in _IGNORED_PARAMETERS:
        top.pop(key, None)
    default_weight = None
    parameters: dict[str, Any] = {}
    for key, value in top.items():
        scalar = _conditional(value, f"parameters.{key}", refuse, overrides, key, models=None)
        if key == "weight":
            default_weight = scalar
        elif scalar is not None:
            parameters[key] = scalar

    models: list[dict[str, Any]] = []
    for i, entry in enumerate(models_in):
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            raise UsageError(f"{source}: models.{i}: expected a mapping with a 'model' key")
        extra = set(entry) - {"model", "parameters"}
        if extra:
            raise refuse(f"models.{i}.{sorted(extra)[0]}", "unknown key")
        path = _model_ref(entry["model"], f"models.{i}.model", refuse)
        if base is not None and path == base and method not in (*_BASE_IGNORED, "slerp"):
            continue  # mergekit leaves the base out of the task vectors
        item: dict[str, Any] = {"model": path}
        params = dict(entry.get("parameters") or {})
        for key, value in params.items():
            selector = [path]
            scalar = _conditional(
                value, f"models.{i}.parameters.{key}", refuse, overrides, key, models=selector
            )
            if key == "weight":
                if scalar is not None:
                    item["weight"] = scalar
            elif scalar is not None:
                item.setdefault("parameters", {})[key] = scalar
        if "weight" not in item and default_weight is not None:
            item["weight"] = default_weight
        models.append(item)

    config: dict[str, Any] = {"method": method, "models": models}
    if method == "slerp":
        # mergekit: t = 0 gives base_model, t = 1 the other model; ours takes both as models in that order.
        if base is None:
            raise UsageError(f"{source}: base_model: slerp needs base_model (the t = 0 end)")
        others = [m for m in models if m["model"] != base]
        if len(others) != 1:
            raise UsageError(f"{source}: models: slerp takes base_model and exactly one other model")
        config["models"] = [{"model": base}, {"model": others[0]["model"]}]
    elif method not in _BASE_IGNORED and base is not None:
        config["base_model"] = base
    from skillmerge.merge.methods import get_method

    fields = field_names(get_method(method).params)
    for key, value in MERGEKIT_DEFAULTS.get(method, {}).items():
        if key in fields and key not in parameters:
            parameters[key] = value
    if parameters:
        config["parameters"] = parameters
    if overrides:
        config["overrides"] = overrides
    dtype = data.get("out_dtype") or data.get("dtype")
    if dtype is not None:
        if str(dtype) not in _DTYPES:
            raise UsageError(f"{source}: dtype: {dtype!r} is not one of {', '.join(sorted(_DTYPES))}")
        config["dtype"] = _DTYPES[str(dtype)]
    tokenizer = data.get("tokenizer")
    tokenizer_source = data.get("tokenizer_source")
    if isinstance(tokenizer, dict):
        if set(tokenizer) - {"source"}:
            raise refuse("tokenizer", "only tokenizer.source is supported")
        tokenizer_source = tokenizer.get("source", tokenizer_source)
    if tokenizer_source is not None:
        config["tokenizer_source"] = str(tokenizer_source)
    chat = data.get("chat_template")
    if chat is not None:
        if chat in ("auto", "base"):
            pass
        elif not Path(str(chat)).is_dir():
            raise refuse("chat_template", f"{chat!r} must be a model directory to take the template from")
        else:
            config["chat_template"] = str(chat)
    return config


def _model_ref(value: Any, field: str, refuse: Any) -> str:
    if isinstance(value, dict):
        raise refuse(field, "structured model references")
    text = str(value)
    if "+" in text and not Path(text).exists():
        raise refuse(field, f"'{text}': model+lora references (list the LoRA adapter as its own model)")
    return text


def _conditional(
    value: Any, field: str, refuse: Any, overrides: list[dict[str, Any]], key: str, models: list[str] | None
) -> Any:
    """A plain value is returned; a list of ``{filter, value}`` adds overrides and returns the fallback."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return value
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise refuse(field, "gradients (a list of values interpolated across layers)")
    fallback = None
    conditions = []
    for cond in value:
        if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"filter", "value"}:
            raise refuse(field, "only {filter, value} conditions are supported in a list")
        if isinstance(cond["value"], list):
            raise refuse(field, "gradients (a list of values interpolated across layers)")
        pattern = cond.get("filter")
        if pattern in (None, "*"):
            fallback = cond["value"]
            break  # later conditions are never reached in mergekit
        conditions.append((str(pattern), cond["value"]))
    for pattern, cond_value in reversed(conditions):
        override: dict[str, Any] = {"pattern": re.escape(pattern)}
        if models is not None:
            override["models"] = models
        if key == "weight":
            override["weight"] = cond_value
        else:
            override["parameters"] = {key: cond_value}
        overrides.append(override)
    return fallback
