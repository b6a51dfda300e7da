"""Target-only output head: the same loss and gradients as full logits, for plain, tied and LoRA models."""

from __future__ import annotations

import pytest
import torch

from model_factory import tiny_llama
from skillmerge.train.head import TargetHead, token_loss_sum


def _batch(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (3, 12), generator=g)
    attention = torch.ones_like(ids)
    attention[1, :4] = 0  # a left-padded row
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, :4] = -100
    labels[2, 8:10] = -100  # targets need not be contiguous
    return {"input_ids": ids, "attention_mask": attention}, labels


def _loss_and_grads(model: torch.nn.Module, head: TargetHead | None) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    batch, labels = _batch()
    if head is None:
        logits = model(**batch, use_cache=False).logits
    else:
        with head.targets(labels):
            logits = model(**batch, use_cache=False).logits
    loss = token_loss_sum(logits, labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.parametrize("tie", [True, False])
def test_target_rows_give_the_full_logits_loss_and_gradients(tie: bool) -> None:
    model = tiny_llama(tie=tie).train()
    full_loss, full_grads = _loss_and_grads(model, None)
    head = TargetHead(model)
    batch, labels = _batch()
    with head.targets(labels):
        logits = model(**batch, use_cache=False).logits
    assert logits.shape == (int((labels[:, 1:] != -100).sum()), 64)  # only the target rows were projected
    loss, grads = _loss_and_grads(model, head)
    assert loss == pytest.approx(full_loss, rel=1e-6)
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    # Outside the block the model is untouched: full logits again.
    assert model(**batch, use_cache=False).logits.shape == (3, 12, 64)
    head.remove()


def test_lora_wrapped_model_uses_the_same_head() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    ).train()
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)  # non-zero B so every LoRA tensor gets a gradient
    full_loss, full_grads = _loss_and_grads(model, None)
    loss, grads = _loss_and_grads(model, TargetHead(model))
    assert loss == pytest.approx(full_loss, rel=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_micro_batch_without_targets_has_zero_loss_and_backpropagates() -> None:
    model = tiny_llama().train()
    head = TargetHead(model)
    batch, labels = _batch()
    labels[:] = -100
    with head.targets(labels):
        logits = model(**batch, use_cache=False).logits
    loss = token_loss_sum(logits, labels)
    loss.backward()
    assert logits.shape[0] == 0 and float(loss) == 0.0


def test_a_model_without_an_output_head_is_scored_on_full_logits() -> None:
    class Bare(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    head = TargetHead(Bare())
    labels = torch.tensor([[-100, 3, 4]])
    logits = torch.randn(1, 3, 8)
    with head.targets(labels):
        pass
    expected = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, 1:], reduction="sum")
    assert float(token_loss_sum(logits, labels)) == pytest.approx(float(expected))


def test_row_count_mismatch_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="2 rows for 1 target"):
        token_loss_sum(torch.randn(2, 8), torch.tensor([[-100, -100, 5]]))
