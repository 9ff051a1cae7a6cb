"""References of a PLAN over Family.snapshot(): initial (the base model), latest (the newest pool checkpoint),
uniform (a pool checkpoint drawn per step or per sample/prompt), ema (an exponential moving average of the policy).

The pool holds theta_0 first, then a snapshot of the trainable state every `every` updates, keeping the newest
`keep` besides theta_0 (as the Rust trainer does). Snapshots are CPU copies of the trainable state (for LoRA the
adapter state only, a few MB). A reference's weights are used through `Family.weights(snapshot)`, which restores
the trained weights afterwards.
"""
import torch


class References:
    def __init__(self, plan, family):
        self.plan, self.family = plan, family
        self.specs = plan["references"]
        self.pool = [family.snapshot()]
        self.emas = {r: family.snapshot() for r, s in self.specs.items() if s["strategy"] == "ema"}

    def draw(self, gen, b):
        """Per reference: its slot for every row of the global batch ("initial", a pool index, or "ema"); random
        draws (uniform) come from `gen` in reference order."""
        out = {}
        for name, s in self.specs.items():
            if s["strategy"] == "initial":
                out[name] = ["initial"] * b
            elif s["strategy"] == "latest":
                out[name] = [len(self.pool) - 1] * b
            elif s["strategy"] == "uniform" and s["draw"] == "step":
                out[name] = [int(torch.randint(len(self.pool), (1,), generator=gen))] * b
            elif s["strategy"] == "uniform":
                out[name] = torch.randint(len(self.pool), (b,), generator=gen).tolist()
            else:
                out[name] = ["ema"] * b
        return out

    def snapshot_of(self, name, slot):
        if slot == "initial":
            return None
        if slot == "ema":
            return self.emas[name]
        return self.pool[slot]

    def weights(self, name, slot):
        """Context manager: the family's module runs with reference `name`'s slot `slot`."""
        return self.family.weights(self.snapshot_of(name, slot))

    def advance(self, updates):
        """After an applied update (`updates` = updates applied so far): EMA, then the pool."""
        current = None
        for name, s in self.specs.items():
            if s["strategy"] == "ema":
                current = current or self.family.snapshot()
                d = s["decay"]
                for k, v in self.emas[name].items():
                    v.mul_(d).add_(current[k].to(v.dtype), alpha=1 - d)
        pool = self.plan["pool"]
        if pool and updates % pool["every"] == 0:
            self.pool.append(self.family.snapshot())
            del self.pool[1:max(1, len(self.pool) - pool["keep"])]

    def state_dict(self):
        return {"pool": self.pool, "emas": self.emas}

    def load_state_dict(self, d):
        self.pool = d["pool"]
        self.emas = d["emas"]
