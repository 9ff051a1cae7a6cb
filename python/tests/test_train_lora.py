"""The executor on a tiny random SD-1.x-like pipeline with LoRA: stop + resume equals the uninterrupted run (the
pool holds adapter snapshots), 2 gloo processes equal 1, bf16 mixed precision keeps the LoRA weights float32."""
import os

import pytest
import torch
from safetensors.torch import load_file

from conftest import dpo_plan, records, run_cli, write_module


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_parquet):
    from seppoc_torch.testing import tiny_sd
    d = tmp_path_factory.mktemp("lora")
    model = tiny_sd(str(d / "sd"))
    plan = dpo_plan(reference={"strategy": "uniform", "draw": "step"}, pool={"every": 1, "keep": 2})
    mod = write_module(d / "pool_dpo.py", "pool_dpo", plan, params={"beta": 50.0})
    common = ["--objective", mod, "--model", model, "--lora-rank", 4, "--data", small_parquet[0], "--steps", 3,
              "--batch", 4, "--lr", 1e-2, "--warmup", 0, "--threads", 1]
    base = d / "base"
    run_cli(*common, "--out", base)
    return common, base


def lora(out):
    return load_file(os.path.join(out, "pytorch_lora_weights.safetensors"))


def test_lora_trains(setup):
    _, base = setup
    w = lora(base)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in w.items()), "LoRA B did not move"
    assert all(v.dtype == torch.float32 for v in w.values())


def test_lora_stop_and_resume_equals_uninterrupted(tmp_path, setup):
    common, base = setup
    out = tmp_path / "resumed"
    run_cli(*common, "--out", out, "--checkpoint-every", 1, "--stop-after", 2)
    run_cli(*common, "--out", out, "--checkpoint-every", 1, "--resume")
    a, b = lora(base), lora(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in records(out)] == [r["loss"] for r in records(base)]


def test_lora_two_processes_equal_one(tmp_path, setup):
    common, base = setup
    out = tmp_path / "two"
    run_cli(*common, "--out", out, torchrun=2)
    a, b = lora(base), lora(out)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-5, diff


def test_lora_bf16_mixed_precision(tmp_path, setup):
    common, _ = setup
    out = tmp_path / "bf16"
    run_cli(*common, "--mixed-precision", "bf16", "--out", out)
    assert len(records(out)) == 3
    assert all(v.dtype == torch.float32 for v in lora(out).values())
