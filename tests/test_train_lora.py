"""LoRA training: adapters train, save as a peft directory, merge exactly; bad targets are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel

from skillmerge.errors import UsageError
from skillmerge.models.io import load_model, read_manifest
from skillmerge.train import build_train_config, run
from skillmerge.train.cost import training_flops

pytestmark = pytest.mark.usefixtures("one_thread")


def lora_fields(model: Path, data: Path, out: Path, **lora: Any) -> dict[str, Any]:
    return {
        "model": str(model),
        "out": str(out),
        "data": {"files": [str(data)], "template": "chatml", "max_len": 128},
        "lr": 1e-2,
        "batch_size": 8,
        "max_steps": 6,
        "progress": False,
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, **lora},
    }


def test_lora_trains_and_saves_an_adapter_peft_can_load(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    result = run(build_train_config(lora_fields(tiny_model_dir, train_file, out)))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 8
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir)

    base, _ = load_model(tiny_model_dir)
    loaded = PeftModel.from_pretrained(base, out)
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at 0: non-zero means it trained

    cost = read_manifest(out)["cost"]
    assert 0 < cost["trainable_params"] < cost["total_params"] / 5
    assert cost["flops"] == training_flops(cost["total_params"], cost["trainable_params"], cost["tokens"])
    assert cost["flops"] < 6 * cost["total_params"] * cost["tokens"]  # frozen weights skip weight gradients
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] and result.final_loss == losses[-1]


def test_lora_merged_model_equals_base_plus_adapter(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    run(build_train_config(lora_fields(tiny_model_dir, train_file, out, save="both", rslora=True)))
    merged, tokenizer = load_model(out)  # a plain HF model directory
    base, _ = load_model(tiny_model_dir)
    ids = torch.tensor([tokenizer("What is 3 plus 4?")["input_ids"]])
    with torch.no_grad():
        base_logits = base(ids).logits
        with_adapter = PeftModel.from_pretrained(base, out / "adapter").eval()  # wraps base in place
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, base_logits, atol=1e-3)  # the adapter did something
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["use_rslora"] is True


def test_lora_target_modules_matching_nothing_is_refused(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    config = lora_fields(tiny_model_dir, train_file, tmp_path / "out", target_modules=["q_proj", "query_key"])
    with pytest.raises(UsageError, match=r"^lora.target_modules: query_key match no module .*: .*q_proj"):
        run(build_train_config(config))
    assert not (tmp_path / "out").exists()


def test_lora_resume_after_a_crash_matches_an_uninterrupted_run(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adapter-only checkpoints plus restored RNG (dropout is on) continue bit for bit."""
    import skillmerge.train.loop as sft

    def config(out: Path, **extra: Any) -> Any:
        fields = lora_fields(tiny_model_dir, train_file, out, dropout=0.2)
        return build_train_config({**fields, "max_steps": 8, "save_steps": 3, **extra})

    show_step = sft._show_step

    def crash_at_step_5(progress: Any, record: dict[str, Any], total: int, log: Any) -> None:
        show_step(progress, record, total, log)
        if record["step"] == 5:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(sft, "_show_step", crash_at_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(config(tmp_path / "resumed"))
    monkeypatch.setattr(sft, "_show_step", show_step)
    checkpoint = tmp_path / "resumed.checkpoints" / "step-00000003"
    assert sorted(p.name for p in checkpoint.iterdir() if p.suffix == ".safetensors") == ["model.safetensors"]
    from safetensors.torch import load_file

    assert all("lora_" in name for name in load_file(checkpoint / "model.safetensors"))  # adapter only

    run(config(tmp_path / "resumed", resume=True))
    run(config(tmp_path / "straight"))
    a = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    b = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
