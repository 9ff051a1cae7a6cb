"""Every shipped objective, as `seppoc emit --target torch` writes it, trains 2 updates on seppoc's DiT from the
shipped base model on Pick-a-Pic Parquet rows: finite losses and gradient norms, every leaf the objective reads
recorded, the model saved."""
import json
import math
import os
import subprocess

import pytest

from conftest import MODEL, ROOT, seppoc_binary
from seppoc_torch.family import UserError
from seppoc_torch.plan import load_objective

OBJECTIVES = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "objectives")) if f.endswith(".obj"))


def online(module):
    """Whether an emitted module is an online objective (groups or the reward of generated images)."""
    plan = load_objective(module).plan
    return bool(plan.get("online_rewards")) or int(plan.get("group", 1)) > 1


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains_two_steps_on_the_dit(objective, small_parquet, tmp_path):
    from seppoc_torch.cli import parser
    from seppoc_torch.train import train

    module = str(tmp_path / f"{objective}_loss.py")
    res = subprocess.run([seppoc_binary(), "emit", "--target", "torch",
                          os.path.join(ROOT, "objectives", objective + ".obj"), "-o", module],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"seppoc emit refused {objective}.obj: {res.stderr}"
    out = str(tmp_path / "run")
    args = parser().parse_args(["train", "--objective", module, "--model", MODEL, "--data", small_parquet[0],
                                "--batch", "4", "--steps", "2", "--lr", "1e-4", "--warmup", "0", "--threads", "1",
                                "--cpu", "--out", out])
    if online(module):
        # A reward model scores its samples and groups of K rows per prompt: `seppoc run`, not this executor.
        with pytest.raises(UserError, match="seppoc-torch train (has none|draws one row per prompt)"):
            train(args)
        assert not os.path.exists(os.path.join(out, "metrics.jsonl"))
        return
    train(args)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    assert [r["step"] for r in recs] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in recs), recs
    leaves = {k for r in recs for k in r["leaf_means"]}
    assert leaves, recs[0]
    assert all(math.isfinite(v) for r in recs for v in r["leaf_means"].values()), recs
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
