"""The GENERAL mix: six short-answer task families that a small model can learn and be scored on exactly.

Each family turns a seeded :class:`random.Random` into one ``(prompt, answer)`` pair; the answer is short
and fixed (1–12 tokens), so teacher-forced exact match scores it. Phrasing varies over 3 templates a family.

==========  ============================================================  ==============
family      prompt (one of the templates)                                 answer
==========  ============================================================  ==============
copy        Repeat exactly: river lamp stone door                         river lamp stone door
reverse     Reverse the order of these words: cat sun map                 map sun cat
arithmetic  What is 23 plus 15?                                           38
sort        Sort these numbers from smallest to largest: 5 2 9            2 5 9
count       How many words are in this list: bird cup hat pen?            4
lookup      Facts: kalo is red. mizu is blue. What color is mizu?         blue
==========  ============================================================  ==============
"""

from __future__ import annotations

import random
from collections.abc import Callable

FAMILIES: tuple[str, ...] = ("copy", "reverse", "arithmetic", "sort", "count", "lookup")

WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "lamp", "door", "cat", "dog", "sun", "moon", "tree", "house", "car",
    "book", "pen", "cup", "hat", "bird", "fish", "road", "hill", "rain", "snow", "wind", "fire",
    "milk", "bread", "chair", "table", "glass", "box", "ring", "shoe", "coat", "ship", "boat", "star",
    "cloud", "field", "horse", "clock", "key", "bell", "bag", "map", "seed", "leaf", "rock", "sand",
    "salt", "egg", "wall", "bridge", "garden", "window", "paper", "phone", "light", "water", "song",
    "king", "child", "friend", "night", "day", "city", "farm", "forest", "lake", "sea", "mountain",
    "train", "plane", "coin", "drum", "rope", "nest", "cake", "soup", "corn", "wolf", "bear", "frog",
    "duck", "goat", "lion", "mouse", "owl", "bee", "ant", "fox", "desk", "bed", "spoon", "fork", "plate",
    "shirt", "sock", "gold", "iron", "wood", "silk", "wool", "tea", "jam", "honey", "pear", "plum",
)  # fmt: skip
COLOURS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "pink", "orange", "purple", "grey",
)  # fmt: skip
CITIES: tuple[str, ...] = (
    "Paris", "Rome", "Cairo", "Lima", "Oslo", "Tokyo", "Delhi", "Dublin", "Berlin", "Madrid", "Vienna",
    "Lisbon", "Prague", "Quito", "Seoul", "Nairobi",
)  # fmt: skip
ITEMS: tuple[str, ...] = ("coins", "apples", "books", "cats", "keys", "hats", "shells", "stamps")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def invented_name(rng: random.Random) -> str:
    """A short invented lower-case name such as ``kalo`` or ``mizu`` (two consonant-vowel syllables)."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2))


def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def copy_item(rng: random.Random) -> tuple[str, str]:
    text = " ".join(_words(rng, 2, 8))
    template = rng.choice(("Repeat exactly: {t}", "Say this back word for word: {t}", "Copy this text: {t}"))
    return template.format(t=text), text


def reverse_item(rng: random.Random) -> tuple[str, str]:
    words = _words(rng, 3, 6)
    template = rng.choice(
        (
            "Reverse the order of these words: {t}",
            "Write these words in reverse order: {t}",
            "Say these words backwards, last word first: {t}",
        )
    )
    return template.format(t=" ".join(words)), " ".join(reversed(words))


def arithmetic_item(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 60), rng.randint(0, 60)
    if rng.random() < 0.5:
        template = rng.choice(("What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}."))
        return template.format(a=a, b=b), str(a + b)
    a, b = max(a, b), min(a, b)
    template = rng.choice(("What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}."))
    return template.format(a=a, b=b), str(a - b)


def sort_item(rng: random.Random) -> tuple[str, str]:
    numbers = rng.sample(range(100), rng.randint(3, 6))
    template = rng.choice(
        (
            "Sort these numbers from smallest to largest: {t}",
            "Put these numbers in increasing order: {t}",
            "Arrange in ascending order: {t}",
        )
    )
    return template.format(t=" ".join(map(str, numbers))), " ".join(map(str, sorted(numbers)))


def count_item(rng: random.Random) -> tuple[str, str]:
    words = _words(rng, 2, 9)
    template = rng.choice(
        (
            "How many words are in this list: {t}?",
            "Count the words in this list: {t}",
            "How many items are here: {t}?",
        )
    )
    return template.format(t=" ".join(words)), str(len(words))


def lookup_item(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 4)
    names: list[str] = []
    while len(names) < n:
        name = invented_name(rng)
        if name not in names:
            names.append(name)
    kind = rng.choice(("colour", "city", "count"))
    if kind == "colour":
        values = rng.sample(COLOURS, n)
        facts = [f"{name} is {value}." for name, value in zip(names, values, strict=True)]
        question = rng.choice(("What color is {n}?", "Which color is {n}?"))
    elif kind == "city":
        values = rng.sample(CITIES, n)
        facts = [f"{name} lives in {value}." for name, value in zip(names, values, strict=True)]
        question = rng.choice(("Where does {n} live?", "In which city does {n} live?"))
    else:
        item = rng.choice(ITEMS)
        values = [str(v) for v in rng.sample(range(2, 30), n)]
        facts = [f"{name} has {value} {item}." for name, value in zip(names, values, strict=True)]
        question = "How many " + item + rng.choice((" does {n} have?", " has {n} got?"))
    target = rng.randrange(n)
    lead = rng.choice(("Facts:", "Read the facts.", "Given:"))
    prompt = f"{lead} {' '.join(facts)} {question.format(n=names[target])}"
    return prompt, values[target]


ITEM_MAKERS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "copy": copy_item,
    "reverse": reverse_item,
    "arithmetic": arithmetic_item,
    "sort": sort_item,
    "count": count_item,
    "lookup": lookup_item,
}


def general_item(family: str, rng: random.Random) -> tuple[str, str, str, dict]:
    """One ``(source, prompt, answer, extra)`` item of ``family``; source is ``general/<family>``."""
    prompt, answer = ITEM_MAKERS[family](rng)
    return f"general/{family}", prompt, answer, {}
