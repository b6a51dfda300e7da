"""A vLLM backend, used automatically when ``vllm`` is importable and a GPU is present
(:func:`select_backend`).

Prompts are rendered and tokenized by the same code as the HF backend (chat template from the model
directory, BOS policy of training) and handed to vLLM as token ids, so both backends see identical inputs.
Sampling: vLLM's ``SamplingParams(n, temperature, top_p, stop, max_tokens, seed)``; log-likelihood: one
``prompt_logprobs`` request per (context ⊕ continuation), summing the continuation tokens' log-probabilities.

Not exercised by the test suite (vllm is not installed on the CI machine); the HF backend is the reference.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from skillmerge.errors import ModelError, UsageError
from skillmerge.evaluate.generate import HFBackend, PromptEncoder, end_of_turn_ids, resolve_chat_template
from skillmerge.evaluate.suites.base import Conversation, GenerationParams, ModelBackend


def vllm_available() -> bool:
    """True when vllm can be imported and a CUDA device is present."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class VLLMBackend:
    """:class:`~skillmerge.evaluate.suites.base.ModelBackend` over ``vllm.LLM``."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        template: str | None = None,
        force_template: bool = False,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.85,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise UsageError("the vllm backend needs the vllm package (pip install vllm)") from None
        from transformers import AutoTokenizer

        self._vllm = vllm
        self.source = Path(model_dir)  # the directory it was loaded from (lm-eval's runs read it again)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ModelError(
                f"{model_dir}: cannot load tokenizer ({str(err).strip().splitlines()[0]})"
            ) from None
        chat_template = resolve_chat_template(model_dir, tokenizer, template, force=force_template)
        self.template = chat_template
        self.tokenizer = tokenizer
        self.llm = vllm.LLM(
            model=str(model_dir), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, seed=0
        )
        self.name = f"vllm:{model_dir}"
        self.stop_ids = sorted(end_of_turn_ids(chat_template, tokenizer))
        self._format = PromptEncoder(tokenizer, chat_template)  # the HF backend's rendering, exactly

    def _prompts(self, ids: Sequence[Sequence[int]]) -> list[Any]:
        return [{"prompt_token_ids": list(x)} for x in ids]

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        if not conversations:
            raise UsageError("no prompts to generate from (empty prompt set)")
        sampling = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            stop_token_ids=self.stop_ids,
            seed=params.seed,
            skip_special_tokens=True,
        )
        ids = [self._format.encode(c) for c in conversations]
        outputs = self.llm.generate(self._prompts(ids), sampling, use_tqdm=False)
        return [[choice.text for choice in out.outputs] for out in outputs]

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        if not requests:
            raise UsageError("no requests to score (empty prompt set)")
        sequences, lengths = [], []
        for conversation, continuation in requests:
            cont = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
            sequences.append(self._format.encode(conversation) + cont)
            lengths.append(len(cont))
        sampling = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outputs = self.llm.generate(self._prompts(sequences), sampling, use_tqdm=False)
        scores = []
        for out, ids, n in zip(outputs, sequences, lengths, strict=True):
            # prompt_logprobs[t] maps token ids to Logprob objects for position t (None at t = 0).
            scores.append(sum(out.prompt_logprobs[t][ids[t]].logprob for t in range(len(ids) - n, len(ids))))
        return scores


def select_backend(
    model_dir: str | Path,
    backend: str = "auto",
    *,
    template: str | None = None,
    force_template: bool = False,
    batch_size: int = 16,
) -> ModelBackend:
    """``auto``: vLLM when :func:`vllm_available`, else the HF backend; ``hf`` / ``vllm`` force one."""
    if backend not in ("auto", "hf", "vllm"):
        raise UsageError(f"unknown backend {backend!r}; choose auto, hf or vllm")
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        return VLLMBackend(model_dir, template=template, force_template=force_template)
    return HFBackend.from_dir(
        model_dir, template=template, force_template=force_template, batch_size=batch_size
    )
