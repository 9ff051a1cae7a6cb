"""Evaluates emitted objective modules on given leaf and data values in float64, with autograd gradients.

Reads JSON from stdin: {"cases": [{"module": PATH, "inputs": {name: [..]}, "params": {..} | null,
"split": bool}, ...]} and prints {"results": [{"loss", "per_sample", "logs", "grad": {leaf: [..] | null}}, ...]}:
`grad` has an entry for every leaf (PLAN["leaves"]), None where autograd left no gradient (leaves the module
detaches); data values (PLAN["datums"]) are given without gradient.

A case with "split" true is computed as a 2-process data-parallel run would: two threads each call `objective`
on one half of the batch (per-step values given to both) with a `reduce` that sums the two threads' tensors
with gradient, as an all-reduce does. Its result is the first half's loss and logs ("loss_other", "logs_other":
the second half's, which must be the same global values), the halves' per-sample losses concatenated, and the
gradient of (loss_0 + loss_1) / 2, what DDP's averaging of the processes' gradients gives. Used by
tests/emit_torch.rs.
"""
import importlib.util
import json
import sys
import threading

import torch


def load(path, cache={}):
    if path not in cache:
        spec = importlib.util.spec_from_file_location(f"emitted_{len(cache)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cache[path] = module
    return cache[path]


def tensors(m, values):
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in m.PLAN["leaves"]) for k, v in values.items()}


class Exchange:
    """The `reduce` of each of two threads: both post a tensor, each gets their sum (with gradient to both)."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=60)
        self.slots = [None, None]

    def reduce(self, rank):
        def f(t):
            self.slots[rank] = t
            self.barrier.wait()
            total = self.slots[0] + self.slots[1]
            self.barrier.wait()
            return total

        return f


def split(m, case):
    inputs = case["inputs"]
    batch = max(len(v) for v in inputs.values())
    h = batch // 2
    halves = [
        {k: (v if len(v) == 1 and m.PLAN["datums"].get(k, {}).get("per_step") else v[a:b]) for k, v in inputs.items()}
        for a, b in ((0, h), (h, batch))
    ]
    leaves = [tensors(m, half) for half in halves]
    ex, out, errors = Exchange(), [None, None], []

    def work(rank):
        try:
            out[rank] = m.objective(leaves[rank], case.get("params"), reduce=ex.reduce(rank))
        except BaseException as e:  # reported below; the other thread's barrier times out
            errors.append(e)
            ex.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    (loss0, ps0, logs0), (loss1, ps1, logs1) = out
    ((loss0 + loss1) / 2).backward()

    def grad(k):
        gs = [half[k].grad for half in leaves]
        return None if any(g is None for g in gs) else torch.cat(gs).tolist()

    return {
        "loss": loss0.item(),
        "loss_other": loss1.item(),
        "per_sample": None if ps0 is None else torch.cat([ps0, ps1]).tolist(),
        "logs": {k: v.item() for k, v in logs0.items()},
        "logs_other": {k: v.item() for k, v in logs1.items()},
        "logs_require_grad": any(v.requires_grad for v in [*logs0.values(), *logs1.values()]),
        "grad": {k: grad(k) for k in m.PLAN["leaves"]},
    }


def run(case):
    m = load(case["module"])
    if case.get("split"):
        return split(m, case)
    inputs = tensors(m, case["inputs"])
    loss, per_sample, logs = m.objective(inputs, case.get("params"))
    assert loss.dim() == 0 and loss.dtype == torch.float64
    loss.backward()
    return {
        "loss": loss.item(),
        "per_sample": None if per_sample is None else per_sample.tolist(),
        "logs": {k: v.item() for k, v in logs.items()},
        "logs_require_grad": any(v.requires_grad for v in logs.values()),
        "grad": {k: (None if inputs[k].grad is None else inputs[k].grad.tolist()) for k in m.PLAN["leaves"]},
    }


def main():
    torch.set_num_threads(1)
    cases = json.load(sys.stdin)["cases"]
    json.dump({"torch": torch.__version__, "results": [run(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
