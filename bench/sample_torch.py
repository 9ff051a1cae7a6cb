"""Reference-sampling throughput in PyTorch: the DiT family's sampler (python/seppoc_torch/dit.py, the one the
PyTorch SePPO step runs) with deterministic DDIM, 10 steps, guidance 5, on a seppoc checkpoint, on CPU.

Usage: python bench/sample_torch.py [--model assets/base/model.safetensors] [--batch 16] [--reps 5] [--threads 2]
                                    [--compile]

Eager by default. With --compile the network body runs under torch.compile (inductor, default mode, shapes
specialised: one graph per batch size); the untimed warm-up call, which compiles, is reported separately
(`warmup_s`). Prints `RESULT torch|torch-compile batch B ms_per_call M samples_per_s S` for the median of --reps
timed calls after the warm-up. The captions are the token rows of examples/bench_sample.rs (colour, shape,
position words), so both sides sample the same prompts.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from seppoc_torch.dit import DitFamily, dit_core  # noqa: E402


def caption(i, max_tokens):
    """Token ids of the i-th benchmark caption (examples/bench_sample.rs builds the same rows)."""
    ids = [9 + i % 4, 13 + i % 3, 16 + i % 5]
    return ids + [0] * (max_tokens - len(ids))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "base", "model.safetensors"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    if args.batch < 1 or args.reps < 1 or args.threads < 1:
        sys.exit("bench/sample_torch.py: --batch, --reps and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    family = DitFamily.load(args.model)
    if args.compile:
        family.net.core = torch.compile(dit_core, dynamic=False)
    spec = {"sampler": "ddim", "steps": 10, "cfg": 5.0, "eta": 0.0}
    cond = {"tokens": torch.tensor([caption(i, family.cfg["max_tokens"]) for i in range(args.batch)])}
    shape = (args.batch, family.cfg["channels"], family.resolution, family.resolution)
    gen = torch.Generator().manual_seed(0)
    ms, warm = [], 0.0
    for rep in range(args.reps + 1):
        x_T = torch.randn(shape, generator=gen)
        t0 = time.perf_counter()
        out = family.sample(cond, x_T, spec, None)  # deterministic DDIM draws no noise
        elapsed = time.perf_counter() - t0
        assert out.shape == shape
        if rep == 0:
            warm = elapsed
        else:
            ms.append(elapsed * 1e3)
    med = sorted(ms)[len(ms) // 2]
    who = "torch-compile" if args.compile else "torch"
    print(f"{args.model}: {sum(p.numel() for p in family.net.parameters())} params, batch {args.batch}, DDIM 10 "
          f"steps, cfg 5, {args.threads} threads, torch {torch.__version__}")
    print(f"RESULT {who} batch {args.batch} ms_per_call {med:.1f} samples_per_s {args.batch * 1e3 / med:.1f}"
          + (f" warmup_s {warm:.1f}" if args.compile else ""))


if __name__ == "__main__":
    main()
