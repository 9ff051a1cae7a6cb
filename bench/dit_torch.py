"""PyTorch twin of seppoc's DiT (src/model/dit.rs): same layout, same init, same batch, on CPU or CUDA.

Usage: python bench/dit_torch.py OUT_DIR [cpu|cuda] [--compile]   (OUT_DIR holds init.safetensors and
batch.safetensors from `cargo run --release --example bench_dit`). Prints the initial loss, 5 AdamW losses and
median timings; on CUDA every timed region ends with torch.cuda.synchronize() and the memory column is the peak
allocated GPU memory.

Eager by default (`RESULT torch ...`, `torch.optim.AdamW` in its default for-each form). With `--compile` the
loss (forward + epsilon-MSE) and the no-grad forward run under `torch.compile` (inductor, default mode, one graph
each: shapes never change here) and the update is `torch.optim.AdamW(..., fused=True)` (`RESULT torch-compile
...`); the warm-up calls, which trace and compile, are timed separately (`compile_s`) and left out of the medians.
"""
import json
import os
import resource
import sys
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file

WARMUP, TIMED = 3, 15


# The model itself is the PyTorch trainer's (seppoc_torch's DiT family), so the benchmark times the same code.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from seppoc_torch.dit import dit_core as forward, text_pool, timestep_embedding as sincos  # noqa: E402


def main():
    argv = [a for a in sys.argv[1:] if a != "--compile"]
    compiled = len(argv) < len(sys.argv) - 1
    out = argv[0] if argv else "target/bench"
    device = argv[1] if len(argv) > 1 else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench/dit_torch.py: --device cuda asked for, but torch.cuda.is_available() is False")
        sync = torch.cuda.synchronize
    else:
        torch.set_num_threads(2)
        sync = lambda: None
    with safe_open(f"{out}/init.safetensors", framework="pt") as f:
        cfg = json.loads(f.metadata()["dit_config"])
    P = {k: v.to(device).clone().requires_grad_(True) for k, v in load_file(f"{out}/init.safetensors").items()}
    batch = load_file(f"{out}/batch.safetensors")
    x, eps, t = batch["x_t"].to(device), batch["eps"].to(device), batch["t"].long()
    temb = sincos(t, cfg["width"]).to(device)
    pool = text_pool(batch["tokens"].long(), cfg["vocab_size"], cfg["max_tokens"]).to(device)
    loss_of = lambda: ((forward(P, cfg, x, temb, pool) - eps) ** 2).mean()
    loss_fn, nograd_fwd = loss_of, lambda: forward(P, cfg, x, temb, pool)
    if compiled:
        # One compiled function per use: the taped loss (inductor fuses the MSE into the forward's last kernel) and
        # the no-grad forward (its own inference graph). Warm-up calls below trigger the compilation.
        loss_fn, nograd_fwd = torch.compile(loss_of), torch.compile(nograd_fwd)
    with torch.no_grad():
        init_loss = loss_of().item()
    print(f"config: {sum(v.numel() for v in P.values())} params, batch {x.shape[0]}, initial loss {init_loss:.6f}")
    fwd, warm_fwd = [], 0.0
    with torch.no_grad():
        for i in range(WARMUP + TIMED):
            t0 = time.perf_counter()
            nograd_fwd()
            sync()
            if i >= WARMUP:
                fwd.append((time.perf_counter() - t0) * 1e3)
            else:
                warm_fwd += time.perf_counter() - t0
    decay = [v for k, v in P.items() if v.dim() >= 2 and not k.endswith("embed")]
    no_decay = [v for k, v in P.items() if not (v.dim() >= 2 and not k.endswith("embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if compiled else {}))
    step, fw, bw, up, losses, warm_step = [], [], [], [], [], 0.0
    for i in range(WARMUP + TIMED):
        sync()
        t0 = time.perf_counter()
        loss = loss_fn()
        losses.append(loss.item())
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= WARMUP:
            step.append((t3 - t0) * 1e3)
            fw.append((t1 - t0) * 1e3)
            bw.append((t2 - t1) * 1e3)
            up.append((t3 - t2) * 1e3)
        else:
            warm_step += t3 - t0
    med = lambda v: sorted(v)[len(v) // 2]
    print("losses (first 5 AdamW steps):", [round(l, 6) for l in losses[:5]])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        rss = torch.cuda.max_memory_allocated() / 2**20
        print(f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    # The columns stay where bench/run.sh reads them (step_ms 4th, nograd_fwd_ms 12th); the compiled side adds the
    # wall time of its warm-up calls (compilation included) for the no-grad forward and the training step.
    who = "torch-compile" if compiled else "torch"
    warm = f" warmup_s nograd {warm_fwd:.1f} step {warm_step:.1f}" if compiled else ""
    print(f"RESULT {who} step_ms {med(step):.1f} fwd {med(fw):.1f} bwd {med(bw):.1f} adamw {med(up):.1f} "
          f"nograd_fwd_ms {med(fwd):.1f} peak_rss_mib {rss:.0f}{warm}")


if __name__ == "__main__":
    main()
