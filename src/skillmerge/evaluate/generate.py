"""The Hugging Face backend: batched generation with a KV cache, and log-likelihood scoring.

Prompts are rendered with the chat template the model was trained with (:func:`resolve_chat_template`) and
tokenized exactly as training tokenized its prompt segments (``add_special_tokens=False``, a BOS prepended
only when the tokenizer adds one by default), so evaluation sees the text layout the model learned.

Generation, per batch of prompts (sorted by length, longest first, so a batch holds similar lengths and an
out-of-memory shows up on the first batch):

1. LEFT-pad to the longest prompt; ``position_ids = cumsum(mask) − 1`` so padding does not shift positions
   and every row's last prompt token sits in the last column, where the next token is read.
2. One forward pass over the prompts fills the KV cache; each step then feeds one token per live row.
3. A row finishes on an end-of-turn/EOS token, a stop sequence, or ``max_new_tokens``; finished rows are
   dropped from the batch and the cache (``batch_select_indices``), so long tails do not pay for short ones.

Greedy (temperature 0) picks ``argmax``; sampling draws from ``softmax(logits / T)`` restricted to the
smallest top-p nucleus, with one ``torch.Generator`` per (prompt, sample) seeded from ``(seed, prompt ids,
sample index)``: a sample depends only on its prompt and seed, never on batch size or neighbours.

Log-likelihood: ``log p(c | x) = Σ_t log softmax(f(x ⊕ c_<t))[c_t]`` over the continuation tokens ``c``
(tokenized on their own, as training tokenized answers), in left-padded batches so every continuation ends
in the last column and only the last ``max |c| + 1`` positions need logits. The token prefix that every
context of a call shares (a chat template's system turn: 24 of SmolLM2's ~45 prompt tokens) runs once into
a KV cache that each batch copies, with the padding between it and each row's own tokens; that halves the
world suites' scoring time and changes scores only by float rounding (≤ 1e-4 in log-probability).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from skillmerge.allocator import keep_freed_memory
from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.templates import ChatTemplate, check_tokenizer, get_template, tokenizer_name
from skillmerge.data.tokenize import bos_to_prepend
from skillmerge.errors import TemplateError, UsageError
from skillmerge.evaluate.suites.base import Conversation, GenerationParams
from skillmerge.models.io import MANIFEST_FILE, load_model

# A conversation that exercises system, user and assistant turns: two templates "match" when they render it,
# with the generation prompt, to the same string.
_PROBE: tuple[Message, ...] = (
    Message("user", "Name a colour."),
    Message("assistant", "Blue."),
    Message("user", "Another one?"),
)
_END_PROBE = "Zq7 probe answer"
# Teacher-forced scoring runs a prefix every request shares once, into a KV cache, when it is this long.
MIN_SHARED_PREFIX = 4


# --------------------------------------------------------------------------------------------------------
# Which chat template


def recorded_templates(model_dir: str | Path, _depth: int = 0) -> set[str]:
    """Names of the chat templates a model directory was trained with, from its ``manifest.json``.

    A training run records ``config.data.template``; a merge records its input models, whose manifests are
    followed (the templates of every trained input are collected). Empty when nothing is recorded.
    """
    path = Path(model_dir) / MANIFEST_FILE
    if _depth > 4 or not path.is_file():
        return set()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return set()
    if not isinstance(manifest, dict):
        return set()
    explicit = manifest.get("chat_template_name")
    if isinstance(explicit, str):
        return {explicit}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if manifest.get("kind") == "train" and isinstance(data.get("template"), str):
        return {data["template"]}
    found: set[str] = set()
    inputs = manifest.get("inputs")
    if manifest.get("kind") == "merge" and isinstance(inputs, list):
        for item in inputs:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                found |= recorded_templates(item["path"], _depth + 1)
    return found


def _probe_render(template: ChatTemplate, tokenizer: PreTrainedTokenizerBase) -> str | None:
    try:
        return template.render_prompt(_PROBE, tokenizer)
    except TemplateError:
        return None


def resolve_chat_template(
    model_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    requested: str | None = None,
    *,
    force: bool = False,
) -> ChatTemplate:
    """The template to format prompts with: the one the model was trained with.

    The trained template is read from the manifest (:func:`recorded_templates`), else it is the tokenizer's
    own ``chat_template`` ("model"). A ``requested`` template that renders a probe conversation differently
    from the trained one is refused unless ``force``; with no template recorded, no ``chat_template`` in the
    tokenizer and none requested, there is nothing to format prompts with and that is refused too.
    """
    where = Path(model_dir)
    trained = sorted(recorded_templates(model_dir))
    if not trained and getattr(tokenizer, "chat_template", None):
        trained = ["model"]
    if requested is None:
        if not trained:
            raise TemplateError(
                f"{where}: no chat template (the tokenizer has none and {MANIFEST_FILE} records none); "
                "pass --template chatml|tulu|model"
            )
        if len(trained) > 1:
            raise TemplateError(
                f"{where}: merged from models trained with different chat templates ({', '.join(trained)}); "
                "pass --template to choose one"
            )
        chosen = get_template(trained[0])
    else:
        chosen = get_template(requested)
        if trained and not force:
            rendered = _probe_render(chosen, tokenizer)
            matches = [name for name in trained if _probe_render(get_template(name), tokenizer) == rendered]
            if rendered is None or not matches:
                raise TemplateError(
                    f"{where}: trained with chat template {' / '.join(trained)!s}, asked for {chosen.name!r} "
                    "which renders prompts differently; pass --force-template to use it anyway"
                )
    check_tokenizer(chosen, tokenizer)
    return chosen


def end_of_turn_ids(template: ChatTemplate, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end an answer: EOS plus the template's end-of-turn marker when it is one token.

    The marker is what the template writes after an assistant answer (``<|im_end|>`` for ChatML, EOS for
    Tulu, ``<|eot_id|>`` for a Llama-3 style model template), found by rendering a probe answer.
    """
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    probe = (Message("user", "x"), Message("assistant", _END_PROBE))
    try:
        targets = [text for text, is_target in template.segments(probe, tokenizer) if is_target]
    except TemplateError:
        return ids
    if targets and targets[-1].startswith(_END_PROBE):
        marker = targets[-1][len(_END_PROBE) :].strip()
        marker_ids = tokenizer.encode(marker, add_special_tokens=False) if marker else []
        if len(marker_ids) == 1:
            ids.add(int(marker_ids[0]))
    return ids


# --------------------------------------------------------------------------------------------------------
# The backend


@dataclass(frozen=True)
class MatchResult:
    """Teacher-forced verdict on one continuation (:meth:`HFBackend.greedy_match`).

    ``matched``: greedy decoding reproduces the continuation's tokens (and, with ``stop``, then ends the
    turn); ``logprob``: ``Σ log p`` of the continuation tokens (natural log, as ``loglikelihood``);
    ``first_margin``: logit of the first continuation token minus the largest other logit there (> 0 iff
    that token is the strict argmax); ``n_tokens``: continuation tokens; ``first_mismatch``: index of the
    first token whose argmax differs (``n_tokens`` when only the end of turn is missing), None if matched.
    """

    matched: bool
    logprob: float
    first_margin: float
    n_tokens: int
    first_mismatch: int | None = None


@dataclass
class GenerationStats:
    """Counters over a backend's lifetime (the throughput benchmark reads them)."""

    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    forward_passes: int = 0
    truncated_prompts: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _sample_seed(seed: int, prompt_ids: Sequence[int], sample: int) -> int:
    digest = hashlib.sha256(f"{seed}|{sample}|{','.join(map(str, prompt_ids))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


class PromptEncoder:
    """Conversation → rendered prompt → token ids, as training tokenized prompt segments."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, template: str | ChatTemplate) -> None:
        self.tokenizer = tokenizer
        self.template = get_template(template)
        self.bos = bos_to_prepend(tokenizer)

    def render(self, conversation: Conversation) -> str:
        """The conversation as the model sees it, ending with the assistant generation prompt."""
        messages = tuple(Message(turn["role"], turn["content"]) for turn in conversation)  # type: ignore[arg-type]
        if not messages:
            raise UsageError("empty conversation: a prompt needs at least one message")
        return self.template.render_prompt(ChatRecord(messages), self.tokenizer)

    def encode(self, conversation: Conversation) -> list[int]:
        """Token ids of :meth:`render`: ``add_special_tokens=False``, BOS prepended as training does."""
        text = self.render(conversation)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos_text = self.tokenizer.bos_token
        if self.bos is not None and not (bos_text and text.startswith(bos_text)):
            ids.insert(0, self.bos)
        return ids


@dataclass
class _Row:
    """One sequence being generated: which prompt and sample it is, its tokens so far."""

    prompt: int
    sample: int
    ids: list[int]
    generator: torch.Generator | None
    out: list[int] = field(default_factory=list)


class HFBackend:
    """A :class:`~skillmerge.evaluate.suites.base.ModelBackend` over a transformers causal LM."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        template: str | ChatTemplate,
        *,
        batch_size: int = 16,
        name: str = "hf",
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be ≥ 1, got {batch_size}")
        keep_freed_memory()  # batches free and reallocate the same buffers (skillmerge.allocator)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = get_template(template)
        self.batch_size = batch_size
        self.name = name
        self.progress = progress
        self.device = next(model.parameters()).device
        self.stop_ids = end_of_turn_ids(self.template, tokenizer)
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for eos in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if eos is not None:
                self.stop_ids.add(int(eos))
        self.pad_id = next(
            (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None),
            0,
        )
        self.prompts = PromptEncoder(tokenizer, self.template)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        parameters = inspect.signature(model.forward).parameters
        # transformers 5.x renamed ``past_key_values`` to ``cache``; accept either.
        self._cache_kw = "cache" if "cache" in parameters else "past_key_values"
        self._keeps_logits = "logits_to_keep" in parameters
        self.stats = GenerationStats()
        self.source: Path | None = None  # the directory it was loaded from (lm-eval's runs read it again)

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        *,
        template: str | None = None,
        force_template: bool = False,
        batch_size: int = 16,
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HFBackend:
        """Load ``model_dir`` (never the hub) and pick its chat template (:func:`resolve_chat_template`)."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        model, tokenizer = load_model(model_dir, dtype=dtype)
        chat_template = resolve_chat_template(model_dir, tokenizer, template, force=force_template)
        backend = cls(
            model.to(device), tokenizer, chat_template, batch_size=batch_size, name=f"hf:{model_dir}"
        )
        backend.source = Path(model_dir)
        return backend

    # -- prompts ------------------------------------------------------------------------------------------

    def render(self, conversation: Conversation) -> str:
        return self.prompts.render(conversation)

    def encode_prompt(self, conversation: Conversation) -> list[int]:
        return self.prompts.encode(conversation)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone (no special tokens): the unit of per-token scores and limits."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation ---------------------------------------------------------------------------------------

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        """``params.n`` completions per conversation, stop sequences cut off (see the module docstring)."""
        if not conversations:
            raise UsageError("no prompts to generate from (empty prompt set)")
        prompts = [self.encode_prompt(c) for c in conversations]
        outputs = self.generate_ids(prompts, params)
        return [[self._finish_text(ids, params.stop) for ids in row] for row in outputs]

    def generate_ids(
        self, prompts: Sequence[Sequence[int]], params: GenerationParams
    ) -> list[list[list[int]]]:
        """Generated token ids (end-of-turn token excluded): ``params.n`` lists per prompt."""
        _check_params(params)
        if not prompts:
            raise UsageError("no prompts to generate from (empty prompt set)")
        start = time.perf_counter()
        greedy = params.temperature <= 0
        samples = 1 if greedy else params.n  # greedy samples are all identical: compute one, copy it
        budget = max(1, self.max_length - params.max_new_tokens)
        rows: list[_Row] = []
        for p, ids in enumerate(prompts):
            if not ids:
                raise UsageError(f"prompt {p} has no tokens")
            if len(ids) > budget:
                self.stats.truncated_prompts += 1
                ids = ids[-budget:]  # keep the end: the question and the generation prompt
            for s in range(samples):
                generator = None
                if not greedy:
                    generator = torch.Generator(device=self.device)
                    generator.manual_seed(_sample_seed(params.seed, ids, s))
                rows.append(_Row(p, s, list(ids), generator))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        # Generation is the slow part of every evaluation: show rows done and generated tokens/s.
        with tqdm(
            total=len(rows), desc=f"generate ({self.name})", unit="seq", disable=not self.progress
        ) as bar:
            for batch in _chunks(order, self.batch_size):
                chunk = [rows[i] for i in batch]
                self._generate_batch(chunk, params)
                made = sum(len(r.out) for r in rows)
                bar.set_postfix(tok_s=f"{made / max(time.perf_counter() - start, 1e-9):.1f}")
                bar.update(len(chunk))
        results: list[list[list[int]]] = [[[] for _ in range(samples)] for _ in prompts]
        for row in rows:
            results[row.prompt][row.sample] = row.out
        if greedy and params.n > 1:
            results = [[list(r[0]) for _ in range(params.n)] for r in results]
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(len(r.ids) for r in rows)
        self.stats.generated_tokens += sum(len(r.out) for r in rows)
        self.stats.seconds += time.perf_counter() - start
        return results

    def _forward(self, **kwargs: Any) -> torch.Tensor:
        self.stats.forward_passes += 1
        return self.model(**kwargs).logits

    @torch.inference_mode()
    def _generate_batch(self, rows: list[_Row], params: GenerationParams) -> None:
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
            mask[i, width - len(row.ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}
        logits = self._forward(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: cache},
            **extra,
        )[:, -1, :]
        next_position = positions[:, -1] + 1
        live = list(rows)
        stops = [s for s in params.stop if s]  # an empty stop string would end every row at once
        stop_window = 4 * max((len(s) for s in stops), default=0) + 8  # ≤ 4 bytes a char, ≥ 1 byte a token
        for _ in range(params.max_new_tokens):
            tokens = self._pick(logits, params, [r.generator for r in live])
            keep: list[int] = []
            for i, row in enumerate(live):
                token = int(tokens[i])
                if token in self.stop_ids:
                    continue
                row.out.append(token)
                if len(row.out) >= params.max_new_tokens:
                    continue
                if stops:
                    tail = self.tokenizer.decode(row.out[-stop_window:], skip_special_tokens=True)
                    if any(s in tail for s in stops):
                        continue
                keep.append(i)
            if not keep:
                break
            if len(keep) < len(live):  # drop finished rows from every tensor and the cache
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                tokens, mask, next_position = tokens[index], mask[index], next_position[index]
                live = [live[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            logits = self._forward(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                use_cache=True,
                **{self._cache_kw: cache},
            )[:, -1, :]
            next_position = next_position + 1

    @staticmethod
    def _pick(
        logits: torch.Tensor, params: GenerationParams, generators: list[torch.Generator | None]
    ) -> torch.Tensor:
        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            # Keep the smallest set of most likely tokens whose mass reaches top_p (always the first one).
            sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, sorted_ids, sorted_probs)
            probs = probs / probs.sum(dim=-1, keepdim=True)
        picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
        return torch.cat(picks)

    def _finish_text(self, ids: list[int], stop: Sequence[str]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in stop if s and s in text), default=-1)
        return text[:cut] if cut >= 0 else text

    # -- scoring ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        """``Σ log p(continuation tokens | rendered conversation)`` per request (natural log)."""
        return [m.logprob for m in self._teacher_forced(requests, stop=False)]

    @torch.inference_mode()
    def opening_logprobs(
        self, conversations: Sequence[Conversation], openings: Sequence[str]
    ) -> list[list[float]]:
        """``log p(opening | conversation)`` for every conversation × opening (natural log).

        The same numbers as :meth:`loglikelihood` over every pair, at the cost of one prefill per
        conversation: each batch of contexts runs once with a cache, the cache is repeated once per opening,
        and only the openings' few tokens run again. Right padding of the openings is harmless (causal
        attention: padding after a token never changes the logits that predict it).
        """
        if not conversations or not openings:
            raise UsageError("opening log-probabilities need at least one conversation and one opening")
        tails = [list(self.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in openings]
        for opening, ids in zip(openings, tails, strict=True):
            if not ids:
                raise UsageError(f"opening {opening!r} has no tokens")
        room = self.max_length - max(len(t) for t in tails)
        contexts = [self.encode_prompt(c)[-room:] for c in conversations]
        k, longest = len(tails), max(len(t) for t in tails)
        out: list[list[float]] = [[] for _ in contexts]
        shared, prefix_cache = self._shared_prefix(contexts)
        order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
        for batch in _chunks(order, max(1, self.batch_size)):
            width = max(len(contexts[i]) for i in batch) - shared
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            for row, i in enumerate(batch):
                input_ids[row, width - len(contexts[i]) + shared :] = torch.tensor(contexts[i][shared:])
                mask[row, shared + width - len(contexts[i]) + shared :] = 1
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(batch))
            else:
                cache = DynamicCache(config=self.model.config)
            extra = {"logits_to_keep": 1} if self._keeps_logits else {}
            first = self._forward(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions[:, shared:],
                use_cache=True,
                **{self._cache_kw: cache},
                **extra,
            )[:, -1, :].float()
            first = torch.log_softmax(first, dim=-1).repeat_interleave(k, dim=0)
            targets = torch.full((len(batch) * k, longest), self.pad_id, dtype=torch.long)
            lengths = torch.tensor([len(t) for t in tails] * len(batch))
            for row in range(len(batch)):
                for j, tail in enumerate(tails):
                    targets[row * k + j, : len(tail)] = torch.tensor(tail)
            targets, lengths = targets.to(self.device), lengths.to(self.device)
            total = first.gather(-1, targets[:, :1]).squeeze(-1)
            if longest > 1:
                cache.batch_repeat_interleave(k)
                step_mask = torch.cat(
                    [mask.repeat_interleave(k, dim=0), mask.new_ones((len(batch) * k, longest - 1))], dim=1
                )
                step_positions = positions[:, -1:].repeat_interleave(k, dim=0) + torch.arange(
                    1, longest, device=self.device
                )
                logits = self._forward(
                    input_ids=targets[:, :-1],
                    attention_mask=step_mask,
                    position_ids=step_positions,
                    use_cache=True,
                    **{self._cache_kw: cache},
                ).float()
                logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, 1:, None]).squeeze(-1)
                counted = torch.arange(1, longest, device=self.device)[None, :] < lengths[:, None]
                total = total + (logp * counted).sum(dim=-1)
            values = total.view(len(batch), k).tolist()
            for row, i in enumerate(batch):
                out[i] = values[row]
        return out

    @torch.inference_mode()
    def greedy_match(
        self, requests: Sequence[tuple[Conversation, str]], *, stop: bool = False
    ) -> list[MatchResult]:
        """Would greedy decoding write each continuation? One teacher-forced forward pass per batch.

        The continuation is tokenized on its own (as :meth:`loglikelihood` and training do); it matches
        when at every one of its positions the argmax of the logits is its token, which is exactly when
        greedy generation reproduces those tokens. With ``stop`` the argmax after its last token must also
        be an end-of-turn token (:attr:`stop_ids`): the model would end its reply there. Batching,
        truncation and therefore ``logprob`` are those of :meth:`loglikelihood`. A continuation the model
        would write with another tokenization of the same text does not match.
        """
        return self._teacher_forced(requests, stop=stop)

    def _encode_pairs(
        self, requests: Sequence[tuple[Conversation, str]]
    ) -> list[tuple[list[int], list[int]]]:
        """``(context ids, continuation ids)`` per request; the context is cut from the left to fit."""
        if not requests:
            raise UsageError("no requests to score (empty prompt set)")
        encoded: list[tuple[list[int], list[int]]] = []
        for i, (conversation, continuation) in enumerate(requests):
            cont = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
            if not cont:
                raise UsageError(f"request {i}: the continuation {continuation!r} has no tokens")
            room = self.max_length - len(cont)
            if room < 1:
                raise UsageError(
                    f"request {i}: continuation longer than the model's context ({self.max_length})"
                )
            encoded.append((self.encode_prompt(conversation)[-room:], cont))
        return encoded

    def _shared_prefix(self, contexts: Sequence[Sequence[int]]) -> tuple[int, DynamicCache | None]:
        """The token prefix every context shares (each keeps ≥ 1 token of its own), run once into a cache.

        Chat prompts open with the same system turn (SmolLM2's default is 24 tokens, about half of a short
        prompt), so scoring runs it once instead of once per request. Returns ``(0, None)`` when the shared
        part is shorter than :data:`MIN_SHARED_PREFIX` tokens or there is only one request.
        """
        if len(contexts) < 2:
            return 0, None
        first, shared = contexts[0], min(len(c) for c in contexts) - 1
        for context in contexts[1:]:
            same = 0
            while same < shared and context[same] == first[same]:
                same += 1
            shared = same
        if shared < MIN_SHARED_PREFIX:
            return 0, None
        cache = DynamicCache(config=self.model.config)
        ids = torch.tensor([list(first[:shared])], device=self.device)
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}
        self._forward(input_ids=ids, use_cache=True, **{self._cache_kw: cache}, **extra)
        return shared, cache

    def _teacher_forced(
        self, requests: Sequence[tuple[Conversation, str]], *, stop: bool
    ) -> list[MatchResult]:
        """Log-probability, greedy match and first-token margin of every continuation (longest first)."""
        encoded = self._encode_pairs(requests)
        results: list[MatchResult | None] = [None] * len(encoded)
        shared, prefix_cache = self._shared_prefix([context for context, _ in encoded])
        order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
        for batch in _chunks(order, self.batch_size):
            pairs = [encoded[i] for i in batch]
            width = max(len(c) + len(x) for c, x in pairs) - shared
            keep = max(len(x) for _, x in pairs) + 1
            input_ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(pairs), shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            for row, (context, cont) in enumerate(pairs):
                ids = context[shared:] + cont
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                mask[row, shared + width - len(ids) :] = 1
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
            extra: dict[str, Any] = {"logits_to_keep": keep} if self._keeps_logits else {}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(pairs))
                extra.update(use_cache=True, **{self._cache_kw: cache})
            logits = self._forward(input_ids=input_ids, attention_mask=mask, position_ids=positions, **extra)
            logits = logits[:, -keep:, :].float()
            for row, (i, (_, cont)) in enumerate(zip(batch, pairs, strict=True)):
                # Kept column j predicts absolute position width − keep + j + 1: the continuation's tokens are
                # predicted by columns keep−1−len(cont) ... keep−2, the token after it by the last column.
                start = keep - 1 - len(cont)
                scores = logits[row, start : start + len(cont)]
                target = torch.tensor(cont, device=scores.device)
                logprob = float(torch.log_softmax(scores, dim=-1).gather(-1, target[:, None]).sum())
                wrong = (scores.argmax(dim=-1) != target).nonzero()
                mismatch = int(wrong[0, 0]) if len(wrong) else None
                if mismatch is None and stop and int(logits[row, -1].argmax()) not in self.stop_ids:
                    mismatch = len(cont)
                first = scores[0]
                others = first.clone()
                others[cont[0]] = float("-inf")
                margin = float(first[cont[0]] - others.max())
                results[i] = MatchResult(mismatch is None, logprob, margin, len(cont), mismatch)
        return [r for r in results if r is not None]


def _check_params(params: GenerationParams) -> None:
    if params.max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be ≥ 1, got {params.max_new_tokens}")
    if params.n < 1:
        raise UsageError(f"n (samples per prompt) must be ≥ 1, got {params.n}")
    if not 0.0 < params.top_p <= 1.0:
        raise UsageError(f"top_p must be in (0, 1], got {params.top_p}")
    if params.temperature < 0:
        raise UsageError(f"temperature must be ≥ 0, got {params.temperature}")


__all__ = [
    "GenerationStats",
    "HFBackend",
    "MatchResult",
    "PromptEncoder",
    "end_of_turn_ids",
    "recorded_templates",
    "resolve_chat_template",
    "tokenizer_name",
]
