"""Shared helpers: hand-written objective modules in the emitted format (PLAN v1 and v2), the repository's DiT
and Pick-a-Pic assets, and running the CLI in-process or as subprocesses (torchrun)."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "assets", "base", "model.safetensors")
PARQUET = os.path.join(ROOT, "assets", "base", "preferences.parquet")
PYDIR = os.path.join(ROOT, "python")

DPO_BODY = '''
def objective(inputs, params=None, reduce=None):
    p = dict(PARAMS, **(params or {}))
    r = reduce or (lambda t: t)
    d = (inputs["e_policy_winner"] - inputs["e_ref_winner"].detach()) - \\
        (inputs["e_policy_loser"] - inputs["e_ref_loser"].detach())
    per = -F.logsigmoid(-p["beta"] * d)
    n = r(torch.full((), float(per.shape[0]), dtype=per.dtype, device=per.device))
    loss = r(per.sum()) / n
    acc = r((d < 0).to(per.dtype).sum()) / n
    return loss, per, {"implicit_acc": acc.detach()}
'''


def views(kinds, draws=1):
    return [{"name": k if d == 0 else f"{k}_d{d}", "images": k, "draw": d} for d in range(draws) for k in kinds]


def err_leaf(model, view, images, draw=0):
    return {"model": model, "view": view, "images": images, "draw": draw, "grad": model == "policy",
            "quantity": "err", "against": None}


def dpo_plan(reference=None, pool=None, noise="shared", samples=()):
    reference = reference or {"strategy": "initial"}
    leaves = {f"e_{m}_{k}": err_leaf(m, k, k) for m in ("policy", "ref") for k in ("winner", "loser")}
    return {
        "version": 2, "data": "pairs", "ties": "drop", "fields": [], "noise": noise, "draws": 1,
        "pool": pool, "references": {"ref": reference}, "samples": list(samples),
        "views": views(["winner", "loser"]), "leaves": leaves, "datums": {},
        "passes": [{"model": "policy", "taped": True, "views": ["winner", "loser"], "keep_predictions": False},
                   {"model": "ref", "taped": False, "views": ["winner", "loser"], "keep_predictions": False}],
        "nfe_per_prompt": {"passes": 4, "sampling": 0}, "global_loss": True,
    }


def write_module(path, name, plan, body=DPO_BODY, params=None, logs=("implicit_acc",), inputs=None):
    source = f"objective {name} {{ # hand-written test module\n}}\n"
    inputs = tuple(inputs if inputs is not None else list(plan["leaves"]) + list(plan.get("datums", {})))
    text = textwrap.dedent(f'''\
        import math

        import torch
        import torch.nn.functional as F

        NAME = {name!r}
        SOURCE = ({source!r},)
        SOURCE_SHA256 = {hashlib.sha256(source.encode()).hexdigest()!r}
        PARAMS = {params or {"beta": 500.0}!r}
        PARAM_DOMAINS = {{}}
        INPUTS = {inputs!r}
        GRAD_INPUTS = ()
        LOGS = {tuple(logs)!r}
        PLAN = {plan!r}
        ''') + body
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def run_cli(*args, env=None, check=True, torchrun=0):
    """Runs `python -m seppoc_torch train ...` as a subprocess; returns CompletedProcess."""
    e = dict(os.environ, PYTHONPATH=PYDIR, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)]
    cmd += ["-m", "seppoc_torch", "train", *map(str, args)]
    out = subprocess.run(cmd, env=e, capture_output=True, text=True, cwd=ROOT)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


@pytest.fixture
def dpo_module(tmp_path):
    return write_module(tmp_path / "dpo.py", "dpo", dpo_plan())


@pytest.fixture(scope="session")
def small_parquet(tmp_path_factory):
    """The first 64 rows of the repository's Pick-a-Pic file (fast to index), and its label_0 column."""
    import pyarrow.parquet as pq
    table = pq.read_table(PARQUET).slice(0, 64)
    path = tmp_path_factory.mktemp("data") / "small.parquet"
    pq.write_table(table, path)
    return str(path), table.column("label_0").to_pylist()


def seppoc_binary():
    """The seppoc binary: SEPPOC_BIN, or target/debug or target/release of this checkout (a missing one fails
    under CI=true)."""
    exe = os.environ.get("SEPPOC_BIN") or next(
        (p for p in (os.path.join(ROOT, "target", d, "seppoc") for d in ("debug", "release")) if os.path.isfile(p)),
        None)
    if exe is None:
        if os.environ.get("CI") == "true":  # .ci/run builds it with `cargo test` first
            pytest.fail("no seppoc binary under target/ (CI=true): run `cargo build` first or set SEPPOC_BIN")
        pytest.skip("no seppoc binary: run `cargo build` or set SEPPOC_BIN")
    return exe
