"""Evaluates emitted objective modules on given leaf values in float64, with autograd gradients.

Reads JSON from stdin: {"cases": [{"module": PATH, "inputs": {leaf: [..]}, "params": {..} | null}, ...]} and
prints {"results": [{"loss", "per_sample", "logs", "grad": {leaf: [..] | null}}, ...]}: `grad` has an entry
for every leaf, None where autograd left no gradient (leaves the module detaches). Used by tests/emit_torch.rs.
"""
import importlib.util
import json
import sys

import torch


def load(path, cache={}):
    if path not in cache:
        spec = importlib.util.spec_from_file_location(f"emitted_{len(cache)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cache[path] = module
    return cache[path]


def run(case):
    m = load(case["module"])
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in case["inputs"].items()}
    loss, per_sample, logs = m.objective(leaves, case.get("params"))
    assert loss.dim() == 0 and loss.dtype == torch.float64
    loss.backward()
    return {
        "loss": loss.item(),
        "per_sample": None if per_sample is None else per_sample.tolist(),
        "logs": {k: v.item() for k, v in logs.items()},
        "logs_require_grad": any(v.requires_grad for v in logs.values()),
        "grad": {k: (None if t.grad is None else t.grad.tolist()) for k, t in leaves.items()},
    }


def main():
    torch.set_num_threads(1)
    cases = json.load(sys.stdin)["cases"]
    json.dump({"torch": torch.__version__, "results": [run(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
