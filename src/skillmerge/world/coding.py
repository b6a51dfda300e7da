"""The CODING skill: write a tiny Python function whose canonical text is the answer.

Prompt: "Write a Python function named add_three that takes a number x and returns x plus 3."
Answer, exactly::

    def add_three(x):
        return x + 3

Records carry ``entry_point`` (the function name) and ``tests`` (3–5 ``assert`` lines computed from a
reference implementation), so a completion can also be executed. Every family's names and parameter names
are split between train, validation and test by the seed (:func:`make_plan`): a test function never shares
its name with a train function, nor (until a split has used up its own) its family's parameter names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

NUMBER_WORDS: dict[int, str] = {
    2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
    11: "eleven", 12: "twelve",
}  # fmt: skip
LETTERS: tuple[str, ...] = ("a", "e", "i", "o", "s", "t", "r")
WORDS: tuple[str, ...] = (
    "banana", "tree", "rose", "sister", "moon", "potato", "tomato", "river", "cat", "letter", "pizza",
    "orbit", "seven", "street", "artist", "idea", "stone", "tiger", "radio", "sauce",
)  # fmt: skip
SPLIT_SHARES: tuple[tuple[str, float], ...] = (("test", 0.2), ("validation", 0.1))

Item = tuple[str, str, str, dict]
Inputs = Callable[[random.Random], tuple[Any, ...]]


def _num(rng: random.Random) -> tuple[int]:
    return (rng.randint(-20, 50),)


def _pos(rng: random.Random) -> tuple[int]:
    return (rng.randint(0, 60),)


def _pair(rng: random.Random) -> tuple[int, int]:
    return rng.randint(-20, 50), rng.randint(-20, 50)


def _ints(rng: random.Random) -> tuple[list[int]]:
    return ([rng.randint(-20, 50) for _ in range(rng.randint(2, 5))],)


def _word(rng: random.Random) -> tuple[str]:
    return (rng.choice(WORDS),)


@dataclass(frozen=True, slots=True)
class Family:
    """A kind of function. ``names``/``does``/``body`` are formats over ``{k}`` (a number or a letter),
    ``{w}`` (its word, e.g. ``three``) and the parameter names ``{p}`` (or ``{a}``, ``{b}``)."""

    key: str
    names: tuple[str, ...]
    params: tuple[tuple[str, ...], ...]
    does: tuple[str, ...]
    body: str
    reference: Callable[..., Callable[..., Any]]  # k -> reference implementation
    inputs: Inputs
    ks: tuple[Any, ...] = (None,)


def _k_words(k: Any) -> str:
    return NUMBER_WORDS.get(k, str(k))


_X = (("x",), ("n",), ("num",), ("value",), ("number",), ("y",))
_XS = (("xs",), ("nums",), ("values",), ("items",), ("numbers",), ("data",))
_S = (("s",), ("text",), ("word",), ("string",), ("name",), ("phrase",))
_AB = (("a", "b"), ("x", "y"), ("m", "n"), ("p", "q"), ("first", "second"), ("left", "right"))
_NUMS = tuple(NUMBER_WORDS)

FAMILIES: tuple[Family, ...] = (
    Family(
        "add", ("add_{w}", "plus_{w}", "increase_by_{w}"), _X,
        ("takes a number {p} and returns {p} plus {k}", "returns {p} increased by {k}",
         "adds {k} to a number {p} and returns the result"),
        "return {p} + {k}", lambda k: lambda x: x + k, _num, _NUMS,
    ),
    Family(
        "subtract", ("subtract_{w}", "minus_{w}", "decrease_by_{w}"), _X,
        ("takes a number {p} and returns {p} minus {k}", "returns {p} decreased by {k}",
         "subtracts {k} from a number {p} and returns the result"),
        "return {p} - {k}", lambda k: lambda x: x - k, _num, _NUMS,
    ),
    Family(
        "multiply", ("multiply_by_{w}", "times_{w}", "scale_by_{w}"), _X,
        ("takes a number {p} and returns {p} times {k}", "returns {p} multiplied by {k}",
         "multiplies a number {p} by {k} and returns the result"),
        "return {p} * {k}", lambda k: lambda x: x * k, _num, _NUMS,
    ),
    Family(
        "divisible", ("is_divisible_by_{w}", "divisible_by_{w}", "is_multiple_of_{w}"), _X,
        ("returns True if the number {p} is divisible by {k} and False otherwise",
         "checks whether {p} is a multiple of {k}", "tells whether {k} divides the number {p} exactly"),
        "return {p} % {k} == 0", lambda k: lambda x: x % k == 0, _pos, _NUMS,
    ),
    Family(
        "repeat", ("repeat_{w}_times", "echo_{w}_times", "copies_{w}"), _S,
        ("returns the string {p} repeated {k} times",
         "takes a string {p} and returns {k} copies of it joined",
         "repeats the text {p} {k} times"),
        "return {p} * {k}", lambda k: lambda s: s * k, _word, (2, 3, 4, 5),
    ),
    Family(
        "count_letter", ("count_letter_{k}", "count_{k}", "number_of_{k}s"), _S,
        ("returns how many times the letter '{k}' appears in the string {p}",
         "counts the letter '{k}' in {p}", "takes a string {p} and counts its '{k}' characters"),
        "return {p}.count('{k}')", lambda k: lambda s: s.count(k), _word, LETTERS,
    ),
    Family(
        "is_even", ("is_even", "check_even", "even_test", "number_is_even", "is_even_number"), _X,
        ("returns True if the number {p} is even and False otherwise", "checks whether {p} is even",
         "tells whether the integer {p} is even"),
        "return {p} % 2 == 0", lambda k: lambda x: x % 2 == 0, _num,
    ),
    Family(
        "is_odd", ("is_odd", "check_odd", "odd_test", "number_is_odd", "is_odd_number"), _X,
        ("returns True if the number {p} is odd and False otherwise", "checks whether {p} is odd",
         "tells whether the integer {p} is odd"),
        "return {p} % 2 == 1", lambda k: lambda x: x % 2 == 1, _num,
    ),
    Family(
        "square", ("square", "square_number", "squared", "get_square", "square_of"), _X,
        ("returns the square of the number {p}", "takes a number {p} and returns {p} times itself",
         "computes {p} squared"),
        "return {p} * {p}", lambda k: lambda x: x * x, _num,
    ),
    Family(
        "cube", ("cube", "cube_number", "cubed", "get_cube", "cube_of"), _X,
        ("returns the cube of the number {p}", "returns {p} to the power of three", "computes {p} cubed"),
        "return {p} ** 3", lambda k: lambda x: x**3, _num,
    ),
    Family(
        "negate", ("negate", "flip_sign", "negative_of", "opposite", "minus_itself"), _X,
        ("returns the number {p} with its sign flipped", "returns the negative of {p}",
         "takes a number {p} and returns minus {p}"),
        "return -{p}", lambda k: lambda x: -x, _num,
    ),
    Family(
        "maximum", ("maximum", "list_max", "largest", "biggest_item", "max_of_list"), _XS,
        ("returns the largest number in the list {p}", "finds the maximum of a list of numbers {p}",
         "takes a list {p} and returns its biggest element"),
        "return max({p})", lambda k: max, _ints,
    ),
    Family(
        "minimum", ("minimum", "list_min", "smallest", "tiniest_item", "min_of_list"), _XS,
        ("returns the smallest number in the list {p}", "finds the minimum of a list of numbers {p}",
         "takes a list {p} and returns its smallest element"),
        "return min({p})", lambda k: min, _ints,
    ),
    Family(
        "total", ("total", "list_sum", "sum_all", "add_all", "sum_of_list"), _XS,
        ("returns the sum of the numbers in the list {p}", "adds up every number in {p}",
         "takes a list {p} and returns the total of its elements"),
        "return sum({p})", lambda k: sum, _ints,
    ),
    Family(
        "first_item", ("first_item", "head", "get_first", "front", "first_element"), _XS,
        ("returns the first element of the list {p}", "takes a non-empty list {p} and returns its first item",
         "gives back the item at the start of {p}"),
        "return {p}[0]", lambda k: lambda xs: xs[0], _ints,
    ),
    Family(
        "last_item", ("last_item", "get_last", "tail_item", "back", "last_element"), _XS,
        ("returns the last element of the list {p}", "takes a non-empty list {p} and returns its last item",
         "gives back the item at the end of {p}"),
        "return {p}[-1]", lambda k: lambda xs: xs[-1], _ints,
    ),
    Family(
        "list_length", ("list_length", "count_items", "size_of", "how_many", "item_count"), _XS,
        ("returns how many elements the list {p} has", "returns the length of the list {p}",
         "counts the items in {p}"),
        "return len({p})", lambda k: len, _ints,
    ),
    Family(
        "reverse_text", ("reverse_string", "backwards", "flip_text", "reverse_word", "mirror_text"), _S,
        ("returns the string {p} reversed", "takes a string {p} and returns it backwards",
         "reverses the characters of {p}"),
        "return {p}[::-1]", lambda k: lambda s: s[::-1], _word,
    ),
    Family(
        "first_char", ("first_char", "first_letter", "initial", "get_initial", "opening_char"), _S,
        ("returns the first character of the string {p}",
         "takes a non-empty string {p} and returns its first letter",
         "gives back the character at the start of {p}"),
        "return {p}[0]", lambda k: lambda s: s[0], _word,
    ),
    Family(
        "last_char", ("last_char", "last_letter", "final_letter", "end_char", "closing_char"), _S,
        ("returns the last character of the string {p}",
         "takes a non-empty string {p} and returns its last letter",
         "gives back the character at the end of {p}"),
        "return {p}[-1]", lambda k: lambda s: s[-1], _word,
    ),
    Family(
        "upper", ("shout", "to_upper", "upper_case", "make_loud", "capitals"), _S,
        ("returns the string {p} in upper case", "converts the text {p} to capital letters",
         "takes a string {p} and returns it uppercased"),
        "return {p}.upper()", lambda k: lambda s: s.upper(), _word,
    ),
    Family(
        "text_length", ("text_length", "str_len", "count_chars", "char_count", "length_of_text"), _S,
        ("returns the number of characters in the string {p}", "returns the length of the text {p}",
         "counts the characters of {p}"),
        "return len({p})", lambda k: len, _word,
    ),
    Family(
        "abs_diff", ("abs_diff", "absolute_difference", "distance", "gap", "how_far_apart"), _AB,
        ("returns the absolute difference between the numbers {a} and {b}",
         "takes two numbers {a} and {b} and returns how far apart they are",
         "returns the distance between {a} and {b} on the number line"),
        "return abs({a} - {b})", lambda k: lambda a, b: abs(a - b), _pair,
    ),
    Family(
        "larger", ("larger", "bigger", "max_of_two", "pick_larger", "greater_one"), _AB,
        ("returns the larger of the two numbers {a} and {b}",
         "takes two numbers {a} and {b} and returns the bigger one",
         "returns whichever of {a} and {b} is greater"),
        "return max({a}, {b})", lambda k: lambda a, b: max(a, b), _pair,
    ),
    Family(
        "add_two_numbers", ("add_numbers", "sum_two", "plus", "add_pair", "combine"), _AB,
        ("returns the sum of the two numbers {a} and {b}", "takes two numbers {a} and {b} and adds them",
         "returns {a} plus {b}"),
        "return {a} + {b}", lambda k: lambda a, b: a + b, _pair,
    ),
)  # fmt: skip


def _fields(family: Family, k: Any, params: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {"k": k, "w": _k_words(k)}
    if len(params) == 1:
        fields["p"] = params[0]
    else:
        fields["a"], fields["b"] = params
    return fields


def canonical_code(name: str, params: tuple[str, ...], body: str) -> str:
    """The exact answer text: a one-line-body function, four-space indent, no trailing newline."""
    return f"def {name}({', '.join(params)}):\n    {body}"


def make_tests(name: str, fn: Callable[..., Any], inputs: Inputs, rng: random.Random) -> list[str]:
    """3–5 distinct ``assert name(args) == expected`` lines with expectations from the reference ``fn``."""
    want = rng.randint(3, 5)
    calls: dict[str, str] = {}
    for _ in range(50):
        args = inputs(rng)
        call = f"{name}({', '.join(map(repr, args))})"
        calls.setdefault(call, repr(fn(*args)))
        if len(calls) == want:
            break
    return [f"assert {call} == {expected}" for call, expected in calls.items()]


@dataclass(frozen=True, slots=True)
class CodingPlan:
    """Per family: which function names and parameter tuples each split may use (disjoint where possible)."""

    names: dict[str, dict[str, tuple[str, ...]]]  # family key -> split -> names
    params: dict[str, dict[str, tuple[tuple[str, ...], ...]]]

    def to_json(self) -> dict[str, dict[str, list[str]]]:
        return {
            split: sorted(n for by_split in self.names.values() for n in by_split[split])
            for split in ("train", "validation", "test")
        }


def _partition(values: list[Any], rng: random.Random) -> dict[str, tuple[Any, ...]]:
    """Shuffle and cut: ~20% test, ~10% validation (each at least one), the rest train (at least one)."""
    values = list(values)
    rng.shuffle(values)
    out: dict[str, tuple[Any, ...]] = {}
    start = 0
    for split, share in SPLIT_SHARES:
        take = max(1, round(len(values) * share))
        take = min(take, max(0, len(values) - start - 1))  # keep at least one for train
        out[split] = tuple(values[start : start + take])
        start += take
    out["train"] = tuple(values[start:])
    return out


def _all_names(family: Family) -> list[str]:
    return [n.format(k=k, w=_k_words(k)) for k in family.ks for n in family.names]


def make_plan(rng: random.Random) -> CodingPlan:
    """Partition every family's concrete names and its parameter tuples between the three splits."""
    names = {f.key: _partition(_all_names(f), rng) for f in FAMILIES}
    params = {f.key: _partition(list(f.params), rng) for f in FAMILIES}
    return CodingPlan(names, params)


def _family_candidates(
    family: Family, split: str, plan: CodingPlan, rng: random.Random, *, own_params: bool
) -> list[Item]:
    """Prompts with ``split``'s own names and its own parameter names (or, ``own_params=False``, the rest)."""
    allowed = set(plan.names[family.key][split])
    mine = plan.params[family.key][split]
    param_choices = mine if own_params else tuple(p for p in family.params if p not in mine)
    items: list[Item] = []
    for k in family.ks:
        for name_format in family.names:
            name = name_format.format(k=k, w=_k_words(k))
            if name not in allowed:
                continue
            for params in param_choices:
                fields = _fields(family, k, params)
                code = canonical_code(name, params, family.body.format(**fields))
                for does in family.does:
                    prompt = f"Write a Python function named {name} that {does.format(**fields)}."
                    items.append(
                        ("coding/function", prompt, code, {"entry_point": name, "k": k, "family": family.key})
                    )
    rng.shuffle(items)
    return items


def _round_robin(by_family: dict[str, list[Item]], rng: random.Random) -> Iterator[Item]:
    """One item per family in turn (order reshuffled every round) until every family is spent."""
    order = list(by_family)
    position = dict.fromkeys(order, 0)
    while any(position[key] < len(by_family[key]) for key in order):
        rng.shuffle(order)
        for key in order:
            if position[key] < len(by_family[key]):
                position[key] += 1
                yield by_family[key][position[key] - 1]


def coding_stream(split: str, plan: CodingPlan, rng: random.Random) -> Iterator[Item]:
    """Finite candidates for ``split``, families in turn so every one is represented.

    First prompts whose function name and parameter names both belong to ``split``; once those are spent,
    the split's names with the other parameter names (names stay disjoint between splits either way).
    """
    families = {f.key: f for f in FAMILIES}
    for own_params in (True, False):
        by_family = {f.key: _family_candidates(f, split, plan, rng, own_params=own_params) for f in FAMILIES}
        for source, prompt, code, extra in _round_robin(by_family, rng):
            family = families[extra["family"]]
            tests = make_tests(extra["entry_point"], family.reference(extra["k"]), family.inputs, rng)
            yield source, prompt, code, {"entry_point": extra["entry_point"], "tests": tests}
