"""Model files: Hugging Face directories with atomic, sharded safetensors writes (``io``, ``shards``),
fingerprints (``fingerprint``), GGUF import (``gguf``), model cards (``card``) and tiny Llama presets with a
trained BPE tokenizer (``tiny``). A foundation stage shared by training, merging and evaluation.
"""
