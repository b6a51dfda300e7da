"""General-capability suites, all offline and reproducible: knowledge (multiple choice by log-likelihood),
math word problems (chain of thought, answer extracted), instruction following (checked constraints).

Item sets are fixed by a constant seed and a fixed count, so the same model scores the same everywhere;
``limit``/``seed`` of :meth:`Suite.run` only subsample them.

- ``general-mc``: questions generated from small fact tables written for this project (chemical symbols,
  capitals, SI units, animal classes, polygon sides, planets, calendar order, antonyms); three distractors
  come from the same table. Or a local JSONL file, one item a line::

      {"id"?: str, "question": str, "choices": [str, str, ...], "answer": int | "B" | "<a choice>"}

  ``answer`` is a 0-based index, a letter, or the text of the right choice. Each choice is scored as the
  assistant's reply: ``acc`` = argmax of ``Σ log p(choice)``, ``acc_norm`` = argmax of that sum divided by
  the choice's length in characters (less biased towards short choices).
- ``general-gsm``: GSM-style problems from ``reasoning-gym``'s ``gsm_symbolic`` generator; the model
  reasons step by step and its final number is extracted (:func:`extract_answer`) and compared numerically.
- ``general-if``: a topic prompt plus one or two verifiable constraints (word limits, letter case, keywords,
  bullets, JSON, ...); ``prompt_acc`` = all constraints of a prompt met, ``instruction_acc`` = per constraint.
- ``general``: the three together; ``score`` = mean of the task scores (acc, accuracy, prompt_acc), and
  ``meta["components"]`` lists them for the paper's General aggregate.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.suites import register_suite, select_items
from skillmerge.evaluate.suites.base import GenerationParams, ItemResult, ModelBackend, Suite, SuiteResult

ITEM_SEED = 20240611  # fixed: the item sets never change with the run's seed
MC_PROMPT = "{question}\nReply with the correct answer only."
GSM_PROMPT = "{question}\nSolve the problem step by step, then write the final line as 'The answer is N.'"

# --------------------------------------------------------------------------------------------------------
# Multiple-choice knowledge

# (question template, {subject: answer}); every table has ≥ 4 distinct answers, so 3 distractors exist.
_FACTS: dict[str, tuple[str, dict[str, str]]] = {
    "chemistry": (
        "What is the chemical symbol for {}?",
        {
            "hydrogen": "H",
            "helium": "He",
            "carbon": "C",
            "nitrogen": "N",
            "oxygen": "O",
            "sodium": "Na",
            "magnesium": "Mg",
            "aluminium": "Al",
            "silicon": "Si",
            "sulfur": "S",
            "chlorine": "Cl",
            "potassium": "K",
            "calcium": "Ca",
            "iron": "Fe",
            "copper": "Cu",
            "zinc": "Zn",
            "silver": "Ag",
            "gold": "Au",
            "lead": "Pb",
            "mercury": "Hg",
            "neon": "Ne",
            "phosphorus": "P",
            "tin": "Sn",
            "uranium": "U",
            "argon": "Ar",
            "fluorine": "F",
            "lithium": "Li",
            "platinum": "Pt",
        },
    ),
    "geography": (
        "What is the capital city of {}?",
        {
            "France": "Paris",
            "Japan": "Tokyo",
            "Italy": "Rome",
            "Spain": "Madrid",
            "Egypt": "Cairo",
            "Canada": "Ottawa",
            "Australia": "Canberra",
            "Brazil": "Brasília",
            "Kenya": "Nairobi",
            "Norway": "Oslo",
            "Peru": "Lima",
            "Germany": "Berlin",
            "India": "New Delhi",
            "Argentina": "Buenos Aires",
            "Portugal": "Lisbon",
            "Greece": "Athens",
            "Thailand": "Bangkok",
            "Poland": "Warsaw",
            "Mexico": "Mexico City",
            "Turkey": "Ankara",
            "Sweden": "Stockholm",
            "Ireland": "Dublin",
            "Chile": "Santiago",
            "Vietnam": "Hanoi",
            "Nigeria": "Abuja",
            "Cuba": "Havana",
        },
    ),
    "physics": (
        "What is the SI unit of {}?",
        {
            "force": "newton",
            "energy": "joule",
            "power": "watt",
            "electric charge": "coulomb",
            "electric current": "ampere",
            "pressure": "pascal",
            "frequency": "hertz",
            "temperature": "kelvin",
            "mass": "kilogram",
            "length": "metre",
            "electric resistance": "ohm",
            "voltage": "volt",
        },
    ),
    "biology": (
        "Which group of animals does the {} belong to?",
        {
            "dolphin": "mammal",
            "bat": "mammal",
            "whale": "mammal",
            "penguin": "bird",
            "ostrich": "bird",
            "eagle": "bird",
            "crocodile": "reptile",
            "turtle": "reptile",
            "snake": "reptile",
            "frog": "amphibian",
            "salamander": "amphibian",
            "newt": "amphibian",
            "shark": "fish",
            "salmon": "fish",
            "tuna": "fish",
            "beetle": "insect",
            "ant": "insect",
            "butterfly": "insect",
        },
    ),
    "geometry": (
        "How many sides does a {} have?",
        {
            "triangle": "3",
            "square": "4",
            "pentagon": "5",
            "hexagon": "6",
            "heptagon": "7",
            "octagon": "8",
            "nonagon": "9",
            "decagon": "10",
            "dodecagon": "12",
        },
    ),
    "astronomy": (
        "Which planet is the {} planet from the Sun?",
        {
            "first": "Mercury",
            "second": "Venus",
            "third": "Earth",
            "fourth": "Mars",
            "fifth": "Jupiter",
            "sixth": "Saturn",
            "seventh": "Uranus",
            "eighth": "Neptune",
        },
    ),
    "calendar": (
        "Which month comes right after {}?",
        {
            "January": "February",
            "February": "March",
            "March": "April",
            "April": "May",
            "May": "June",
            "June": "July",
            "July": "August",
            "August": "September",
            "September": "October",
            "October": "November",
            "November": "December",
            "December": "January",
        },
    ),
    "language": (
        "What is the opposite of the word '{}'?",
        {
            "hot": "cold",
            "early": "late",
            "full": "empty",
            "heavy": "light",
            "ancient": "modern",
            "rough": "smooth",
            "generous": "stingy",
            "shallow": "deep",
            "narrow": "wide",
            "victory": "defeat",
            "arrive": "depart",
            "expand": "contract",
            "accept": "refuse",
            "rare": "common",
            "ascend": "descend",
            "scarce": "abundant",
            "visible": "invisible",
            "brave": "cowardly",
        },
    ),
    "anatomy": (
        "Which organ {}?",
        {
            "pumps blood around the body": "heart",
            "exchanges oxygen and carbon dioxide with the air": "lungs",
            "filters the blood to make urine": "kidneys",
            "produces bile": "liver",
            "controls thought and movement": "brain",
            "absorbs most nutrients from digested food": "small intestine",
            "detects light": "eye",
        },
    ),
}


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice question; ``answer`` indexes ``choices``."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    topic: str = ""


def generate_mc_items(n: int = 120, seed: int = ITEM_SEED) -> list[MCItem]:
    """``n`` distinct questions from the fact tables, four choices each, shuffled with ``seed``."""
    rng = random.Random(seed)
    pool = [(topic, subject) for topic, (_, table) in sorted(_FACTS.items()) for subject in table]
    rng.shuffle(pool)
    if n > len(pool):
        raise UsageError(f"general-mc: at most {len(pool)} generated items, asked for {n}")
    items = []
    for i, (topic, subject) in enumerate(pool[:n]):
        template, table = _FACTS[topic]
        answer = table[subject]
        others = sorted({v for v in table.values() if v != answer})
        choices = [answer, *rng.sample(others, 3)]
        rng.shuffle(choices)
        items.append(
            MCItem(f"mc-{i:03d}", template.format(subject), tuple(choices), choices.index(answer), topic)
        )
    return items


def load_mc_jsonl(path: str | Path) -> list[MCItem]:
    """Multiple-choice items from a local JSONL file (format in the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(path, None, f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, number, f"invalid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(path, number, "expected a JSON object")
        question, choices, answer = obj.get("question"), obj.get("choices"), obj.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise DataError(path, number, "'question' must be a non-empty string")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise DataError(path, number, "'choices' must be a list of at least two non-empty strings")
        index = _answer_index(answer, choices)
        if index is None:
            raise DataError(path, number, f"'answer' {answer!r} is not an index, letter or choice")
        items.append(MCItem(str(obj.get("id", f"line-{number}")), question, tuple(choices), index))
    if not items:
        raise DataError(path, None, "no items (empty prompt set)")
    return items


def write_mc_jsonl(path: str | Path, items: Sequence[MCItem]) -> Path:
    """``items`` in the JSONL format :func:`load_mc_jsonl` reads (``answer`` as a 0-based index)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            record = {"id": item.id, "question": item.question, "choices": list(item.choices)}
            handle.write(json.dumps({**record, "answer": item.answer}) + "\n")
    return path


def _answer_index(answer: object, choices: list[str]) -> int | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer if 0 <= answer < len(choices) else None
    if isinstance(answer, str):
        if answer in choices:
            return choices.index(answer)
        letter = answer.strip().upper()
        if len(letter) == 1 and 0 <= ord(letter) - ord("A") < len(choices):
            return ord(letter) - ord("A")
    return None


def run_mc(backend: ModelBackend, items: Sequence[MCItem]) -> tuple[dict[str, float], list[ItemResult]]:
    """Score every choice by log-likelihood; ``acc`` and ``acc_norm`` (see the module docstring)."""
    if not items:
        raise UsageError("general-mc: no items (empty prompt set)")
    requests = []
    for item in items:
        conversation = [{"role": "user", "content": MC_PROMPT.format(question=item.question)}]
        requests += [(conversation, choice) for choice in item.choices]
    logprobs = backend.loglikelihood(requests)
    results, correct, correct_norm, at = [], 0, 0, 0
    for item in items:
        scores = logprobs[at : at + len(item.choices)]
        at += len(item.choices)
        pick = max(range(len(scores)), key=scores.__getitem__)
        normed = [s / max(1, len(c)) for s, c in zip(scores, item.choices, strict=True)]
        pick_norm = max(range(len(normed)), key=normed.__getitem__)
        correct += pick == item.answer
        correct_norm += pick_norm == item.answer
        results.append(
            ItemResult(
                id=item.id,
                prompt=item.question,
                completion=item.choices[pick],
                verdict="correct" if pick == item.answer else "wrong",
                score=float(pick == item.answer),
                reason=f"picked {pick} ({item.choices[pick]!r}), answer {item.answer} "
                f"({item.choices[item.answer]!r})",
                meta={"task": "mc", "choices": list(item.choices), "logprobs": scores, "topic": item.topic},
            )
        )
    return {"acc": correct / len(items), "acc_norm": correct_norm / len(items)}, results


# --------------------------------------------------------------------------------------------------------
# Math word problems

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_ANSWER_PATTERNS = (
    re.compile(rf"####\s*({_NUMBER})"),
    re.compile(rf"\\boxed\{{\s*({_NUMBER})"),
    re.compile(rf"answer\s*(?:is|:|=)\s*[:=]?\s*\**\s*({_NUMBER})", re.IGNORECASE),
)


@dataclass(frozen=True)
class MathItem:
    id: str
    question: str
    answer: str


def normalize_number(text: str) -> float | None:
    """``"$1,234.50"`` → 1234.5; None when it is not a number."""
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def extract_answer(completion: str) -> str | None:
    """The final numeric answer of a chain of thought.

    In order of trust: ``#### N`` (GSM8K style), ``\\boxed{N}``, "the answer is N" / "answer: N" (the last
    such phrase wins), else the last number in the text. Returned as written (commas, ``$`` kept); compare
    with :func:`normalize_number`.
    """
    for pattern in _ANSWER_PATTERNS:
        found = pattern.findall(completion)
        if found:
            return found[-1].strip()
    numbers = re.findall(_NUMBER, completion)
    return numbers[-1].strip() if numbers else None


def answers_match(predicted: str | None, gold: str) -> bool:
    """Numeric equality up to 1e-6 relative error (``"1,000.0"`` matches ``"1000"``)."""
    if predicted is None:
        return False
    p, g = normalize_number(predicted), normalize_number(gold)
    return p is not None and g is not None and math.isclose(p, g, rel_tol=1e-6, abs_tol=1e-9)


def generate_math_items(n: int = 100, seed: int = ITEM_SEED) -> list[MathItem]:
    """``n`` problems from reasoning-gym's ``gsm_symbolic`` generator with ``seed`` (deterministic)."""
    try:
        import reasoning_gym
    except ImportError:
        raise UsageError("general-gsm needs the reasoning-gym package (pip install reasoning-gym)") from None
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    return [MathItem(f"gsm-{i:03d}", str(x["question"]), str(x["answer"])) for i, x in enumerate(dataset)]


def run_math(
    backend: ModelBackend, items: Sequence[MathItem], max_new_tokens: int
) -> tuple[dict[str, float], list[ItemResult]]:
    if not items:
        raise UsageError("general-gsm: no items (empty prompt set)")
    conversations = [[{"role": "user", "content": GSM_PROMPT.format(question=i.question)}] for i in items]
    completions = backend.generate(conversations, GenerationParams(max_new_tokens=max_new_tokens))
    results, correct = [], 0
    for item, outs in zip(items, completions, strict=True):
        predicted = extract_answer(outs[0])
        ok = answers_match(predicted, item.answer)
        correct += ok
        results.append(
            ItemResult(
                id=item.id,
                prompt=item.question,
                completion=outs[0],
                verdict="correct" if ok else "wrong",
                score=float(ok),
                reason=f"extracted {predicted!r}, expected {item.answer!r}",
                meta={"task": "gsm", "extracted": predicted, "answer": item.answer},
            )
        )
    return {"accuracy": correct / len(items)}, results


# --------------------------------------------------------------------------------------------------------
# Instruction following

_TOPICS = (
    "how a bicycle stays upright",
    "why leaves change colour in autumn",
    "the water cycle",
    "how to brew a cup of tea",
    "what makes a good neighbour",
    "how bees make honey",
    "why the sky looks blue",
    "the history of the postal service",
    "how to plan a small garden",
    "what a library offers a town",
    "how trains changed travel",
    "why sleep matters",
    "how to care for a houseplant",
    "what volcanoes are",
    "how a compass works",
    "the benefits of walking",
    "how bread rises",
    "why people keep diaries",
    "how lighthouses guide ships",
    "what makes a story memorable",
)
_TASKS = ("Write a short text about {}.", "Explain {} to a curious twelve-year-old.", "Describe {}.")
_KEYWORDS = ("simple", "morning", "careful", "journey", "bright", "patience", "history", "small")
_BANNED = ("very", "really", "thing", "just", "also")
_ENDINGS = ("that is all.", "thank you for reading.", "the end.")
_STARTS = ("Today", "Imagine", "First", "Honestly")


@dataclass(frozen=True)
class Constraint:
    """A checkable instruction; ``slots`` name what it constrains, so two in one prompt never conflict."""

    kind: str
    instruction: str
    check: Callable[[str], bool] = field(compare=False)  # the instruction text already determines it
    slots: frozenset[str] = frozenset()


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _strip_fences(text: str) -> str:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return fenced.group(1) if fenced else text


def _is_json(text: str) -> bool:
    try:
        json.loads(_strip_fences(text))
    except json.JSONDecodeError:
        return False
    return True


def _bullets(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r"\s*[-*] \S", line))


def _paragraphs(text: str) -> int:
    return sum(1 for block in re.split(r"\n\s*\n", text.strip()) if block.strip())


def _first_word(text: str) -> str:
    words = _words(text.lstrip(" \"'*#"))
    return words[0] if words else ""


def _constraint_menu(rng: random.Random) -> list[Constraint]:
    """One instance of every constraint kind, parameters drawn from ``rng``."""
    n_words_max = rng.choice((25, 40, 60))
    n_words_min = rng.choice((30, 50, 80))
    keyword, banned = rng.choice(_KEYWORDS), rng.choice(_BANNED)
    ending, start = rng.choice(_ENDINGS), rng.choice(_STARTS)
    n_bullets, n_paragraphs = rng.choice((2, 3, 4)), rng.choice((2, 3))
    s = frozenset
    return [
        Constraint(
            "lowercase",
            "Write everything in lowercase letters; do not use any capital letters.",
            lambda t: t == t.lower() and any(c.isalpha() for c in t),
            s({"case"}),
        ),
        Constraint(
            "uppercase",
            "Write your entire answer in capital letters.",
            lambda t: t == t.upper() and any(c.isalpha() for c in t),
            s({"case", "start", "end"}),
        ),
        Constraint(
            "max_words",
            f"Use fewer than {n_words_max} words.",
            lambda t: 0 < len(_words(t)) < n_words_max,
            s({"length"}),
        ),
        Constraint(
            "min_words",
            f"Use at least {n_words_min} words.",
            lambda t: len(_words(t)) >= n_words_min,
            s({"length"}),
        ),
        Constraint(
            "include_keyword", f"Include the word '{keyword}'.", lambda t: _has_word(t, keyword), s({"kw"})
        ),
        Constraint(
            "exclude_word", f"Do not use the word '{banned}'.", lambda t: not _has_word(t, banned), s({"ban"})
        ),
        Constraint(
            "end_phrase",
            f"End your answer with the exact phrase '{ending}'",
            lambda t: t.rstrip().endswith(ending),
            s({"end", "form"}),
        ),
        Constraint(
            "start_word",
            f"Begin your answer with the word '{start}'.",
            lambda t: _first_word(t).lower() == start.lower(),
            s({"start", "form"}),
        ),
        Constraint(
            "bullets",
            f"Answer with exactly {n_bullets} bullet points, each line starting with '- '.",
            lambda t: _bullets(t) == n_bullets,
            s({"form", "start", "end"}),
        ),
        Constraint(
            "paragraphs",
            f"Write exactly {n_paragraphs} paragraphs separated by a blank line.",
            lambda t: _paragraphs(t) == n_paragraphs,
            s({"form"}),
        ),
        Constraint("no_commas", "Do not use any commas.", lambda t: "," not in t, s({"punct"})),
        Constraint(
            "quoted",
            "Wrap your whole answer in double quotation marks.",
            lambda t: len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"',
            s({"start", "end", "form"}),
        ),
        Constraint(
            "json",
            "Give your whole answer as valid JSON.",
            _is_json,
            s({"form", "start", "end", "punct", "case"}),
        ),
        Constraint(
            "title",
            "Give your answer a title wrapped in double angular brackets, such as <<my title>>.",
            lambda t: re.search(r"<<[^<>\n]+>>", t) is not None,
            s({"title"}),
        ),
    ]


@dataclass(frozen=True)
class InstructionItem:
    id: str
    prompt: str
    constraints: tuple[Constraint, ...]


def generate_instruction_items(n: int = 60, seed: int = ITEM_SEED) -> list[InstructionItem]:
    """``n`` prompts: a topic task plus one constraint (every other item: two compatible ones)."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        menu = _constraint_menu(rng)
        first = rng.choice(menu)
        chosen = [first]
        if i % 2:
            compatible = [c for c in menu if not (c.slots & first.slots)]
            chosen.append(rng.choice(compatible))
        task = rng.choice(_TASKS).format(rng.choice(_TOPICS))
        prompt = " ".join([task, *(c.instruction for c in chosen)])
        items.append(InstructionItem(f"if-{i:03d}", prompt, tuple(chosen)))
    return items


def run_instructions(
    backend: ModelBackend, items: Sequence[InstructionItem], max_new_tokens: int
) -> tuple[dict[str, float], list[ItemResult]]:
    if not items:
        raise UsageError("general-if: no items (empty prompt set)")
    conversations = [[{"role": "user", "content": item.prompt}] for item in items]
    completions = backend.generate(conversations, GenerationParams(max_new_tokens=max_new_tokens))
    results, prompt_ok, followed, total = [], 0, 0, 0
    for item, outs in zip(items, completions, strict=True):
        checks = {c.kind: c.check(outs[0]) for c in item.constraints}
        ok = all(checks.values())
        prompt_ok += ok
        followed += sum(checks.values())
        total += len(checks)
        failed = [kind for kind, passed in checks.items() if not passed]
        results.append(
            ItemResult(
                id=item.id,
                prompt=item.prompt,
                completion=outs[0],
                verdict="followed" if ok else "not_followed",
                score=float(ok),
                reason="all constraints met" if ok else "failed: " + ", ".join(failed),
                meta={"task": "ifeval", "constraints": checks},
            )
        )
    return {"prompt_acc": prompt_ok / len(items), "instruction_acc": followed / total}, results


# --------------------------------------------------------------------------------------------------------
# Suites

TASK_NAMES: tuple[str, ...] = ("mc", "gsm", "ifeval")
_HEADLINE = {"mc": "acc", "gsm": "accuracy", "ifeval": "prompt_acc"}


class GeneralSuite(Suite):
    """Any subset of the three general tasks; ``score`` is the mean of their headline metrics.

    Items are built (or read) here, so a bad option or file fails before any model is loaded. ``limit``
    applies to each task separately.
    """

    name = "general"

    def __init__(
        self,
        tasks: Sequence[str] = TASK_NAMES,
        *,
        mc_items: int = 100,
        mc_path: str | Path | None = None,
        gsm_items: int = 100,
        if_items: int = 60,
        max_new_tokens: int = 256,
    ) -> None:
        unknown = sorted(set(tasks) - set(TASK_NAMES))
        if unknown or not tasks:
            raise UsageError(
                f"general: unknown tasks {unknown or list(tasks)}; choose from {', '.join(TASK_NAMES)}"
            )
        if min(mc_items, gsm_items, if_items) < 1 or max_new_tokens < 1:
            raise UsageError("general: item counts and max_new_tokens must be ≥ 1")
        self.tasks = tuple(tasks)
        self.mc_path = mc_path
        self.max_new_tokens = max_new_tokens
        self.mc: list[MCItem] = []
        self.math: list[MathItem] = []
        self.instructions: list[InstructionItem] = []
        if "mc" in self.tasks:
            self.mc = load_mc_jsonl(mc_path) if mc_path else generate_mc_items(mc_items)
        if "gsm" in self.tasks:
            self.math = generate_math_items(gsm_items)
        if "ifeval" in self.tasks:
            self.instructions = generate_instruction_items(if_items)

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        metrics: dict[str, float] = {}
        components: dict[str, float] = {}
        sizes: dict[str, int] = {}
        items: list[ItemResult] = []
        for task in self.tasks:
            if task == "mc":
                chosen_mc = select_items(self.mc, limit, seed)
                task_metrics, task_items = run_mc(backend, chosen_mc)
            elif task == "gsm":
                chosen_math = select_items(self.math, limit, seed)
                task_metrics, task_items = run_math(backend, chosen_math, self.max_new_tokens)
            else:
                chosen_if = select_items(self.instructions, limit, seed)
                task_metrics, task_items = run_instructions(backend, chosen_if, self.max_new_tokens)
            sizes[task] = len(task_items)
            metrics.update({f"{task}_{k}": v for k, v in task_metrics.items()})
            components[task] = task_metrics[_HEADLINE[task]]
            items += task_items
        metrics["score"] = sum(components.values()) / len(components)
        meta = {
            "category": "general",
            "components": components,
            "n_items": sizes,
            "item_seed": ITEM_SEED,
            "mc_source": str(self.mc_path) if self.mc_path else "generated",
            "limit": limit,
            "seed": seed,
        }
        return SuiteResult(self.name, metrics, items, meta)


register_suite("general", category="general")(GeneralSuite)


SINGLE_TASK_SUITES: dict[str, str] = {"general-mc": "mc", "general-gsm": "gsm", "general-if": "ifeval"}


def _single(name: str, task: str) -> Callable[..., GeneralSuite]:
    def factory(**options: object) -> GeneralSuite:
        suite = GeneralSuite((task,), **options)  # type: ignore[arg-type]
        suite.name = name
        return suite

    return factory


for _name, _task in SINGLE_TASK_SUITES.items():
    register_suite(_name, category="general")(_single(_name, _task))
