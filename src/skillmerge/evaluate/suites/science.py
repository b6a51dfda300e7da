"""Science suites: reading comprehension / extraction over scientific passages, scored by normalised exact
match and token F1.

- ``science``: offline. Passages describe fictional studies (field surveys, lab assays, trials, materials,
  exoplanets, model training) generated from templates with a fixed seed; invented names and numbers mean
  the answer must be read from the passage, not recalled. Each item is a passage and a question whose
  answer is a short span of the passage.
- ``sciriff``: the SciRIFF test split (``allenai/SciRIFF``) when the hub is reachable, scored with the same
  EM/F1 against the reference output; this approximates SciRIFF's own per-task metrics (JSON-aware F1,
  ROUGE, ...), which are not reimplemented here. Offline it refuses with one line.

Scoring (SQuAD convention): ``normalize`` lowercases, drops punctuation and the articles a/an/the, and
collapses whitespace. ``EM = max_g [norm(pred) == norm(g)]``; with ``P``/``R`` the share of predicted/gold
tokens in their multiset overlap, ``F1 = max_g 2PR/(P+R)`` over the gold answers ``g``.
"""

from __future__ import annotations

import os
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites import register_suite, select_items
from skillmerge.evaluate.suites.base import GenerationParams, ItemResult, ModelBackend, Suite, SuiteResult

ITEM_SEED = 20240612
RC_PROMPT = (
    "Read the passage and answer the question with a short phrase taken from the passage.\n\n"
    "Passage: {passage}\n\nQuestion: {question}"
)

# --------------------------------------------------------------------------------------------------------
# Scoring

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token-overlap F1 of ``prediction`` against any gold answer (1.0 when both normalise to empty)."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        reference = normalize_answer(gold).split()
        if not predicted or not reference:
            best = max(best, float(predicted == reference))
            continue
        overlap = sum((Counter(predicted) & Counter(reference)).values())
        if overlap:
            precision, recall = overlap / len(predicted), overlap / len(reference)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def short_answer(completion: str) -> str:
    """The answer part of a reply: its first non-empty line without an ``Answer:`` prefix or final period."""
    for line in completion.strip().splitlines():
        line = re.sub(r"^\s*(?:the\s+)?answer\s*(?:is|:)\s*", "", line.strip(), flags=re.IGNORECASE)
        if line:
            return line.rstrip(".").strip()
    return ""


# --------------------------------------------------------------------------------------------------------
# Offline items

_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "tha",
    "vo",
    "sel",
    "dru",
    "mar",
    "qui",
    "zen",
    "bel",
    "tor",
    "fa",
    "nim",
)


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _number(rng: random.Random, low: float, high: float, digits: int = 0) -> str:
    value = rng.uniform(low, high)
    return f"{value:.{digits}f}" if digits else str(round(value))


@dataclass(frozen=True)
class ScienceItem:
    id: str
    passage: str
    question: str
    answers: tuple[str, ...]
    kind: str = ""


QA = tuple[str, tuple[str, ...]]
_Template = Callable[[random.Random], tuple[str, list[QA]]]


def _field_study(rng: random.Random) -> tuple[str, list[QA]]:
    lead = f"Dr. {_name(rng)} {_name(rng, 3)}"
    organism = f"{_name(rng, 3)} {_name(rng, 2).lower()}i"
    region = f"the {_name(rng)} Valley"
    n, length = _number(rng, 8, 60), _number(rng, 2, 90, 1)
    cause = rng.choice(
        ("colder night temperatures", "a shorter growing season", "scarcer food", "thinner air")
    )
    year = str(rng.randint(1975, 2023))
    passage = (
        f"In {year}, a team led by {lead} surveyed {n} populations of the beetle {organism} across {region}. "
        f"Adult body length averaged {length} millimetres, and beetles living at high altitude were smaller "
        f"than those in the lowlands. The team attributed the difference to {cause}."
    )
    return passage, [
        ("Who led the survey team?", (lead,)),
        ("How many populations were surveyed?", (n,)),
        ("What was the average adult body length?", (f"{length} millimetres", length)),
        ("Where was the survey carried out?", (region,)),
        ("What did the team attribute the size difference to?", (cause,)),
        ("In which year was the survey done?", (year,)),
    ]


def _lab_assay(rng: random.Random) -> tuple[str, list[QA]]:
    institute = f"the {_name(rng)} Institute"
    compound, microbe = f"{_name(rng, 3).lower()}ine", f"{_name(rng)} bacillus"
    temperature, hours, drop = _number(rng, 25, 42), _number(rng, 12, 96), _number(rng, 10, 95)
    method = rng.choice(("optical density readings", "colony counts on agar plates", "fluorescent staining"))
    passage = (
        f"Researchers at {institute} tested whether {compound} slows the growth of {microbe}. "
        f"Cultures were incubated at {temperature} degrees Celsius for {hours} hours. Growth fell by {drop} "
        f"percent at the highest dose, while the control cultures showed no change. Growth was measured "
        f"with {method}."
    )
    return passage, [
        ("Which compound was tested?", (compound,)),
        ("Where was the work done?", (institute,)),
        ("For how many hours were the cultures incubated?", (hours, f"{hours} hours")),
        ("By how much did growth fall at the highest dose?", (f"{drop} percent", drop)),
        ("How was growth measured?", (method,)),
    ]


def _clinical_trial(rng: random.Random) -> tuple[str, list[QA]]:
    n, weeks, pct = _number(rng, 40, 900), _number(rng, 4, 52), _number(rng, 20, 80)
    drug = f"{_name(rng, 3).lower()}mab"
    condition = rng.choice(("chronic migraine", "mild asthma", "seasonal allergies", "type 2 diabetes"))
    outcome = rng.choice(
        ("the number of symptom-free days", "a lower fasting glucose", "fewer night wakings")
    )
    side = rng.choice(("headache", "nausea", "a mild rash", "fatigue"))
    passage = (
        f"A randomised trial enrolled {n} adults with {condition}. Half received {drug} and half a placebo "
        f"for {weeks} weeks. The primary outcome was {outcome}, which improved in {pct} percent of the "
        f"treated group. The most common side effect was {side}."
    )
    return passage, [
        ("How many adults were enrolled?", (n,)),
        ("Which drug was tested?", (drug,)),
        ("How long did treatment last?", (f"{weeks} weeks", weeks)),
        ("What was the primary outcome?", (outcome,)),
        ("What was the most common side effect?", (side,)),
        ("Which condition did the participants have?", (condition,)),
    ]


def _materials(rng: random.Random) -> tuple[str, list[QA]]:
    alloy = f"{_name(rng)}-{rng.randint(2, 99)}"
    metals = rng.sample(("nickel", "titanium", "cobalt", "aluminium", "copper", "tungsten"), 2)
    kelvin, strength = _number(rng, 600, 1900), _number(rng, 300, 2400)
    baseline = rng.choice(("ordinary steel", "pure titanium", "cast iron"))
    process = rng.choice(("arc melting", "powder sintering", "rapid quenching"))
    passage = (
        f"A new alloy called {alloy}, made of {metals[0]} and {metals[1]}, was heated to {kelvin} kelvin. "
        f"Its tensile strength reached {strength} megapascals, well above that of {baseline}. "
        f"The samples were prepared by {process}."
    )
    return passage, [
        ("What is the new alloy called?", (alloy,)),
        ("To what temperature was the alloy heated?", (f"{kelvin} kelvin", kelvin)),
        ("What tensile strength did it reach?", (f"{strength} megapascals", strength)),
        ("How were the samples prepared?", (process,)),
        ("Which material was the alloy compared with?", (baseline,)),
    ]


def _exoplanet(rng: random.Random) -> tuple[str, list[QA]]:
    telescope, star = f"{_name(rng)} Array", f"{_name(rng)}-{rng.randint(100, 999)}"
    days, radius, kelvin = _number(rng, 1, 400, 1), _number(rng, 1, 12, 1), _number(rng, 200, 2200)
    method = rng.choice(("transit", "radial velocity", "direct imaging"))
    passage = (
        f"Observers using the {telescope} detected a planet orbiting the star {star} every {days} days. "
        f"The planet's radius is about {radius} times that of Earth and its surface temperature is estimated "
        f"at {kelvin} kelvin. The discovery was made with the {method} method."
    )
    return passage, [
        ("Which star does the planet orbit?", (star,)),
        ("How long is the planet's orbit?", (f"{days} days", days)),
        ("Which instrument made the detection?", (telescope, f"the {telescope}")),
        ("Which method was used for the discovery?", (method, f"the {method} method")),
        ("What is the estimated surface temperature?", (f"{kelvin} kelvin", kelvin)),
    ]


def _model_training(rng: random.Random) -> tuple[str, list[QA]]:
    model, bench = f"{_name(rng)}LM", f"{_name(rng)}Bench"
    tokens, acc, margin = _number(rng, 5, 900), _number(rng, 30, 95, 1), _number(rng, 1, 12, 1)
    domain = rng.choice(("legal", "biomedical", "source code", "news", "chemistry"))
    baseline = f"{_name(rng)}Net"
    passage = (
        f"The {model} model was trained on {tokens} billion tokens of {domain} text. It reached an "
        f"accuracy of {acc} percent on the {bench} benchmark, beating the previous best system, "
        f"{baseline}, by {margin} points."
    )
    return passage, [
        ("How many tokens was the model trained on?", (f"{tokens} billion tokens", f"{tokens} billion")),
        ("Which benchmark was used?", (bench, f"the {bench} benchmark")),
        ("What accuracy did the model reach?", (f"{acc} percent", acc)),
        ("Which system held the previous best result?", (baseline,)),
        ("What kind of text was the model trained on?", (f"{domain} text", domain)),
    ]


_TEMPLATES: tuple[tuple[str, _Template], ...] = (
    ("field", _field_study),
    ("assay", _lab_assay),
    ("trial", _clinical_trial),
    ("materials", _materials),
    ("exoplanet", _exoplanet),
    ("ml", _model_training),
)


def generate_science_items(n: int = 120, seed: int = ITEM_SEED) -> list[ScienceItem]:
    """``n`` passage/question items: passages cycle through the templates, two questions per passage."""
    rng = random.Random(seed)
    items: list[ScienceItem] = []
    passage_index = 0
    while len(items) < n:
        kind, template = _TEMPLATES[passage_index % len(_TEMPLATES)]
        passage, questions = template(rng)
        for question, answers in rng.sample(questions, 2)[: n - len(items)]:
            items.append(ScienceItem(f"sci-{len(items):03d}", passage, question, answers, kind))
        passage_index += 1
    return items


# --------------------------------------------------------------------------------------------------------
# SciRIFF (hub)

SCIRIFF_ID = "allenai/SciRIFF"


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_sciriff(
    split: str = "test", config: str = "4096", task_families: Sequence[str] | None = ("qa",)
) -> list[ScienceItem]:
    """SciRIFF instances (``input`` → ``output``) of the given task families, from the hub."""
    if _offline():
        raise UsageError(
            f"sciriff: {SCIRIFF_ID} needs the Hugging Face hub but HF_HUB_OFFLINE is set; "
            "use the offline 'science' suite"
        )
    try:
        import datasets
    except ImportError:
        raise UsageError("sciriff: needs the 'datasets' package (pip install 'skillmerge[hub]')") from None
    try:
        rows = datasets.load_dataset(SCIRIFF_ID, config, split=split)
    except Exception as err:  # network, auth and format errors all mean the same to the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"sciriff: cannot load {SCIRIFF_ID} ({config}, {split}): {first}") from None
    items = []
    for row in rows:
        family = (row.get("metadata") or {}).get("task_family", "")
        if task_families and not any(str(family).startswith(f) for f in task_families):
            continue
        items.append(
            ScienceItem(str(row["_instance_id"]), "", str(row["input"]), (str(row["output"]),), family)
        )
    if not items:
        raise UsageError(f"sciriff: no instances of task families {list(task_families or [])} in {split}")
    return items


# --------------------------------------------------------------------------------------------------------
# Suites


def score_science(
    backend: ModelBackend, items: Sequence[ScienceItem], max_new_tokens: int
) -> tuple[dict[str, float], list[ItemResult]]:
    """Generate greedily, take :func:`short_answer`, score EM and F1 against every gold answer."""
    if not items:
        raise UsageError("science: no items (empty prompt set)")
    conversations = [
        [
            {
                "role": "user",
                "content": RC_PROMPT.format(passage=i.passage, question=i.question)
                if i.passage
                else i.question,
            }
        ]
        for i in items
    ]
    completions = backend.generate(conversations, GenerationParams(max_new_tokens=max_new_tokens))
    results, em_sum, f1_sum = [], 0.0, 0.0
    for item, conversation, outs in zip(items, conversations, completions, strict=True):
        answer = short_answer(outs[0])
        em, f1 = exact_match(answer, item.answers), token_f1(answer, item.answers)
        em_sum, f1_sum = em_sum + em, f1_sum + f1
        results.append(
            ItemResult(
                id=item.id,
                prompt=conversation[0]["content"],
                completion=outs[0],
                verdict="exact" if em else ("partial" if f1 > 0 else "wrong"),
                score=f1,
                reason=f"answer {answer!r} vs {list(item.answers)!r}: EM {em:.0f}, F1 {f1:.2f}",
                meta={"kind": item.kind, "extracted": answer, "answers": list(item.answers), "em": em},
            )
        )
    return {"em": em_sum / len(items), "f1": f1_sum / len(items)}, results


@register_suite("science", category="science")
class ScienceSuite(Suite):
    """Offline reading comprehension (``score`` = token F1)."""

    name = "science"

    def __init__(self, *, n_items: int = 120, max_new_tokens: int = 32) -> None:
        if n_items < 1 or max_new_tokens < 1:
            raise UsageError("science: n_items and max_new_tokens must be ≥ 1")
        self.items = generate_science_items(n_items)
        self.max_new_tokens = max_new_tokens

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        items = select_items(self.items, limit, seed)
        metrics, results = score_science(backend, items, self.max_new_tokens)
        metrics["score"] = metrics["f1"]
        meta = {
            "category": "science",
            "components": {"science-rc": metrics["f1"]},
            "n_items": len(items),
            "item_seed": ITEM_SEED,
            "limit": limit,
            "seed": seed,
        }
        return SuiteResult(self.name, metrics, results, meta)


@register_suite("sciriff", category="science")
class SciRIFFSuite(Suite):
    """SciRIFF from the hub, EM/F1 against the reference output (``score`` = token F1)."""

    name = "sciriff"

    def __init__(
        self,
        *,
        split: str = "test",
        config: str = "4096",
        task_families: Sequence[str] | None = ("qa",),
        max_new_tokens: int = 256,
    ) -> None:
        self.split, self.config, self.task_families = split, config, task_families
        self.max_new_tokens = max_new_tokens

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        source = load_sciriff(self.split, self.config, self.task_families)
        items = select_items(source, limit, seed)
        metrics, results = score_science(backend, items, self.max_new_tokens)
        metrics["score"] = metrics["f1"]
        meta = {
            "category": "science",
            "components": {"sciriff": metrics["f1"]},
            "n_items": len(items),
            "total_items": len(source),
            "limit": limit,
            "seed": seed,
        }
        return SuiteResult(self.name, metrics, results, meta)
