"""The suite registry: suites are found by name (lm-eval style), each module registers its own.

A suite module decorates its factory (a :class:`~skillmerge.evaluate.suites.base.Suite` subclass or a
function returning one) with ``@register_suite("name")``; :func:`get_suite` builds it with options. The
built-in modules are imported below, each on its own, so one that cannot be imported (a missing optional
dependency) leaves the others usable and is named when its suite is asked for.

Paper aggregates (:mod:`skillmerge.evaluate`) need each suite's *category* (general, science, safety,
exaggerated_refusal, coding) and *headline* score in [0, 1], higher is better. A suite declares both where it
registers, ``register_suite(name, category=..., headline="metric")``:

- category: the registered one; a suite registered without one (``chat``, ``perplexity``) may name it in
  ``SuiteResult.meta["category"]``, or an experiment spec's ``eval:`` section places it;
- headline: the registered metric (default ``score``, which every built-in suite reports); a result of a
  suite not registered in this process (read back from disk) uses ``score`` too;
- components: ``SuiteResult.meta["components"]`` (``{task: score in [0, 1]}``) when a suite bundles several
  tasks (the paper averages tasks, not suites); else ``{suite: headline}``. Task names are global: two
  suites reporting the same task count it once.
"""

from __future__ import annotations

import importlib
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites.base import Suite, SuiteFactory, SuiteResult

T = TypeVar("T")

SUITES: dict[str, SuiteFactory] = {}
CATEGORIES: dict[str, str] = {}
CATEGORY_NAMES: tuple[str, ...] = ("general", "science", "safety", "exaggerated_refusal", "coding")
HEADLINES: dict[str, str] = {}  # suite name → the metric that is its headline (in [0, 1])
DEFAULT_HEADLINE = "score"
BUILTIN_MODULES: tuple[str, ...] = (
    "coding",
    "safety",
    "xstest",
    "general",
    "science",
    "chat",
    "perplexity",
    "world",
    "lm_eval_suite",
)
IMPORT_ERRORS: dict[str, str] = {}


def register_suite(
    name: str, *, category: str | None = None, headline: str = DEFAULT_HEADLINE
) -> Callable[[SuiteFactory], SuiteFactory]:
    """Decorator: make ``factory`` available as ``get_suite(name)``, counting towards ``category`` with the
    metric ``headline`` (in [0, 1]) as its one number; a taken name is a programming error."""
    if category is not None and category not in CATEGORY_NAMES:
        raise ValueError(
            f"suite {name!r}: unknown category {category!r} (one of {', '.join(CATEGORY_NAMES)})"
        )

    def decorate(factory: SuiteFactory) -> SuiteFactory:
        if name in SUITES and SUITES[name] is not factory:
            raise ValueError(f"suite {name!r} is registered twice")
        SUITES[name] = factory
        HEADLINES[name] = headline
        if category is not None:
            CATEGORIES[name] = category
        return factory

    return decorate


def suite_names() -> list[str]:
    return sorted(SUITES)


def get_suite(name: str, **options: object) -> Suite:
    """Build the suite registered as ``name`` with ``options`` (one-line :class:`UsageError` otherwise)."""
    factory = SUITES.get(name)
    if factory is None:
        broken = "".join(
            f"; suite module {m!r} failed to import ({e})" for m, e in sorted(IMPORT_ERRORS.items())
        )
        raise UsageError(f"unknown suite {name!r}; known: {', '.join(suite_names()) or 'none'}{broken}")
    _check_options(name, factory, options)
    try:
        suite = factory(**options)
    except TypeError as err:
        raise UsageError(f"suite {name!r}: bad options {sorted(options)} ({err})") from None
    if not suite.name:
        suite.name = name
    return suite


def _check_options(name: str, factory: SuiteFactory, options: Mapping[str, object]) -> None:
    """One line naming a missing or unknown option of suite ``name`` (from its factory's signature)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a factory without a signature: let it check its own options
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    named = {k: p for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    unknown = sorted(set(options) - set(named))
    if unknown:
        known = ", ".join(named) or "none"
        raise UsageError(f"suite {name!r}: unknown option {unknown[0]!r} (its options: {known})")
    missing = [k for k, p in named.items() if p.default is p.empty and k not in options]
    if missing:
        raise UsageError(
            f"suite {name!r} needs option {missing[0]!r}: give it as {name}.{missing[0]}=VALUE "
            f"(eval --option, or eval.options.{name}.{missing[0]} in an experiment spec)"
        )


def suite_category(name: str, result: SuiteResult | None = None) -> str | None:
    """The paper aggregate a suite counts towards (None: reported, not aggregated)."""
    if name in CATEGORIES:
        return CATEGORIES[name]
    if result is not None and isinstance(result.meta.get("category"), str):
        return str(result.meta["category"])
    return None


def headline_score(result: SuiteResult, category: str | None = None) -> float | None:
    """The one number in [0, 1] a suite contributes: its registered headline metric; None when absent.

    ``category`` is accepted for callers that pass it; the suite's registration alone decides.
    """
    value = result.metrics.get(HEADLINES.get(result.suite, DEFAULT_HEADLINE))
    return None if value is None else float(value)


def suite_components(result: SuiteResult, category: str | None) -> dict[str, float]:
    """``{task: score}`` a suite adds to its aggregate (see the module docstring)."""
    components = result.meta.get("components")
    if isinstance(components, Mapping) and components:
        return {str(k): float(v) for k, v in components.items()}
    score = headline_score(result, category)
    return {} if score is None else {result.suite: score}


def select_items(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """``limit`` items drawn without replacement with ``seed``, in their original order (all when None)."""
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be ≥ 1, got {limit}")
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _import_builtins() -> None:
    for module in BUILTIN_MODULES:
        name = f"{__name__}.{module}"
        try:
            importlib.import_module(name)
        except ImportError as err:  # a suite that cannot load must not take the others down
            if isinstance(err, ModuleNotFoundError) and err.name == name:
                continue  # not part of this installation
            IMPORT_ERRORS[module] = str(err).splitlines()[0] if str(err) else type(err).__name__


_import_builtins()

__all__ = [
    "CATEGORY_NAMES",
    "SUITES",
    "Suite",
    "SuiteResult",
    "get_suite",
    "headline_score",
    "register_suite",
    "select_items",
    "suite_category",
    "suite_components",
    "suite_names",
]
