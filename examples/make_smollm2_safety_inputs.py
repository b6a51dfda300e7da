"""Inputs of examples/smollm2-safety.yaml: θ_base (SmolLM2-135M-Instruct, from its GGUF) and the data.

Everything is offline and seeded. Written under examples/ (not tracked by git):

    smollm2-models/instruct/              θ_base imported from the GGUF (fp32 safetensors, ChatML template)
    smollm2-data/safety-refusals.jsonl    Do-Not-Answer TRAIN prompts, each with a varied refusal
    smollm2-data/safety-benign.jsonl      benign look-alikes (skillmerge.data.lookalikes, 12 kinds), answered
                                          by θ_base itself; replies judged refusals are dropped
    smollm2-data/safety-separation.jsonl  harmful (Do-Not-Answer VALIDATION) and safe (held-out look-alike)
                                          prompts: the AUROC of p(refusal), never a test prompt
    smollm2-data/general-replay.jsonl     θ_base's answers to general prompts: data.general (θ_G's training
                                          mix and the replay pool)
    smollm2-data/heldout-answers.jsonl    θ_base's answers to other prompts: the perplexity suite's references
    smollm2-data/dna-test/<area>.jsonl    Do-Not-Answer TEST prompts (the safety suite's donotanswer set)
    smollm2-data/inputs.json              sizes, the leakage reports (exact and near-duplicate) and timings

Do-Not-Answer (939 prompts) is split by normalised prompt, stratified by risk area: 150 test, 60 validation,
the rest train. Every training and separation prompt is checked against all evaluation prompts (HarmBench,
XSTest safe and unsafe, Do-Not-Answer test): exact and normalised matches, and near duplicates (word-n-gram
Jaccard ≥ 0.5, histogram in inputs.json) are dropped and counted.

    python examples/make_smollm2_safety_inputs.py [--data-dir ../shared/data] [--per-kind 48]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS, DATA = HERE / "smollm2-models", HERE / "smollm2-data"
SEED = 0
MAX_NEW_TOKENS = 64
HARMFUL_PER_BENIGN = 1.0  # as many refusals as benign answers

GENERAL_TOPICS = [
    "photosynthesis",
    "gravity",
    "the water cycle",
    "inflation",
    "vaccines",
    "compound interest",
    "the internet",
    "recycling",
    "volcanoes",
    "ocean tides",
    "electricity",
    "DNA",
    "the phases of the moon",
    "black holes",
    "cloud computing",
    "supply and demand",
    "the seasons",
    "the immune system",
    "plate tectonics",
    "the stock market",
]
ACTIVITIES = [
    "studying for exams",
    "staying focused at work",
    "learning a new language",
    "saving money",
    "running a first 5k",
    "keeping houseplants alive",
    "writing a cover letter",
    "public speaking",
    "organizing a small apartment",
    "making friends in a new city",
    "taking better notes",
    "traveling on a budget",
    "getting better sleep",
    "starting a journal",
    "learning to draw",
]
POEM_THINGS = [
    "the ocean",
    "autumn leaves",
    "a cup of coffee",
    "the city at night",
    "a lost cat",
    "mountains",
    "friendship",
    "rain on a window",
    "an old library",
    "the first day of spring",
]
PAIRS = [
    ("weather", "climate"),
    ("a virus", "a bacterium"),
    ("a list", "a tuple in Python"),
    ("speed", "velocity"),
    ("an alligator", "a crocodile"),
    ("baking soda", "baking powder"),
    ("a lake", "a pond"),
    ("RAM", "storage"),
    ("a simile", "a metaphor"),
    ("a comet", "an asteroid"),
]
HOW_TOS = [
    "make a cup of green tea",
    "change a flat bicycle tire",
    "reverse a string in Python",
    "plant tomatoes",
    "write a thank-you note",
    "clean a cast-iron pan",
    "fold a paper airplane",
    "make fluffy pancakes",
    "tie a tie",
    "back up the photos on my phone",
    "set up a monthly budget",
    "boil an egg",
]
STORIES = [
    "Cinderella",
    "Romeo and Juliet",
    "The Tortoise and the Hare",
    "Little Red Riding Hood",
    "Jack and the Beanstalk",
    "The Three Little Pigs",
]
LISTS = [
    "fruits rich in vitamin C",
    "countries in South America",
    "musical instruments",
    "renewable energy sources",
    "board games for families",
    "healthy breakfast ideas",
    "indoor hobbies",
    "famous bridges",
]


def general_prompts() -> list[tuple[str, str]]:
    """``(id, prompt)`` pairs of ordinary requests (several phrasings per topic)."""
    prompts: list[tuple[str, str]] = []
    for i, topic in enumerate(GENERAL_TOPICS):
        prompts += [
            (f"explain-{i}", f"Explain {topic} in simple terms."),
            (f"beginner-{i}", f"What should a beginner know about {topic}?"),
            (f"two-sentences-{i}", f"Write two sentences about {topic}."),
        ]
    for i, activity in enumerate(ACTIVITIES):
        prompts += [
            (f"tips-{i}", f"Give me three tips for {activity}."),
            (f"mistakes-{i}", f"What are common mistakes when {activity}?"),
        ]
    prompts += [(f"poem-{i}", f"Write a short poem about {thing}.") for i, thing in enumerate(POEM_THINGS)]
    prompts += [
        (f"diff-{i}", f"What is the difference between {a} and {b}?") for i, (a, b) in enumerate(PAIRS)
    ]
    prompts += [(f"howto-{i}", f"How do I {task}?") for i, task in enumerate(HOW_TOS)]
    prompts += [(f"story-{i}", f"Summarize the story of {story}.") for i, story in enumerate(STORIES)]
    prompts += [(f"list-{i}", f"List five {what}.") for i, what in enumerate(LISTS)]
    return prompts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="offline data folder (default: ../shared/data)")
    parser.add_argument("--per-kind", type=int, default=48, help="benign look-alikes per kind for training")
    parser.add_argument("--val-per-kind", type=int, default=5, help="held-out look-alikes per kind (AUROC)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild the data even if present")
    args = parser.parse_args(argv)

    from skillmerge.data.leakage import find_leaks, find_near_duplicates
    from skillmerge.data.lookalikes import LOOKALIKE_KINDS, lookalike_prompts
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.refusals import refusal_records, split_prompts
    from skillmerge.data.sources import load_prompts
    from skillmerge.data.sources.datadir import default_data_dir
    from skillmerge.evaluate.distill import self_distill
    from skillmerge.evaluate.generate import HFBackend
    from skillmerge.evaluate.judges import RefusalJudge
    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    timings: dict[str, float] = {}
    model_dir = MODELS / "instruct"
    if not model_dir.exists():
        start = time.perf_counter()
        import_gguf(smollm2_gguf_path(), model_dir)
        timings["import_s"] = time.perf_counter() - start
    if (DATA / "inputs.json").exists() and not args.overwrite:
        print(f"{DATA} is ready (pass --overwrite to rebuild)")
        return 0

    dna = load_prompts("donotanswer", data_dir / "donotanswer")
    dna_train, dna_val, dna_test = split_prompts(dna, test=150, validation=60, seed=SEED)
    evaluation = list(dna_test)
    evaluation += load_prompts("harmbench", data_dir / "harmbench")
    evaluation += load_prompts("xstest", data_dir / "xstest")
    eval_prompts = [i.prompt for i in evaluation]

    # Benign look-alikes: drop near duplicates of any test prompt first, then split per kind.
    candidates = lookalike_prompts(seed=SEED)
    near = find_near_duplicates([i.prompt for i in candidates], evaluation)
    near_dropped = set(near.near_indices)
    by_kind: dict[str, list] = {kind: [] for kind in LOOKALIKE_KINDS}
    for n, item in enumerate(candidates):
        if n not in near_dropped:
            by_kind[str(item.category)].append(item)
    val_lookalike, skill_lookalike = [], []
    for items in by_kind.values():
        val_lookalike += items[: args.val_per_kind]
        skill_lookalike += items[args.val_per_kind : args.val_per_kind + args.per_kind]

    general = general_prompts()
    rng = random.Random(SEED)
    rng.shuffle(general)
    heldout, replay = general[:24], general[24:]  # 24 held out for perplexity, the rest the general mix

    start = time.perf_counter()
    backend = HFBackend.from_dir(model_dir, batch_size=16)
    groups = {
        "heldout": heldout,
        "skill": [(i.id, i.prompt) for i in skill_lookalike],
        "replay": replay,
    }
    everything = [pair for pairs in groups.values() for pair in pairs]
    report = self_distill(backend, everything, max_new_tokens=MAX_NEW_TOKENS, source="theta_base")
    timings["self_distill_s"] = time.perf_counter() - start
    answered = {r.id: r for r in report.records}
    distilled = {name: [answered[i] for i, _ in pairs if i in answered] for name, pairs in groups.items()}

    # θ_base sometimes declines a look-alike itself; such an answer would teach refusing a safe prompt.
    judge = RefusalJudge()
    kinds = {i.id: i.category for i in skill_lookalike}
    benign, declined = [], []
    for record in distilled["skill"]:
        verdict = judge.judge(record.prompt, record.messages[-1].content)
        (declined if verdict.verdict == "refuse" else benign).append(record.with_source("benign"))
    n_harmful = round(HARMFUL_PER_BENIGN * len(benign))
    harmful_pool = list(dna_train)
    random.Random(SEED + 1).shuffle(harmful_pool)
    refusals = refusal_records(harmful_pool[:n_harmful], seed=SEED, source="refusal")
    training = {"safety-refusals": refusals, "safety-benign": benign, "general-replay": distilled["replay"]}
    leaks: dict[str, dict] = {}
    for name, records in list(training.items()):
        found = find_leaks(records, eval_prompts)
        near_found = find_near_duplicates([r.prompt for r in records], evaluation)
        leaks[name] = found.to_dict() | {"near_duplicates": near_found.to_dict()}
        dropped = set(found.leaked_train_indices) | set(near_found.near_indices)
        training[name] = [r for i, r in enumerate(records) if i not in dropped]

    separation = [{"id": i.id, "prompt": i.prompt, "label": "unsafe"} for i in dna_val]
    separation += [
        {"id": i.id, "prompt": i.prompt, "label": "safe", "kind": i.category} for i in val_lookalike
    ]
    separation_near = find_near_duplicates([r["prompt"] for r in separation], evaluation)
    separation = [r for n, r in enumerate(separation) if n not in set(separation_near.near_indices)]

    DATA.mkdir(parents=True, exist_ok=True)
    for name, records in training.items():
        write_jsonl(DATA / f"{name}.jsonl", records, overwrite=True)
    write_jsonl(DATA / "heldout-answers.jsonl", distilled["heldout"], overwrite=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in separation]
    (DATA / "safety-separation.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (DATA / "safety-val.jsonl").unlink(missing_ok=True)  # the old layout's validation chats
    test_dir = DATA / "dna-test"
    test_dir.mkdir(exist_ok=True)
    by_area: dict[str, list[str]] = {}
    for item in dna_test:
        by_area.setdefault(item.category or "unknown", []).append(item.prompt)
    for area, prompts in by_area.items():
        lines = [json.dumps({"prompt": p}, ensure_ascii=False) for p in prompts]
        (test_dir / f"{area}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    summary = {
        "seed": SEED,
        "donotanswer": {"train": len(dna_train), "validation": len(dna_val), "test": len(dna_test)},
        "lookalikes": {
            "candidates": len(candidates),
            "near_duplicates_dropped": len(near_dropped),
            "train_prompts": len(skill_lookalike),
            "validation_prompts": len(val_lookalike),
            "answers_judged_refusals_dropped": len(declined),
            "per_kind_train": {
                kind: sum(kinds.get(r.id) == kind for r in training["safety-benign"])
                for kind in LOOKALIKE_KINDS
            },
            "near_duplicate_check": near.to_dict(),
        },
        "records": {name: len(records) for name, records in training.items()}
        | {"safety-separation": len(separation), "heldout-answers": len(distilled["heldout"])},
        "separation_near_duplicates": separation_near.to_dict(),
        "self_distill": {
            "max_new_tokens": MAX_NEW_TOKENS,
            "trimmed": report.trimmed,
            "dropped": report.dropped,
        },
        "leakage": leaks,
        "timings": timings,
    }
    (DATA / "inputs.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    brief = {k: v for k, v in summary.items() if k not in ("leakage", "lookalikes")}
    print(
        json.dumps(
            brief
            | {"lookalikes": {k: v for k, v in summary["lookalikes"].items() if k != "near_duplicate_check"}},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
