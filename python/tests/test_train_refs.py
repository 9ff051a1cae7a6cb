"""References over the DiT family: switching weights leaves the trainable set and the policy's predictions
unchanged; a pool slot equals the snapshot it was taken from; `initial` equals the base model."""
import torch

from conftest import MODEL
from seppoc_torch import load_family
from seppoc_torch.refs import References

PLAN = {"references": {"ref": {"strategy": "uniform", "draw": "sample"}, "avg": {"strategy": "ema", "decay": 0.5},
                       "base": {"strategy": "initial"}},
        "pool": {"every": 1, "keep": 2}}


def predict(fam, x, t, cond):
    with torch.no_grad():
        return fam.predict(fam.module(), x, t, cond)


def perturb(fam, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in fam.trainable_parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_reference_switching():
    torch.manual_seed(0)
    fam = load_family(MODEL)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 400, 999])
    cond = fam.encode_prompts(["a red square", "a blue circle on the left", ""])
    base = predict(fam, x, t, cond)
    refs = References(PLAN, fam)
    trainable = fam.trainable_set()
    assert trainable == {n for n, _ in fam.module().named_parameters()}

    perturb(fam, 1)
    snap1 = fam.snapshot()
    after1 = predict(fam, x, t, cond)
    refs.advance(1)
    assert torch.equal(refs.pool[1]["final.out.weight"], snap1["final.out.weight"])
    perturb(fam, 2)
    trained = predict(fam, x, t, cond)
    refs.advance(2)
    assert len(refs.pool) == 3  # theta_0 + the newest 2

    for name, slot, expect in [("ref", 0, base), ("ref", 1, after1), ("ref", 2, trained), ("base", "initial", base)]:
        with refs.weights(name, slot):
            got = predict(fam, x, t, cond)
        assert torch.equal(got, expect), (name, slot)
        assert torch.equal(predict(fam, x, t, cond), trained), "the policy's predictions changed after a switch"
        assert fam.trainable_set() == trainable
    # the EMA after two updates: 0.25 theta_0 + 0.25 theta_1 + 0.5 theta_2
    w = "blocks.0.attn.q.weight"
    expect = 0.25 * refs.pool[0][w] + 0.25 * snap1[w] + 0.5 * fam.snapshot()[w]
    assert torch.allclose(refs.emas["avg"][w], expect, atol=1e-7)

    fresh = load_family(MODEL)
    assert torch.equal(predict(fresh, x, t, cond), base), "initial is not the base model"
    # a pool slot keeps its snapshot after more training (it is a copy, not a view of the live weights)
    perturb(fam, 3)
    with refs.weights("ref", 1):
        assert torch.equal(predict(fam, x, t, cond), after1)


def test_pool_keeps_theta0_and_newest():
    fam = load_family(MODEL)
    refs = References({"references": {}, "pool": {"every": 2, "keep": 2}}, fam)
    marks = []
    for update in range(1, 9):
        perturb(fam, update)
        refs.advance(update)
        if update % 2 == 0:
            marks.append(fam.snapshot()["pos_embed"])
    assert len(refs.pool) == 3
    assert torch.equal(refs.pool[1]["pos_embed"], marks[-2]) and torch.equal(refs.pool[2]["pos_embed"], marks[-1])
    assert torch.equal(refs.pool[0]["pos_embed"], load_family(MODEL).snapshot()["pos_embed"])
