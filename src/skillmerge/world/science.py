"""The SCIENCE skill: reading comprehension over short made-up field-guide passages.

A passage of 2–4 sentences describes one invented animal, then asks about one of its attributes::

    The Velorian kestrel is a bird of the Tolmar valley. It weighs 3 kilograms. It lives for 12 years.
    Question: How long does the Velorian kestrel live?          ->  12 years

The answer is always copied from the passage (a number with its unit, a food, a colour or a place), so the
skill is finding the fact rather than knowing it. Entity names are built from an invented stem (``Velorian``)
and a real animal noun; each stem belongs to exactly one split (a seeded hash decides), so no entity seen in
training appears in validation or test, and within a split each stem is used once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

SPLIT_SHARES: tuple[tuple[str, float], ...] = (("test", 0.2), ("validation", 0.1), ("train", 0.7))

ANIMALS: dict[str, tuple[str, ...]] = {
    "bird": ("kestrel", "heron", "finch", "owl", "swift", "plover", "wren"),
    "mammal": ("vole", "otter", "hare", "marten", "shrew", "lynx", "badger"),
    "fish": ("trout", "carp", "eel", "perch", "minnow", "pike"),
    "insect": ("beetle", "moth", "cricket", "mantis", "wasp"),
    "reptile": ("lizard", "gecko", "tortoise", "skink", "viper"),
}
LANDFORMS: tuple[str, ...] = ("valley", "hills", "marshes", "coast", "forest", "plains", "lakes", "cliffs")
FOODS: tuple[str, ...] = (
    "river snails", "wild berries", "small fish", "pine seeds", "tree bark", "water beetles",
    "clover leaves", "marsh grass", "fallen fruit", "tiny shrimp", "moss", "grasshoppers", "acorns",
    "worms", "flower nectar", "mushrooms",
)  # fmt: skip
COLOURS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "brown", "grey", "silver", "orange", "black", "white", "purple",
    "golden",
)  # fmt: skip
MOVES: dict[str, str] = {"bird": "fly", "mammal": "run", "fish": "swim", "insect": "fly", "reptile": "run"}

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kr", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_SUFFIXES = ("rian", "nese", "vian", "dic", "lan", "mor")
_REGION_CODAS = ("", "n", "r", "l", "s")
_REGION_SUFFIXES = ("mar", "dell", "wick", "holt", "mere", "stone")

# attribute -> (fact sentence, question phrasings, answer), formatted with the attribute's values
ATTRIBUTES: tuple[str, ...] = ("weight", "lifespan", "food", "colour", "height", "speed", "habitat")
_QUESTIONS: dict[str, tuple[str, ...]] = {
    "weight": ("How much does the {e} weigh?", "What is the weight of the {e}?"),
    "lifespan": ("How long does the {e} live?", "What is the lifespan of the {e}?"),
    "food": ("What does the {e} eat?", "What food does the {e} eat?"),
    "colour": ("What colour is the {e}?", "What is the colour of the {e}?"),
    "height": ("How tall is the {e}?", "What is the height of the {e}?"),
    "speed": ("How fast can the {e} {move}?", "At what speed can the {e} {move}?"),
    "habitat": ("Where does the {e} live?", "Where is the {e} found?"),
}
_TEMPLATES: tuple[str, ...] = (
    "{p} Question: {q}",
    "Passage: {p} Question: {q}",
    "Read this: {p} Question: {q}",
)
MAX_PROMPT_WORDS = 40
MAX_MISSES = 20_000  # consecutive unusable stems before the stream gives up (the split's stems are spent)


def split_of_stem(stem: str, seed: int) -> str:
    """The split that owns ``stem`` under ``seed``: a stable hash (never Python's salted ``hash``)."""
    digest = hashlib.blake2b(f"{seed}:{stem}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    total = 0.0
    for split, share in SPLIT_SHARES:
        total += share
        if u < total:
            return split
    return SPLIT_SHARES[-1][0]


def _stem(rng: random.Random) -> str:
    parts = [rng.choice(_ONSETS), rng.choice(_VOWELS), rng.choice(_ONSETS), rng.choice(_VOWELS)]
    return ("".join(parts) + rng.choice(_SUFFIXES)).capitalize()


def _region(rng: random.Random) -> str:
    core = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_REGION_CODAS)
    return (core + rng.choice(_REGION_SUFFIXES)).capitalize()


def _facts(category: str, rng: random.Random) -> dict[str, tuple[str, str]]:
    """attribute -> (sentence, answer) for every attribute except habitat (which the header states)."""
    weight_unit = "grams" if category == "insect" else "kilograms"
    weight = rng.randint(2, 90)
    years = rng.randint(2, 60)
    food = rng.choice(FOODS)
    colour = rng.choice(COLOURS)
    height = rng.randint(3, 150)
    speed = rng.randint(2, 80)
    return {
        "weight": (f"It weighs {weight} {weight_unit}.", f"{weight} {weight_unit}"),
        "lifespan": (f"It lives for {years} years.", f"{years} years"),
        "food": (f"It eats {food}.", food),
        "colour": (f"It is {colour} in colour.", colour),
        "height": (f"It stands {height} centimetres tall.", f"{height} centimetres"),
        "speed": (
            f"It can {MOVES[category]} at {speed} kilometres per hour.",
            f"{speed} kilometres per hour",
        ),
    }


def passage_item(stem: str, rng: random.Random) -> tuple[str, str, str, dict]:
    """One ``(source, prompt, answer, extra)`` passage question about the entity named by ``stem``."""
    while True:
        category = rng.choice(sorted(ANIMALS))
        entity = f"{stem} {rng.choice(ANIMALS[category])}"
        place = f"the {_region(rng)} {rng.choice(LANDFORMS)}"
        facts = _facts(category, rng)
        chosen = rng.sample(sorted(facts), rng.randint(1, 3))
        article = "an" if category[0] in "aeiou" else "a"
        sentences = [f"The {entity} is {article} {category} of {place}."] + [facts[a][0] for a in chosen]
        asked = rng.choice([*chosen, "habitat"])
        answer = place if asked == "habitat" else facts[asked][1]
        question = rng.choice(_QUESTIONS[asked]).format(e=entity, move=MOVES[category])
        prompt = rng.choice(_TEMPLATES).format(p=" ".join(sentences), q=question)
        if len(prompt.split()) <= MAX_PROMPT_WORDS:
            return "science/passage", prompt, answer, {}


def science_stream(split: str, seed: int, rng: random.Random) -> Iterator[tuple[str, str, str, dict]]:
    """Passage questions for ``split``, one per stem owned by ``split``; ends only when stems run out."""
    used: set[str] = set()
    misses = 0
    while misses < MAX_MISSES:
        stem = _stem(rng)
        if stem in used or split_of_stem(stem, seed) != split:
            misses += 1
            continue
        misses = 0
        used.add(stem)
        yield passage_item(stem, rng)
