"""The HF backend: batched generation equals per-prompt generation, sampling is seeded, stop sequences cut,
log-likelihoods equal a manual computation, and prompts use the template the model was trained with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from skillmerge.errors import ModelError, TemplateError, UsageError
from skillmerge.evaluate.generate import HFBackend, end_of_turn_ids, recorded_templates, resolve_chat_template
from skillmerge.evaluate.suites.base import GenerationParams

# Different lengths on purpose: batches mix long and short prompts, so left padding is exercised.
CONVERSATIONS = [
    [{"role": "user", "content": "What is 3 plus 4?"}],
    [{"role": "user", "content": "Repeat: the small red cat sees a big blue dog near the bird " * 3}],
    [{"role": "system", "content": "You are a careful assistant."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "a"}],
    [{"role": "user", "content": "What is 12 plus 99? The dog likes the cat."}],
    [
        {"role": "user", "content": "What is 1 plus 1?"},
        {"role": "assistant", "content": "1 plus 1 is 2."},
        {"role": "user", "content": "Repeat: the bird runs"},
    ],
    [{"role": "user", "content": "the cat " * 20}],
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    """The tiny model with its matrices redrawn at std 0.1: a fresh init (std 0.02, tied embeddings) just
    repeats its last input token, which would make every comparison below trivially true."""
    torch.set_num_threads(1)
    backend = HFBackend.from_dir(tiny_model_dir, batch_size=3, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in backend.model.parameters():
            if parameter.ndim == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return backend


def _with(backend: HFBackend, batch_size: int) -> HFBackend:
    return HFBackend(backend.model, backend.tokenizer, backend.template, batch_size=batch_size)


def _gpt2(backend: HFBackend) -> torch.nn.Module:
    """A small GPT-2 on the backend's tokenizer: learned absolute positions expose any padding offset."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(backend.tokenizer),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        initializer_range=0.1,
    )
    return GPT2LMHeadModel(config).eval()


def _copy_model(source: Path, dest: Path, skip: tuple[str, ...] = ()) -> Path:
    dest.mkdir()
    for item in source.iterdir():
        if item.name not in skip:
            shutil.copy(item, dest / item.name)
    return dest


def test_batched_greedy_equals_per_prompt_greedy(backend: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=12)
    prompts = [backend.encode_prompt(c) for c in CONVERSATIONS]
    batched = backend.generate_ids(prompts, params)
    single = _with(backend, 1).generate_ids(prompts, params)
    assert batched == single
    assert all(len(row[0]) > 0 for row in batched)
    assert len({tuple(row[0]) for row in batched}) == len(prompts)  # varied outputs, not one repeated token
    assert len({len(p) for p in prompts}) == len(prompts)  # really different lengths


def test_greedy_equals_transformers_generate_on_an_unpadded_prompt(backend: HFBackend) -> None:
    ids = backend.encode_prompt(CONVERSATIONS[1])
    ours = backend.generate_ids(
        [ids, backend.encode_prompt(CONVERSATIONS[3])], GenerationParams(max_new_tokens=10)
    )
    reference = backend.model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=sorted(backend.stop_ids),
        pad_token_id=backend.pad_id,
    )[0, len(ids) :].tolist()
    assert ours[0][0] == [t for t in reference if t not in backend.stop_ids]


def test_stop_sequence_cuts_and_finished_rows_leave_the_batch(backend: HFBackend) -> None:
    free = backend.generate(CONVERSATIONS, GenerationParams(max_new_tokens=16))
    # A stop string taken from the middle of one completion: that row must end there, the others not change.
    text = free[0][0]
    stop = next(
        text[i : i + 2]
        for i in range(2, len(text) - 2)
        if text[i : i + 2].isascii() and text[i : i + 2].isprintable()
    )
    params = GenerationParams(max_new_tokens=16, stop=(stop,))
    batched = backend.generate(CONVERSATIONS, params)
    single = _with(backend, 1).generate(CONVERSATIONS, params)
    assert batched == single
    assert batched[0][0] == text[: text.index(stop)]
    for cut, full in zip(batched, free, strict=True):
        assert stop not in cut[0]
        assert cut[0] == (full[0][: full[0].index(stop)] if stop in full[0] else full[0])


def test_sampling_with_a_seed_is_reproducible(backend: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=8, temperature=1.0, n=3, seed=7)
    first = backend.generate(CONVERSATIONS[:4], params)
    again = _with(backend, 1).generate(CONVERSATIONS[:4], params)  # other batching, same samples
    other_seed = backend.generate(
        CONVERSATIONS[:4], GenerationParams(max_new_tokens=8, temperature=1.0, n=3, seed=8)
    )
    assert first == again
    assert first != other_seed
    assert all(len(row) == 3 for row in first)
    assert any(len(set(row)) > 1 for row in first)  # the n samples of a prompt differ


def test_tiny_top_p_keeps_only_the_most_likely_token(backend: HFBackend) -> None:
    greedy = backend.generate(CONVERSATIONS[:3], GenerationParams(max_new_tokens=8))
    nucleus = backend.generate(
        CONVERSATIONS[:3], GenerationParams(max_new_tokens=8, temperature=1.5, top_p=1e-6)
    )
    assert nucleus == greedy


def test_greedy_n_samples_are_copies(backend: HFBackend) -> None:
    rows = backend.generate(CONVERSATIONS[:2], GenerationParams(max_new_tokens=5, n=3))
    assert all(len(row) == 3 and len(set(row)) == 1 for row in rows)


def test_loglikelihood_equals_manual_per_request_computation(backend: HFBackend) -> None:
    requests = [
        (CONVERSATIONS[i], cont) for i, cont in enumerate(["4.", " the cat sees", "Hello there", "a"])
    ]
    requests += [(CONVERSATIONS[6], "7 plus 7 is 14.")]
    batched = backend.loglikelihood(requests)
    for (conversation, continuation), value in zip(requests, batched, strict=True):
        context = backend.encode_prompt(conversation)
        cont = backend.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = backend.model(input_ids=torch.tensor([context + cont])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        manual = sum(float(logprobs[len(context) + t - 1, token]) for t, token in enumerate(cont))
        assert value == pytest.approx(manual, abs=1e-4)
    assert all(v < 0 for v in batched)


def test_empty_prompt_set_is_refused(backend: HFBackend) -> None:
    with pytest.raises(UsageError, match="empty prompt set"):
        backend.generate([], GenerationParams())
    with pytest.raises(UsageError, match="empty prompt set"):
        backend.loglikelihood([])


def test_bad_sampling_parameters_are_refused(backend: HFBackend) -> None:
    with pytest.raises(UsageError, match="top_p"):
        backend.generate(CONVERSATIONS[:1], GenerationParams(top_p=0.0))
    with pytest.raises(UsageError, match="n \\(samples"):
        backend.generate(CONVERSATIONS[:1], GenerationParams(n=0))


def test_end_of_turn_marker_is_a_stop_token(backend: HFBackend) -> None:
    tokenizer = backend.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(backend.template, tokenizer) == {tokenizer.eos_token_id, im_end}


def test_chat_template_mismatch_is_refused_unless_forced(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy_model(tiny_model_dir, tmp_path / "trained")
    manifest = {"kind": "train", "config": {"data": {"template": "tulu"}}}
    (model_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    tokenizer = HFBackend.from_dir(model_dir, template="tulu").tokenizer
    assert recorded_templates(model_dir) == {"tulu"}
    assert resolve_chat_template(model_dir, tokenizer).name == "tulu"
    with pytest.raises(TemplateError) as info:
        resolve_chat_template(model_dir, tokenizer, "chatml")
    assert str(info.value) == (
        f"{model_dir}: trained with chat template tulu, asked for 'chatml' which renders prompts "
        "differently; pass --force-template to use it anyway"
    )
    assert resolve_chat_template(model_dir, tokenizer, "chatml", force=True).name == "chatml"


def test_equivalent_template_is_accepted(tiny_model_dir: Path, backend: HFBackend) -> None:
    # The tiny tokenizer's own template is ChatML: asking for "chatml" by name is no mismatch.
    assert resolve_chat_template(tiny_model_dir, backend.tokenizer, "chatml").name == "chatml"
    with pytest.raises(TemplateError, match="asked for 'tulu'"):
        resolve_chat_template(tiny_model_dir, backend.tokenizer, "tulu")


def test_merged_model_inherits_the_template_of_its_trained_inputs(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    skill = tmp_path / "skill"
    skill.mkdir()
    (skill / "manifest.json").write_text(
        json.dumps({"kind": "train", "config": {"data": {"template": "tulu"}}})
    )
    merged = tmp_path / "merged"
    merged.mkdir()
    inputs = [{"role": "base", "path": str(tiny_model_dir)}, {"role": "model", "path": str(skill)}]
    (merged / "manifest.json").write_text(json.dumps({"kind": "merge", "inputs": inputs}))
    assert recorded_templates(merged) == {"tulu"}


def test_model_dir_without_chat_template_needs_a_template(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy_model(tiny_model_dir, tmp_path / "bare", skip=("chat_template.jinja",))
    with pytest.raises(TemplateError) as info:
        HFBackend.from_dir(model_dir)
    message = str(info.value)
    assert message.startswith(f"{model_dir}: no chat template") and "--template" in message
    assert "\n" not in message
    assert HFBackend.from_dir(model_dir, template="chatml").template.name == "chatml"


def test_model_dir_without_tokenizer_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    skip = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    model_dir = _copy_model(tiny_model_dir, tmp_path / "no-tokenizer", skip=skip)
    with pytest.raises(ModelError) as info:
        HFBackend.from_dir(model_dir, template="chatml")
    assert str(info.value).startswith(f"{model_dir}: no tokenizer files")


def test_left_padding_keeps_absolute_positions(backend: HFBackend) -> None:
    # RoPE models only see relative positions; GPT-2's learned absolute positions expose any padding offset.
    gpt2 = HFBackend(_gpt2(backend), backend.tokenizer, backend.template, batch_size=4)
    prompts = [gpt2.encode_prompt(c) for c in CONVERSATIONS]
    params = GenerationParams(max_new_tokens=8)
    assert gpt2.generate_ids(prompts, params) == _with(gpt2, 1).generate_ids(prompts, params)
    requests = [(c, "the cat") for c in CONVERSATIONS]
    assert gpt2.loglikelihood(requests) == pytest.approx(_with(gpt2, 1).loglikelihood(requests), abs=1e-4)


SYSTEM = {"role": "system", "content": "You are a careful assistant who answers in one short sentence."}
SHARED = [[SYSTEM, *c] if c[0]["role"] == "user" else [SYSTEM, *c[1:]] for c in CONVERSATIONS]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_shared_prefix_runs_once_and_changes_no_score(
    backend: HFBackend, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Requests opening with the same system turn: the prefix runs once into a cache that every batch copies.
    # Scores must equal those of full-sequence batches (GPT-2's absolute positions would expose an offset).
    import skillmerge.evaluate.generate as generate

    model = _gpt2(backend) if kind == "gpt2" else backend.model
    shared = HFBackend(model, backend.tokenizer, backend.template, batch_size=3)
    requests = [
        (c, cont) for c, cont in zip(SHARED, ["4.", " the cat", "Hi", "a", "111", "2", "cat"], strict=True)
    ]
    contexts = [shared.encode_prompt(c) for c, _ in requests]
    common = next(i for i in range(len(contexts[0])) if len({tuple(c[: i + 1]) for c in contexts}) > 1)
    assert common >= generate.MIN_SHARED_PREFIX
    with_prefix = shared.greedy_match(requests, stop=True)
    assert shared.stats.forward_passes == 1 + 3  # the prefix once, then three batches of ≤ 3

    monkeypatch.setattr(generate, "MIN_SHARED_PREFIX", 10**6)
    full = HFBackend(model, backend.tokenizer, backend.template, batch_size=3)
    without = full.greedy_match(requests, stop=True)
    assert full.stats.forward_passes == 3
    for a, b in zip(with_prefix, without, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.first_margin == pytest.approx(b.first_margin, abs=1e-4)
        assert (a.matched, a.first_mismatch, a.n_tokens) == (b.matched, b.first_mismatch, b.n_tokens)
    for (conversation, continuation), result in zip(requests, with_prefix, strict=True):
        context = shared.encode_prompt(conversation)
        cont = shared.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + cont])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        manual = sum(float(logprobs[len(context) + t - 1, token]) for t, token in enumerate(cont))
        assert result.logprob == pytest.approx(manual, abs=1e-4)
