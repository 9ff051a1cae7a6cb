"""PyTorch eager twin of seppoc's DiT (src/model/dit.rs): same layout, same init, same batch, on CPU or CUDA.

Usage: python bench/dit_torch.py OUT_DIR [cpu|cuda]   (OUT_DIR holds init.safetensors and batch.safetensors from
`cargo run --release --example bench_dit`). Prints the initial loss, 5 AdamW losses and median timings; on CUDA
every timed region ends with torch.cuda.synchronize() and the memory column is the peak allocated GPU memory.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

WARMUP, TIMED = 3, 15


def sincos(t, dim):
    half = dim // 2
    j = torch.arange(half, dtype=torch.float64)
    freq = torch.exp(-math.log(10000.0) * j / half)
    arg = t.double()[:, None] * freq[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1).float()


def text_pool(tokens, vocab, max_tokens):
    b = tokens.shape[0]
    rows = vocab * (max_tokens + 1)
    pool = torch.zeros(b, rows)
    for i in range(b):
        real = [(p, int(k)) for p, k in enumerate(tokens[i].tolist()) if int(k) != 0]
        if not real:
            pool[i, 0] = 1.0
            continue
        w = 1.0 / len(real)
        for p, k in real:
            pool[i, k] += w
            pool[i, vocab * (p + 1) + k] += w
    return pool


def act(name, x):
    if name == "relu":
        return F.relu(x)
    if name == "sigmoid_gelu":
        return x * torch.sigmoid(1.702 * x)
    return F.silu(x)


def forward(P, cfg, x, temb, pool):
    B, C, S, _ = x.shape
    p, W, H = cfg["patch_size"], cfg["width"], cfg["heads"]
    n = (S // p) ** 2
    lin = lambda name, h: h @ P[name + ".weight"] + P[name + ".bias"]
    xp = x.reshape(B, C, S // p, p, S // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B * n, p * p * C)
    cond = lin("t_embed.fc2", F.silu(lin("t_embed.fc1", temb))) + pool @ P["text_embed"]
    cs = F.silu(cond)
    h = (lin("patch_embed", xp).reshape(B, n, W) + P["pos_embed"][None]).reshape(B * n, W)

    def mod(hn, shift, scale):
        return (hn.reshape(B, n, W) * (1 + scale[:, None]) + shift[:, None]).reshape(B * n, W)

    def gate(a, g):
        return (a.reshape(B, n, W) * g[:, None]).reshape(B * n, W)

    dh = W // H
    for d in range(cfg["depth"]):
        pre = f"blocks.{d}."
        m = [lin(pre + "ada." + k, cs) for k in ["shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp"]]
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[0], m[1])
        q = lin(pre + "attn.q", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        k = lin(pre + "attn.k", hn).reshape(B, n, H, dh).permute(0, 2, 3, 1)
        v = lin(pre + "attn.v", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        a = torch.softmax((q @ k) * (1.0 / math.sqrt(dh)), dim=3) @ v
        a = lin(pre + "attn.o", a.permute(0, 2, 1, 3).reshape(B * n, W))
        h = gate(a, m[2]) + h
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[3], m[4])
        mm = lin(pre + "mlp.fc2", act(cfg["activation"], lin(pre + "mlp.fc1", hn)))
        h = gate(mm, m[5]) + h
    hn = mod(F.layer_norm(h, (W,), eps=1e-5), lin("final.ada.shift", cs), lin("final.ada.scale", cs))
    out = lin("final.out", hn)
    return out.reshape(B, S // p, S // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, S, S)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
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
    loss_fn = lambda: ((forward(P, cfg, x, temb, pool) - eps) ** 2).mean()
    with torch.no_grad():
        init_loss = loss_fn().item()
    print(f"config: {sum(v.numel() for v in P.values())} params, batch {x.shape[0]}, initial loss {init_loss:.6f}")
    fwd = []
    with torch.no_grad():
        for i in range(WARMUP + TIMED):
            t0 = time.perf_counter()
            forward(P, cfg, x, temb, pool)
            sync()
            if i >= WARMUP:
                fwd.append((time.perf_counter() - t0) * 1e3)
    decay = [v for k, v in P.items() if v.dim() >= 2 and not k.endswith("embed")]
    no_decay = [v for k, v in P.items() if not (v.dim() >= 2 and not k.endswith("embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    step, fw, bw, up, losses = [], [], [], [], []
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
    med = lambda v: sorted(v)[len(v) // 2]
    print("losses (first 5 AdamW steps):", [round(l, 6) for l in losses[:5]])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        rss = torch.cuda.max_memory_allocated() / 2**20
        print(f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    print(f"RESULT torch step_ms {med(step):.1f} fwd {med(fw):.1f} bwd {med(bw):.1f} adamw {med(up):.1f} "
          f"nograd_fwd_ms {med(fwd):.1f} peak_rss_mib {rss:.0f}")


if __name__ == "__main__":
    main()
