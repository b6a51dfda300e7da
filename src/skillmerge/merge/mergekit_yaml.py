"""Accept mergekit's YAML for the methods both tools share, translated into our :class:`MergeConfig` form.

Supported: ``merge_method`` (linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs,
breadcrumbs_ties, della, della_linear, sce, model_stock, slerp, nuslerp, multislerp, karcher, nearswap,
passthrough), ``base_model``, ``models[].model``, ``models[].parameters`` (``weight`` and per-model keys
such as ``density``, ``gamma``), top-level ``parameters`` (``normalize``, ``lambda``, ``t``, ... and per-model
defaults), ``slices`` (``sources[].model``, ``sources[].layer_range``, ``sources[].parameters``,
``slices[].parameters``), ``dtype`` / ``out_dtype``, ``tokenizer_source`` / ``tokenizer.source`` and
``chat_template`` (a directory).

Values, as mergekit 0.1.5 resolves them (checked against it, tests/test_mergekit_parity.py):

- a number, or a list of numbers: a gradient over the layers (our config takes the same list, see
  :mod:`skillmerge.merge.gradients` for the interpolation rule);
- a list of ``{filter, value}`` conditions (``value`` a number or a gradient): the first condition whose
  ``filter`` is a substring of the tensor name wins; one without ``filter`` (or ``filter: "*"``) is the
  fallback for every tensor and ends the list;
- levels, strongest first: ``slices[].sources[].parameters``, ``slices[].parameters`` (with slices) or
  ``models[].parameters`` (without), then the top-level ``parameters``. A level whose conditions all miss
  and that has no fallback leaves the tensor to the next level.

In our form a level's fallback becomes the entry's own ``weight``/``parameters`` (or the top-level /
slice ``parameters``), and its conditions become overrides (``re.escape``'d patterns) emitted weakest level
first and each level's conditions in reverse, since our last matching override wins. A weaker level's
conditions are restricted (``overrides[].models``) to the models that no stronger fallback already covers.
With slices every override is the slice's own (``slices[].overrides``).

Refused with one line: ``modules``, ``models`` together with ``slices``, ``model+lora`` references,
mergekit's built-in chat template names and methods outside the shared set.

mergekit's per-method defaults for ``normalize`` (and DARE's and DELLA's ``rescale``, with mergekit's L1
rescale) are filled in when our method has that parameter and the YAML leaves it out, so the same YAML
means the same merge in both tools. ``base_model`` is ignored by linear, karcher and passthrough (as in
mergekit: a base listed among ``models`` or a slice's sources is then an ordinary input); every other
method takes it as θ_base and leaves it out of the merged inputs (with slices, each slice must list it,
with the layer range it contributes). slerp's ``base_model`` becomes our first model (the t = 0 end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError
from skillmerge.merge.gradients import is_gradient
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
    if data.get("modules"):
        raise refuse("modules", "modules (per-module slices of multi-module models)")
    method = data.get("merge_method")
    if method not in SUPPORTED:
        raise UsageError(
            f"{source}: merge_method: {method!r} is not supported (supported: {', '.join(SUPPORTED)})"
        )
    from skillmerge.merge.methods import get_method

    spec = get_method(method)
    per_model_keys = field_names(spec.model_params) | {"weight"}
    base = data.get("base_model")
    if base is not None:
        base = _model_ref(base, "base_model", refuse)

    top = dict(data.get("parameters") or {})
    if not isinstance(data.get("parameters") or {}, dict):
        raise UsageError(f"{source}: parameters: expected a mapping")
    for key in _IGNORED_PARAMETERS:
        top.pop(key, None)
    global_level = {key: _setting(value, f"parameters.{key}", refuse, source) for key, value in top.items()}
    parameters = {key: s.value for key, s in global_level.items() if s.final and key != "weight"}

    if data.get("slices"):
        if data.get("models"):
            raise UsageError(f"{source}: models: mergekit takes either models or slices, not both")
        config = _translate_slices(data["slices"], method, base, global_level, per_model_keys, source, refuse)
    else:
        config = _translate_models(
            data.get("models"), method, base, global_level, per_model_keys, source, refuse
        )

    fields = field_names(spec.params)
    for key, value in MERGEKIT_DEFAULTS.get(method, {}).items():
        if key in fields and key not in parameters:
            parameters[key] = value
    if parameters:
        config["parameters"] = parameters
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


@dataclass
class _Setting:
    """One level's setting of one parameter: conditions tried in order, then (``final``) a value for all."""

    conditions: list[tuple[str, Any]] = field(default_factory=list)
    value: Any = None
    final: bool = False


def _setting(value: Any, where: str, refuse: Any, source: str | Path) -> _Setting:
    """A mergekit parameter value: a scalar or gradient (for every tensor), or ``{filter, value}`` conditions
    (first match wins; a condition without filter, or with ``*``, matches every tensor and ends the list)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or is_gradient(value):
        return _Setting(value=value, final=True)
    if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        bad = next(i for i, v in enumerate(value) if not isinstance(v, (int, float)) or isinstance(v, bool))
        raise UsageError(f"{source}: {where}.{bad}: a gradient holds numbers only, got {value[bad]!r}")
    setting = _Setting()
    for i, cond in enumerate(value):
        if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"filter", "value"}:
            raise refuse(f"{where}.{i}", "expected a number, a list of numbers or {filter, value} conditions")
        if isinstance(cond["value"], (list, dict)) and not is_gradient(cond["value"]):
            raise refuse(f"{where}.{i}.value", "expected a number or a list of numbers (a gradient)")
        pattern = cond.get("filter")
        if pattern in (None, "*"):
            setting.value, setting.final = cond["value"], True
            break  # later conditions are never reached in mergekit
        setting.conditions.append((str(pattern), cond["value"]))
    return setting


def _level(params: Any, where: str, source: str | Path, refuse: Any) -> dict[str, _Setting]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise UsageError(f"{source}: {where}: expected a mapping of parameters")
    return {
        key: _setting(value, f"{where}.{key}", refuse, source)
        for key, value in params.items()
        if key not in _IGNORED_PARAMETERS
    }


def _overrides(
    key: str,
    chains: list[tuple[_Setting | None, list[str] | None]],
) -> list[dict[str, Any]]:
    """Our overrides for ``key`` from mergekit levels, weakest first: each (setting, models it reaches).

    mergekit takes the first matching condition at the strongest level that has one, so levels are emitted
    weakest first and each level's conditions in reverse: our last matching override wins."""
    out: list[dict[str, Any]] = []
    for setting, models in chains:
        if setting is None or models == []:
            continue
        for pattern, value in reversed(setting.conditions):
            override: dict[str, Any] = {"pattern": re.escape(pattern)}
            if models is not None:
                override["models"] = models
            if key == "weight":
                override["weight"] = value
            else:
                override["parameters"] = {key: value}
            out.append(override)
    return out


def _translate_models(
    models_in: Any,
    method: str,
    base: str | None,
    global_level: dict[str, _Setting],
    per_model_keys: set[str],
    source: str | Path,
    refuse: Any,
) -> dict[str, Any]:
    """``models`` (whole models): levels ``models[].parameters`` over top-level ``parameters``."""
    if not isinstance(models_in, list) or not models_in:
        raise UsageError(f"{source}: models: a non-empty list of {{model: path}} entries is required")
    entries: list[tuple[dict[str, Any], dict[str, _Setting]]] = []
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
        own = _level(entry.get("parameters"), f"models.{i}.parameters", source, refuse)
        entries.append((_entry(path, own, [], global_level, per_model_keys), own))

    items = [item for item, _ in entries]
    config: dict[str, Any] = {"method": method, "models": items}
    overrides: list[dict[str, Any]] = []
    for key in _keys(global_level, [own for _, own in entries]):
        reach = [item["model"] for item, own in entries if not (key in own and own[key].final)]
        every = len(reach) == len(items) or key not in per_model_keys
        chains = [(global_level.get(key), None if every else reach)]
        chains += [(own.get(key), [item["model"]]) for item, own in entries]
        overrides += _overrides(key, chains)
    if method == "slerp":
        # mergekit: t = 0 gives base_model, t = 1 the other model; ours takes both as models in that order.
        if base is None:
            raise UsageError(f"{source}: base_model: slerp needs base_model (the t = 0 end)")
        others = [m for m in items if m["model"] != base]
        if len(others) != 1:
            raise UsageError(f"{source}: models: slerp takes base_model and exactly one other model")
        config["models"] = [{"model": base}, {"model": others[0]["model"]}]
    elif method not in _BASE_IGNORED and base is not None:
        config["base_model"] = base
    if overrides:
        config["overrides"] = overrides
    return config


def _translate_slices(
    slices_in: Any,
    method: str,
    base: str | None,
    global_level: dict[str, _Setting],
    per_model_keys: set[str],
    source: str | Path,
    refuse: Any,
) -> dict[str, Any]:
    """``slices``: levels ``sources[].parameters`` over ``slices[].parameters`` over the top level."""
    if not isinstance(slices_in, list):
        raise UsageError(f"{source}: slices: expected a list of {{sources: [...]}} entries")
    slices: list[dict[str, Any]] = []
    for s, slice_in in enumerate(slices_in):
        where = f"slices.{s}"
        if not isinstance(slice_in, dict) or not isinstance(slice_in.get("sources"), list):
            raise UsageError(f"{source}: {where}.sources: expected a list of {{model, layer_range}} entries")
        extra = set(slice_in) - {"sources", "parameters"}
        if extra:
            raise refuse(f"{where}.{sorted(extra)[0]}", "unknown key")
        if not slice_in["sources"]:
            raise UsageError(f"{source}: {where}.sources: a slice needs at least one source")
        level = _level(slice_in.get("parameters"), f"{where}.parameters", source, refuse)
        entries: list[tuple[dict[str, Any], dict[str, _Setting]]] = []
        for k, src in enumerate(slice_in["sources"]):
            at = f"{where}.sources.{k}"
            if not isinstance(src, dict) or "model" not in src:
                raise UsageError(f"{source}: {at}: expected a mapping with 'model' and 'layer_range'")
            extra = set(src) - {"model", "layer_range", "parameters"}
            if extra:
                raise refuse(f"{at}.{sorted(extra)[0]}", "unknown key")
            path = _model_ref(src["model"], f"{at}.model", refuse)
            layer_range = src.get("layer_range")
            if (
                not isinstance(layer_range, list)
                or len(layer_range) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in layer_range)
            ):
                raise UsageError(f"{source}: {at}.layer_range: expected [start, end] (two integers)")
            own = _level(src.get("parameters"), f"{at}.parameters", source, refuse)
            item = _entry(path, own, [level], global_level, per_model_keys)
            item["layer_range"] = list(layer_range)
            entries.append((item, own))
        slice_out: dict[str, Any] = {"sources": [item for item, _ in entries]}
        slice_params = {key: st.value for key, st in level.items() if st.final and key not in per_model_keys}
        if slice_params:
            slice_out["parameters"] = slice_params
        merged = [(item, own) for item, own in entries if base is None or item["model"] != base]
        if method in (*_BASE_IGNORED, "slerp"):
            merged = entries
        overrides: list[dict[str, Any]] = []
        for key in _keys(global_level, [level], [own for _, own in entries]):
            if key in per_model_keys:
                past_own = [item["model"] for item, own in merged if not (key in own and own[key].final)]
                past_slice = past_own if not (key in level and level[key].final) else []
                chains = [
                    (global_level.get(key), None if len(past_slice) == len(merged) else past_slice),
                    (level.get(key), None if len(past_own) == len(merged) else past_own),
                ]
                chains += [(own.get(key), [item["model"]]) for item, own in merged]
            else:
                final = key in level and level[key].final
                chains = [(global_level.get(key), [] if final else None), (level.get(key), None)]
            overrides += _overrides(key, chains)
        if overrides:
            slice_out["overrides"] = overrides
        if method == "slerp":
            if base is None:
                raise UsageError(f"{source}: base_model: slerp needs base_model (the t = 0 end)")
            first = [item for item in slice_out["sources"] if item["model"] == base]
            rest = [item for item in slice_out["sources"] if item["model"] != base]
            if len(first) != 1 or len(rest) != 1:
                raise UsageError(
                    f"{source}: {where}.sources: slerp takes base_model and exactly one other model"
                )
            slice_out["sources"] = first + rest  # ours: the t = 0 end first
        slices.append(slice_out)
    config: dict[str, Any] = {"method": method, "slices": slices}
    if method not in (*_BASE_IGNORED, "slerp") and base is not None:
        config["base_model"] = base
    return config


def _entry(
    path: str,
    own: dict[str, _Setting],
    middle: list[dict[str, _Setting]],
    global_level: dict[str, _Setting],
    per_model_keys: set[str],
) -> dict[str, Any]:
    """A model entry with the per-model values that hold for every tensor: its own, else the nearest level's
    (top-level per-model keys other than weight stay in ``parameters``, our per-model defaults)."""
    item: dict[str, Any] = {"model": path}
    for key in _keys(own, *[[lv] for lv in middle], [global_level] if "weight" in global_level else []):
        if key not in per_model_keys and not (key in own and own[key].final):
            continue  # a method-level key: top-level or the slice's parameters (one in ``own`` is refused)
        for level in (own, *middle):
            if key in level and level[key].final:
                value = level[key].value
                break
        else:
            if key != "weight" or not ("weight" in global_level and global_level["weight"].final):
                continue
            value = global_level["weight"].value
        if key == "weight":
            item["weight"] = value
        else:
            item.setdefault("parameters", {})[key] = value
    return item


def _keys(*groups: Any) -> list[str]:
    """The parameter names set anywhere in ``groups`` (levels, or lists of levels), in first-seen order."""
    seen: dict[str, None] = {}
    for group in groups:
        for level in group if isinstance(group, list) else [group]:
            for key in level:
                seen.setdefault(key)
    return list(seen)


def _model_ref(value: Any, field: str, refuse: Any) -> str:
    if isinstance(value, dict):
        raise refuse(field, "structured model references")
    text = str(value)
    if "+" in text and not Path(text).exists():
        raise refuse(field, f"'{text}': model+lora references (list the LoRA adapter as its own model)")
    return text
