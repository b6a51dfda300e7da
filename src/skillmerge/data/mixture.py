"""Training mixtures in the style of open-instruct's dataset mixer: ``{source: amount}`` -> one shuffled list.

An amount is either

- a float ``f`` in (0, 1]: keep ``⌊f · N⌋`` records of the source's ``N`` (at least one), drawn without
  replacement;
- an int ``n ≥ 1``: keep ``n`` records. When ``n > N`` the source is **up-sampled**: ``n // N`` whole copies
  plus ``n mod N`` records drawn without replacement, so every record appears ``⌊n/N⌋`` or ``⌈n/N⌉`` times.

Each source draws from its own generator seeded by ``(seed, source)``, so adding a source does not change
what the others contribute; the final list is shuffled with ``seed``. Note ``1`` is a count of one record;
write ``1.0`` for the whole source. Records without a ``source`` get the
source's name. A YAML file ``{sources: {path: amount}, seed: int}`` validates into :class:`MixtureSpec`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, ValidationError, field_validator

from skillmerge.config_yaml import first_validation_error, read_yaml_mapping
from skillmerge.data.records import ChatRecord
from skillmerge.data.sources import load_records
from skillmerge.data.sources.hub import HUB_PREFIX
from skillmerge.errors import UsageError

Loader = Callable[[str], list[ChatRecord]]


def check_amount(source: str, amount: Any) -> float | int:
    """Return ``amount`` if it is a fraction in (0, 1] or a positive count; else raise naming ``source``."""
    if isinstance(amount, bool):
        raise UsageError(f"mixture source {source!r}: amount {amount!r} is a boolean; expected a number")
    if isinstance(amount, int):
        if amount < 1:
            raise UsageError(f"mixture source {source!r}: count {amount} must be at least 1")
        return amount
    if isinstance(amount, float):
        if not 0.0 < amount <= 1.0:
            raise UsageError(
                f"mixture source {source!r}: fraction {amount} must be in (0, 1]; use an integer for a count"
            )
        return amount
    raise UsageError(f"mixture source {source!r}: amount {amount!r} is not a number")


def draw(records: list[ChatRecord], amount: float | int, rng: random.Random) -> list[ChatRecord]:
    """Take ``amount`` (fraction or count, see the module docstring) of ``records`` with ``rng``."""
    n_source = len(records)
    # Fraction(repr(f)) reads the float as the decimal the user wrote: ⌊0.29·100⌋ is 29, not 28.
    n = max(1, int(Fraction(repr(amount)) * n_source)) if isinstance(amount, float) else amount
    copies, remainder = divmod(n, n_source)
    return records * copies + rng.sample(records, remainder)


def build_mixture(
    spec: Mapping[str, float | int], *, seed: int, loader: Loader = load_records
) -> list[ChatRecord]:
    """Load every source with ``loader``, take its amount, tag records with the source name, shuffle."""
    if not spec:
        raise UsageError("mixture has no sources")
    amounts = {source: check_amount(source, amount) for source, amount in spec.items()}
    mixture: list[ChatRecord] = []
    for source, amount in amounts.items():
        records = loader(source)
        if not records:
            raise UsageError(f"mixture source {source!r}: no records")
        tagged = [r if r.source is not None else r.with_source(source) for r in records]
        mixture.extend(draw(tagged, amount, random.Random(f"{seed}:{source}")))
    random.Random(seed).shuffle(mixture)
    return mixture


class MixtureSpec(BaseModel):
    """A validated mixture file; relative local paths are read under ``base_dir`` (the YAML's folder)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, StrictInt | StrictFloat]
    seed: StrictInt = 0
    base_dir: Path | None = None

    @field_validator("sources")
    @classmethod
    def _amounts_are_valid(cls, sources: dict[str, int | float]) -> dict[str, int | float]:
        if not sources:
            raise ValueError("at least one source is needed")
        for source, amount in sources.items():
            try:
                check_amount(source, amount)
            except UsageError as err:
                raise ValueError(str(err)) from None
        return sources

    def resolve(self, source: str) -> str:
        """Where ``source`` is read from: hub specs and absolute paths as given, others under ``base_dir``."""
        if source.startswith(HUB_PREFIX) or self.base_dir is None or Path(source).is_absolute():
            return source
        return str(self.base_dir / source)

    def build(self, *, loader: Loader = load_records) -> list[ChatRecord]:
        """:func:`build_mixture` over this spec; records keep the source names as written in the file."""
        return build_mixture(self.sources, seed=self.seed, loader=lambda source: loader(self.resolve(source)))


def load_mixture_yaml(path: str | Path) -> MixtureSpec:
    """Read and validate a mixture YAML; any problem is one :class:`UsageError` line naming file and field."""
    path = Path(path)
    raw = read_yaml_mapping(path, "mixture file")
    if "sources" not in raw:
        raise UsageError(f"{path}: expected a mapping with 'sources' and 'seed'")
    if "base_dir" in raw:
        raise UsageError(f"{path}: 'base_dir' is set from the file's location, not in the file")
    try:
        return MixtureSpec.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as err:
        raise UsageError(f"{path}: {first_validation_error(err)}") from None
