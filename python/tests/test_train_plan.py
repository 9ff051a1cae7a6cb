"""PLAN v2 features on the DiT: datums (label with ties kept, reward, time values, progress, num_timesteps),
several draws with independent noise, dist leaves, labelled data, reference samples."""
import torch

from conftest import MODEL, err_leaf, views, write_module
from seppoc_torch.cli import parser
from seppoc_torch.train import Executor

RECORD = '''
SEEN = []


def objective(inputs, params=None, reduce=None):
    SEEN.append({k: v.detach().clone() for k, v in inputs.items()})
    r = reduce or (lambda t: t)
    per = sum(v for k, v in inputs.items() if k.startswith(("e_policy", "dist_policy")))
    n = r(torch.full((), float(per.shape[0]), dtype=per.dtype))
    return r(per.sum()) / n, per, {}
'''


def executor(tmp_path, data, plan, *extra):
    mod = write_module(tmp_path / "m.py", "probe", plan, body=RECORD, logs=())
    args = parser().parse_args(["train", "--objective", mod, "--model", MODEL, "--data", data, "--batch", "4",
                                "--steps", "2", "--threads", "1", "--json", *extra])
    return Executor(args)


def base_plan(data, kinds, **kw):
    p = {"version": 2, "data": data, "ties": "drop", "fields": [], "noise": "shared", "draws": 1, "pool": None,
         "references": {"ref": {"strategy": "initial"}}, "samples": [], "views": views(kinds), "leaves": {},
         "datums": {}, "passes": [], "nfe_per_prompt": {}, "global_loss": True}
    p.update(kw)
    return p


def test_datums_ties_draws_dist(tmp_path, small_parquet):
    vs = views(["winner", "loser"], draws=2)
    names = [v["name"] for v in vs]
    leaves = {f"e_policy_{v['name']}": err_leaf("policy", v["name"], v["images"], v["draw"]) for v in vs}
    leaves["dist_policy_ref_winner_d1"] = {"model": "policy", "view": "winner_d1", "images": "winner", "draw": 1,
                                           "grad": True, "quantity": "dist", "against": "ref"}
    datums = {"label": {"kind": "label", "view": None, "images": None, "per_step": False},
              "reward_winner": {"kind": "reward", "view": "winner", "images": "winner", "per_step": False},
              "reward_loser": {"kind": "reward", "view": "loser", "images": "loser", "per_step": False},
              "snr_loser_d1": {"kind": "snr", "view": "loser_d1", "images": "loser", "per_step": False},
              "timestep_winner": {"kind": "timestep", "view": "winner", "images": "winner", "per_step": False},
              "progress": {"kind": "progress", "view": None, "images": None, "per_step": True},
              "num_timesteps": {"kind": "num_timesteps", "view": None, "images": None, "per_step": True}}
    plan = base_plan("pairs", ["winner", "loser"], ties="keep", fields=["label", "reward_0", "reward_1"],
                     noise="independent", draws=2, views=vs, leaves=leaves, datums=datums,
                     passes=[{"model": "policy", "taped": True, "views": names, "keep_predictions": True},
                             {"model": "ref", "taped": False, "views": ["winner_d1"], "keep_predictions": True}])
    ex = executor(tmp_path, small_parquet[0], plan, "--lr", "1e-3", "--warmup", "0")
    assert len(ex.data) == len(small_parquet[1])  # every row: the decided pairs and the ties
    ex.run()
    seen = ex.obj.module.SEEN
    assert len(seen) == 2
    first, second = seen
    assert set(first["label"].tolist()) <= {1.0, 0.5}
    # rewards are the winner's and loser's judge scores: the winner's is never lower unless a tie
    decided = first["label"] == 1.0
    assert bool((first["reward_winner"][decided] >= first["reward_loser"][decided] - 0.5).all())
    assert first["progress"].tolist() == [0.0] * 4 and second["progress"].tolist() == [0.5] * 4
    assert first["num_timesteps"].tolist() == [1000.0] * 4
    assert bool(((first["timestep_winner"] > 0) & (first["timestep_winner"] <= 1)).all())
    # independent noise: the two draws and the two image kinds have different errors
    assert not torch.equal(first["e_policy_winner"], first["e_policy_winner_d1"])
    # dist(policy, initial) is 0 before the first update, positive after it
    assert first["dist_policy_ref_winner_d1"].abs().max().item() == 0.0
    assert second["dist_policy_ref_winner_d1"].min().item() > 0.0


def test_labelled_data_and_samples(tmp_path, small_parquet):
    vs = views(["image", "sample0"])
    leaves = {f"e_{m}_{k}": err_leaf(m, k, k) for m in ("policy", "ref") for k in ("image", "sample0")}
    datums = {"label": {"kind": "label", "view": None, "images": None, "per_step": False}}
    samples = [{"images": "sample0", "model": "ref", "sampler": "ddim", "steps": 2, "cfg": 3.0, "eta": 1.0}]
    plan = base_plan("labelled", ["image", "sample0"], noise="independent", views=vs, leaves=leaves, datums=datums,
                     samples=samples,
                     passes=[{"model": "policy", "taped": True, "views": ["image", "sample0"], "keep_predictions": False},
                             {"model": "ref", "taped": False, "views": ["image", "sample0"], "keep_predictions": False}])
    ex = executor(tmp_path, small_parquet[0], plan)
    decided = sum(1 for l in small_parquet[1] if l != 0.5)
    assert decided < len(small_parquet[1])  # the slice has ties, which labelled data leaves out
    assert len(ex.data) == 2 * decided  # each decided comparison's winner (label 1) and loser (label 0)
    ex.run()
    labels = torch.cat([s["label"] for s in ex.obj.module.SEEN])
    assert set(labels.tolist()) <= {0.0, 1.0}
    first = ex.obj.module.SEEN[0]
    assert torch.equal(first["e_policy_sample0"], first["e_ref_sample0"])
