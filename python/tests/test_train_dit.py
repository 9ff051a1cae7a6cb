"""The executor on seppoc's DiT with Pick-a-Pic Parquet data: process count, gradient accumulation and
stop/resume do not change the trained weights; PLAN v1 modules still train."""
import os

import pytest
import torch
from safetensors.torch import load_file

from conftest import DPO_BODY, MODEL, dpo_plan, err_leaf, records, run_cli, write_module

COMMON = ["--model", MODEL, "--steps", 3, "--batch", 4, "--lr", 1e-3, "--warmup", 0,
          "--dtype", "float64", "--threads", 1]


def weights(out):
    return load_file(os.path.join(out, "model.safetensors"))


def max_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def seppo_like(tmp_path_factory, small_parquet):
    """DPO against a pool checkpoint drawn per prompt (pool every update, keep 2): exercises the pool, the
    per-sample reference groups and the generator."""
    d = tmp_path_factory.mktemp("mods")
    samples = [{"images": "sample0", "model": "ref", "sampler": "ddpm", "steps": 3, "cfg": 2.0, "eta": 0.0}]
    plan = dpo_plan(reference={"strategy": "uniform", "draw": "sample"}, pool={"every": 1, "keep": 2},
                    samples=samples)
    plan["views"].append({"name": "sample0", "images": "sample0", "draw": 0})
    for m in ("policy", "ref"):
        plan["leaves"][f"e_{m}_sample0"] = err_leaf(m, "sample0", "sample0")
    for q in plan["passes"]:
        q["views"].append("sample0")
    body = DPO_BODY.replace("    per = -F.logsigmoid(-p[\"beta\"] * d)",
                            "    d = d + 0.5 * (inputs[\"e_policy_sample0\"] - inputs[\"e_ref_sample0\"].detach())\n"
                            "    per = -F.logsigmoid(-p[\"beta\"] * d)")
    assert body != DPO_BODY
    COMMON[2:2] = ["--data", small_parquet[0]]
    return write_module(d / "seppo_like.py", "seppo_like", plan, body=body)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, seppo_like):
    out = tmp_path_factory.mktemp("runs") / "one"
    run_cli("--objective", seppo_like, *COMMON, "--out", out)
    return out


def test_run_trains_and_records(baseline):
    recs = records(baseline)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert abs(recs[0]["loss"] - 0.6931471805599453) < 1e-12  # policy == every reference at update 1
    assert set(recs[0]["leaf_means"]) == {f"e_{m}_{k}" for m in ("policy", "ref") for k in ("winner", "loser", "sample0")}
    moved = max_diff(weights(baseline), load_file(MODEL))
    assert moved > 1e-3, f"the run barely trained ({moved:e})"


def test_two_processes_equal_one(tmp_path, seppo_like, baseline):
    out = tmp_path / "two"
    run_cli("--objective", seppo_like, *COMMON, "--out", out, torchrun=2)
    assert max_diff(weights(baseline), weights(out)) <= 1e-10
    for a, b in zip(records(baseline), records(out)):
        assert abs(a["loss"] - b["loss"]) <= 1e-10
        for k in a["leaf_means"]:
            assert abs(a["leaf_means"][k] - b["leaf_means"][k]) <= 1e-12


def test_accumulation_equals_one_batch(tmp_path, seppo_like, baseline):
    out = tmp_path / "accum"
    run_cli("--objective", seppo_like, *COMMON, "--grad-accum", 2, "--out", out)
    assert max_diff(weights(baseline), weights(out)) <= 1e-10


def test_compile_equals_eager(tmp_path, seppo_like, baseline):
    """--compile (the network under torch.compile, fused AdamW) trains the same weights as eager, to float64
    rounding: taped, reference and sampling passes, with reference groups of changing size (dynamic batch)."""
    out = tmp_path / "compiled"
    run_cli("--objective", seppo_like, *COMMON, "--out", out, "--compile")
    assert max_diff(weights(baseline), weights(out)) <= 1e-9
    for a, b in zip(records(baseline), records(out), strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-9


def test_stop_and_resume_equals_uninterrupted(tmp_path, seppo_like, baseline):
    out = tmp_path / "resumed"
    run_cli("--objective", seppo_like, *COMMON, "--out", out, "--checkpoint-every", 1, "--stop-after", 1)
    assert [r["step"] for r in records(out)] == [1]
    again = run_cli("--objective", seppo_like, *COMMON, "--out", out, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr, again.stderr
    run_cli("--objective", seppo_like, *COMMON, "--out", out, "--checkpoint-every", 1, "--resume")
    assert max_diff(weights(baseline), weights(out)) == 0.0
    assert [r["loss"] for r in records(out)] == [r["loss"] for r in records(baseline)]


def test_other_run_in_out_folder_is_refused(tmp_path, seppo_like, baseline):
    out = run_cli("--objective", seppo_like, *COMMON[:-4], "--dtype", "float32", "--threads", 1, "--out", baseline,
                  "--resume", check=False)
    assert out.returncode == 2
    assert "different run" in out.stderr and "dtype: 'float64' there, 'float32' here" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_plan_v1_module_trains(tmp_path, small_parquet):
    """A module in the current emitter's PLAN v1 shape (no views/datums, objective(inputs, params))."""
    plan = {
        "data": "pairs", "noise": "shared", "pool": None, "references": {"ref": {"strategy": "initial"}},
        "samples": [],
        "leaves": {f"e_{m}_{k}": {"model": m, "images": k, "grad": m == "policy"}
                   for m in ("policy", "ref") for k in ("winner", "loser")},
        "passes": [{"model": "policy", "taped": True, "images": ["winner", "loser"]},
                   {"model": "ref", "taped": False, "images": ["winner", "loser"]}],
        "nfe_per_prompt": {"passes": 4, "sampling": 0},
    }
    body = '''
def objective(inputs, params=None):
    d = (inputs["e_policy_winner"] - inputs["e_ref_winner"].detach()) - \\
        (inputs["e_policy_loser"] - inputs["e_ref_loser"].detach())
    per = -F.logsigmoid(-500.0 * d)
    return per.mean(), per, {}
'''
    mod = write_module(tmp_path / "v1.py", "dpo_v1", plan, body=body, logs=())
    out = tmp_path / "run"
    run_cli("--objective", mod, "--model", MODEL, "--data", small_parquet[0], "--steps", 2, "--batch", 2, "--threads", 1, "--out", out)
    recs = records(out)
    assert len(recs) == 2 and abs(recs[0]["loss"] - 0.6931471805599453) < 1e-6
