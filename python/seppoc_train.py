"""PyTorch trainer for seppoc objectives: follows an emitted module's PLAN (`seppoc emit --target torch`).

Trains seppoc's DiT (the same model as bench/dit_torch.py, image world) from a seppoc safetensors checkpoint on
the preference data `seppoc export-torch` writes, single-process or under torchrun with DistributedDataParallel
(gloo on CPU, nccl on CUDA):

    seppoc emit --target torch objectives/seppo.obj -o seppo_loss.py
    seppoc export-torch objectives/seppo.obj --out export --data-size 512
    torchrun --nproc_per_node 2 python/seppoc_train.py --objective seppo_loss.py --data export/data.safetensors \
        --model assets/base/model.safetensors --steps 20 --batch 16 --out runs/torch-seppo

Per step (PLAN): draw the global batch, pick each reference (initial, latest, a uniformly random pool checkpoint
per step or per prompt, or an EMA), generate each `sample(...)`'s reference samples (DDIM/DDPM with CFG, no
gradient), draw (t, eps) shared by a prompt's images or independent per image, run one taped policy pass and one
untaped pass per reference, call `objective(...)`, clip the global gradient norm, AdamW (warmup, decoupled decay
on matrices except embeddings, as seppoc), snapshot the pool. Every random draw comes from one generator seeded
by --seed and is made for the whole global batch, then sharded, so N processes train exactly as one.
Batch statistics inside the loss (a `mean` under `stopgrad`, e.g. KTO's z0) are per process under DDP.
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

PAD = 0
DTYPE = torch.get_default_dtype  # float32 unless --dtype float64


# ---------------------------------------------------------------- the DiT (src/model/dit.rs, image world)
def timestep_embedding(t, dim):
    half = dim // 2
    j = torch.arange(half, dtype=torch.float64)
    freq = torch.exp(-math.log(10000.0) * j / half)
    arg = t.double()[:, None] * freq[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1).to(DTYPE())


def text_pool(tokens, vocab, max_tokens):
    """Bag of words plus bag of (position, word); an all-PAD caption is the null condition (row 0)."""
    b = tokens.shape[0]
    pool = torch.zeros(b, vocab * (max_tokens + 1))
    real = tokens != PAD
    n = real.sum(1)
    pool[n == 0, 0] = 1.0
    w = torch.where(n > 0, 1.0 / n.clamp(min=1).to(DTYPE()), torch.zeros(()))
    rows, pos = real.nonzero(as_tuple=True)
    ids = tokens[rows, pos]
    pool.index_put_((rows, ids), w[rows], accumulate=True)
    pool.index_put_((rows, vocab * (pos + 1) + ids), w[rows], accumulate=True)
    return pool


def dit_forward(P, cfg, x, t, tokens):
    """The DiT's noise prediction for images `x` at timesteps `t` with captions `tokens` (weights `P`)."""
    temb = timestep_embedding(t.cpu(), cfg["width"]).to(x.device)
    pool = text_pool(tokens.cpu(), cfg["vocab_size"], cfg["max_tokens"]).to(x.device)
    return dit_core(P, cfg, x, temb, pool)


def dit_core(P, cfg, x, temb, pool):
    """The DiT on a precomputed timestep embedding and caption pool (bench/dit_torch.py times this)."""
    B, C, S, _ = x.shape
    p, W, H = cfg["patch_size"], cfg["width"], cfg["heads"]
    n = (S // p) ** 2

    def lin(name, h):
        return h @ P[name + ".weight"] + P[name + ".bias"]

    xp = x.reshape(B, C, S // p, p, S // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B * n, p * p * C)
    cond = lin("t_embed.fc2", F.silu(lin("t_embed.fc1", temb))) + pool @ P["text_embed"]
    cs = F.silu(cond)
    h = (lin("patch_embed", xp).reshape(B, n, W) + P["pos_embed"][None]).reshape(B * n, W)

    def mod(hn, shift, scale):
        return (hn.reshape(B, n, W) * (1 + scale[:, None]) + shift[:, None]).reshape(B * n, W)

    def gate(a, g):
        return (a.reshape(B, n, W) * g[:, None]).reshape(B * n, W)

    act = {"relu": F.relu, "sigmoid_gelu": lambda v: v * torch.sigmoid(1.702 * v)}.get(cfg["activation"], F.silu)
    dh = W // H
    for d in range(cfg["depth"]):
        pre = f"blocks.{d}."
        m = [lin(pre + "ada." + k, cs) for k in
             ["shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp"]]
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[0], m[1])
        q = lin(pre + "attn.q", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        k = lin(pre + "attn.k", hn).reshape(B, n, H, dh).permute(0, 2, 3, 1)
        v = lin(pre + "attn.v", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        a = torch.softmax((q @ k) * (1.0 / math.sqrt(dh)), dim=3) @ v
        h = gate(lin(pre + "attn.o", a.permute(0, 2, 1, 3).reshape(B * n, W)), m[2]) + h
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[3], m[4])
        h = gate(lin(pre + "mlp.fc2", act(lin(pre + "mlp.fc1", hn))), m[5]) + h
    hn = mod(F.layer_norm(h, (W,), eps=1e-5), lin("final.ada.shift", cs), lin("final.ada.scale", cs))
    out = lin("final.out", hn)
    return out.reshape(B, S // p, S // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, S, S)


class Dit(torch.nn.Module):
    """The policy as a module (DDP needs one); parameter names are seppoc's with '.' spelled '__'."""

    def __init__(self, tensors, cfg):
        super().__init__()
        self.cfg = cfg
        self.names = sorted(tensors)
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.clone()) for k, v in tensors.items()})

    def tensors(self):
        return {k: self.p[k.replace(".", "__")] for k in self.names}

    def forward(self, x, t, tokens):
        return dit_forward(self.tensors(), self.cfg, x, t, tokens)


def per_sample_error(pred, eps):
    return ((pred - eps) ** 2).flatten(1).mean(1)


# ---------------------------------------------------------------- sampling (src/sampler)
def timesteps(n_train, steps):
    s = min(max(steps, 1), max(n_train, 1))
    return [max(int(math.floor(n_train - i * n_train / s + 0.5)) - 1, 0) for i in range(s)]


@torch.no_grad()
def sample(P, cfg, ac, spec, tokens, x, seed, rows, b_global):
    """Reference samples from noise `x` for `tokens`: DDIM (eta) or DDPM, with CFG on a [cond; null] batch.
    Step noise is drawn for the whole global batch from `seed` and rows `rows` are used, so the samples do not
    depend on how the batch is split over processes or reference groups."""
    ts = timesteps(len(ac), spec["steps"])
    w = spec["cfg"]
    gen = torch.Generator().manual_seed(seed)
    for i, t in enumerate(ts):
        last = i + 1 == len(ts)
        b = x.shape[0]
        if w == 1.0:
            eps = dit_forward(P, cfg, x, torch.full((b,), t), tokens)
        else:
            both = dit_forward(P, cfg, torch.cat([x, x]), torch.full((2 * b,), t),
                               torch.cat([tokens, torch.full_like(tokens, PAD)]))
            c, u = both[:b], both[b:]
            eps = u + w * (c - u)
        ab = float(ac[t])
        ab_prev = 1.0 if last else float(ac[ts[i + 1]])
        xd, ed = x.double(), eps.double()
        x0 = ((xd - math.sqrt(1 - ab) * ed) / math.sqrt(ab)).clamp(-1, 1)
        noise = torch.zeros_like(xd)
        if not last and (spec["sampler"] == "ddpm" or spec["eta"] > 0):
            noise = torch.randn((b_global,) + tuple(xd.shape[1:]), generator=gen, dtype=torch.float64)[rows].to(xd.device)
        if spec["sampler"] == "ddim":
            sigma = spec["eta"] * math.sqrt(max((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), 0.0))
            direction = math.sqrt(max(1 - ab_prev - sigma * sigma, 0.0))
            e = (xd - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            x = (math.sqrt(ab_prev) * x0 + direction * e + sigma * noise).to(DTYPE())
        else:
            beta = 1 - ab / ab_prev
            c0 = math.sqrt(ab_prev) * beta / (1 - ab)
            ct = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
            std = math.sqrt(max(beta * (1 - ab_prev) / (1 - ab), 0.0))
            x = (c0 * x0 + ct * xd + std * noise).to(DTYPE())
    return x.clamp(-1, 1)


# ---------------------------------------------------------------- the trainer
def load_objective(path):
    spec = importlib.util.spec_from_file_location("seppoc_objective", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_model(path):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    # The noising, the error and the sampler below are epsilon-prediction's; a checkpoint that records another
    # parametrisation (v, flow) would train on the wrong target.
    param = json.loads(meta.get("schedule", "{}")).get("param", "epsilon")
    if param != "epsilon":
        sys.exit(f"{path}: a {param} model; this trainer trains epsilon-prediction models only "
                 "(train it with `seppoc run`)")
    return load_file(path), json.loads(meta["dit_config"]), meta


def save_model(path, tensors, meta, step):
    meta = dict(meta, step=str(step), kind="run", command="python/seppoc_train.py")
    tmp = path + ".tmp"
    save_file({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
    os.replace(tmp, path)


def clip_grad_norm(params, max_norm):
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if max_norm > 0 and norm > max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


class Trainer:
    def __init__(self, args):
        self.args = args
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if args.batch % self.world:
            sys.exit(f"--batch {args.batch} is not divisible by {self.world} processes")
        self.dev = torch.device(args.device)
        self.obj = load_objective(args.objective)
        self.plan = self.obj.PLAN
        tensors, self.cfg, self.meta = load_model(args.model)
        tensors = {k: v.to(DTYPE()) for k, v in tensors.items()}
        with safe_open(args.data, framework="pt") as f:
            dmeta = f.metadata()
        self.data = {k: v.to(DTYPE()) if v.is_floating_point() else v for k, v in load_file(args.data).items()}
        self.ac = json.loads(dmeta["alphas_cumprod"])
        if self.plan["data"] == "pairs" and "loser" not in self.data:
            sys.exit(f"objective {self.obj.NAME!r} reads losers but {args.data} has no pairs")
        self.policy = Dit(tensors, self.cfg).to(self.dev)
        self.model = torch.nn.parallel.DistributedDataParallel(self.policy) if self.world > 1 else self.policy
        self.pool = [self.snapshot()]  # theta_0 first
        self.emas = {r: self.snapshot() for r, s in self.plan["references"].items() if s["strategy"] == "ema"}
        decay = [p for k, p in zip(self.policy.names, self.policy.tensors().values())
                 if p.dim() >= 2 and not k.endswith("embed")]
        ids = {id(p) for p in decay}
        rest = [p for p in self.policy.tensors().values() if id(p) not in ids]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                     lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.step = 0

    def snapshot(self):
        return {k: v.detach().clone() for k, v in self.policy.tensors().items()}

    def shard(self, x):
        n = x.shape[0] // self.world
        return x[self.rank * n:(self.rank + 1) * n]

    def references(self, b):
        """Per reference: the pool index (or 'ema') for every prompt of the global batch."""
        out = {}
        for name, s in self.plan["references"].items():
            if s["strategy"] == "initial":
                out[name] = [0] * b
            elif s["strategy"] == "latest":
                out[name] = [len(self.pool) - 1] * b
            elif s["strategy"] == "uniform" and s["draw"] == "step":
                out[name] = [int(torch.randint(len(self.pool), (1,), generator=self.gen))] * b
            elif s["strategy"] == "uniform":
                out[name] = torch.randint(len(self.pool), (b,), generator=self.gen).tolist()
            else:
                out[name] = ["ema"] * b
        return out

    def weights(self, name, slot):
        return self.emas[name] if slot == "ema" else self.pool[slot]

    def draw(self):
        """Every random input of a step for the global batch (same on every rank), then this rank's shard."""
        b, C = self.args.batch, self.cfg["channels"]
        S = self.cfg["image_size"]
        idx = torch.randint(self.data["winner"].shape[0], (b,), generator=self.gen)
        refs = self.references(b)
        tokens = self.data["tokens"][idx]
        images = {"winner": self.data["winner"][idx]}
        if "loser" in self.data and self.plan["data"] == "pairs":
            images["loser"] = self.data["loser"][idx]
        mine = self.shard(torch.arange(b))
        for spec in self.plan["samples"]:
            x = torch.randn((b, C, S, S), generator=self.gen)
            seed = int(torch.randint(2 ** 62, (1,), generator=self.gen))
            imgs = torch.zeros(b, C, S, S)
            slots = [refs[spec["model"]][i] for i in mine.tolist()]
            for slot in sorted(set(slots), key=str):
                sel = mine[torch.tensor([s == slot for s in slots])]
                w = {k: v.to(self.dev) for k, v in self.weights(spec["model"], slot).items()}
                imgs[sel] = sample(w, self.cfg, self.ac, spec, tokens[sel].to(self.dev), x[sel].to(self.dev),
                                   seed, sel, b).cpu()
            images[spec["images"]] = imgs
        kinds = sorted(images)
        noise = {}
        common = None
        for kind in kinds:
            if self.plan["noise"] == "shared" and common is not None:
                noise[kind] = common
                continue
            t = torch.randint(len(self.ac), (b,), generator=self.gen)
            eps = torch.randn((b, C, S, S), generator=self.gen)
            noise[kind] = (t, eps)
            if self.plan["noise"] == "shared":
                common = noise[kind]
        batch = {}
        for kind in kinds:
            t, eps = noise[kind]
            ab = torch.tensor(self.ac, dtype=torch.float64)[t]
            x_t = ab.sqrt().to(DTYPE())[:, None, None, None] * images[kind] + (1 - ab).sqrt().to(DTYPE())[:, None, None, None] * eps
            batch[kind] = (self.shard(x_t), self.shard(t), self.shard(eps))
        return self.shard(tokens), batch, {k: [v[i] for i in mine.tolist()] for k, v in refs.items()}

    def leaves(self, tokens, batch, refs):
        """The per-sample errors the objective reads: one taped policy pass, one untaped pass per reference."""
        d = lambda v: v.to(self.dev)
        inputs = {}
        for p in self.plan["passes"]:
            kinds = p["images"]
            x = torch.cat([batch[k][0] for k in kinds])
            t = torch.cat([batch[k][1] for k in kinds])
            eps = torch.cat([batch[k][2] for k in kinds])
            toks = tokens.repeat(len(kinds), 1)
            if p["taped"]:
                err = per_sample_error(self.model(d(x), d(t), d(toks)), d(eps))
            else:
                slots = refs[p["model"]] * len(kinds)
                err = torch.zeros(x.shape[0], device=self.dev)
                with torch.no_grad():
                    for slot in sorted(set(slots), key=str):
                        sel = torch.tensor([s == slot for s in slots])
                        w = {k: v.to(self.dev) for k, v in self.weights(p["model"], slot).items()}
                        err[d(sel)] = per_sample_error(dit_forward(w, self.cfg, d(x[sel]), d(t[sel]), d(toks[sel])),
                                                       d(eps[sel]))
            n = tokens.shape[0]
            for j, k in enumerate(kinds):
                inputs[f"e_{p['model']}_{k}"] = err[j * n:(j + 1) * n]
        return inputs

    def train_step(self, replay=None):
        tokens, batch, refs = replay if replay is not None else self.draw()
        inputs = self.leaves(tokens, batch, refs)
        loss, _, logs = self.obj.objective(inputs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = list(self.policy.tensors().values())
        norm = clip_grad_norm(params, self.args.max_grad_norm)
        lr = self.args.lr * (min((self.step + 1) / self.args.warmup, 1.0) if self.args.warmup else 1.0)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.step += 1
        for name, s in self.plan["references"].items():
            if s["strategy"] == "ema":
                for k, v in self.policy.tensors().items():
                    self.emas[name][k].mul_(s["decay"]).add_(v.detach(), alpha=1 - s["decay"])
        pool = self.plan["pool"]
        if pool and self.step % pool["every"] == 0:
            self.pool.append(self.snapshot())
            del self.pool[1:max(1, len(self.pool) - pool["keep"])]
        stats = torch.tensor([loss.item()] + [v.item() for v in logs.values()], dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(stats)
            stats /= self.world
        means = {k: v.detach().mean().item() for k, v in inputs.items()}
        return {"step": self.step, "loss": stats[0].item(), "logs": dict(zip(logs, stats[1:].tolist())),
                "grad_norm": norm, "lr": lr, "leaf_means_rank0": means}


def replay_batch(path):
    """The native trainer's first step (`seppoc export-torch`'s first_step.safetensors)."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    t = load_file(path)
    kinds = sorted({k.split(".", 1)[1] for k in t if k.startswith("x_t.")})
    batch = {k: (t[f"x_t.{k}"].to(DTYPE()), t[f"t.{k}"], t[f"eps.{k}"].to(DTYPE())) for k in kinds}
    refs = {k: v for k, v in json.loads(meta["references"]).items()}
    return (t["tokens"], batch, refs), meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objective", required=True, help="module from `seppoc emit --target torch`")
    ap.add_argument("--data", required=True, help="data.safetensors from `seppoc export-torch`")
    ap.add_argument("--model", default="assets/base/model.safetensors", help="seppoc checkpoint to start from")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16, help="global batch (prompts per update, all processes)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process under torchrun)")
    ap.add_argument("--out", default=None, help="directory for model.safetensors, checkpoint.safetensors, metrics")
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--replay-first-step", default=None,
                    help="first_step.safetensors: train step 1 on the native trainer's recorded inputs and print "
                         "its loss beside seppoc's")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="float64 makes runs comparable across process counts to ~1e-12 (tests)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    ap.add_argument("--time", action="store_true",
                    help="add each step's wall time in ms (`step_ms`) to the printed records (bench/seppo_step.sh)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = args.device.startswith("cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(args.device)
    tr = Trainer(args)
    lead = tr.rank == 0
    if lead and args.out:
        os.makedirs(args.out, exist_ok=True)
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w") if lead and args.out else None
    replay = None
    if args.replay_first_step:
        if tr.world != 1:
            sys.exit("--replay-first-step runs in one process")
        replay, meta = replay_batch(args.replay_first_step)
    for _ in range(args.steps):
        t0 = time.perf_counter()
        rec = tr.train_step(replay if tr.step == 0 else None)
        if args.time:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            rec["step_ms"] = (time.perf_counter() - t0) * 1e3
        if replay is not None and tr.step == 1:
            rec["native_loss"] = json.loads(meta["loss"])
            rec["native_leaf_means"] = json.loads(meta["leaf_means"])
        if lead:
            print(json.dumps(rec), flush=True)
            if metrics:
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()
        if lead and args.out and args.checkpoint_every and tr.step % args.checkpoint_every == 0:
            save_model(os.path.join(args.out, "checkpoint.safetensors"), tr.policy.tensors(), tr.meta, tr.step)
    if lead and args.out:
        save_model(os.path.join(args.out, "model.safetensors"), tr.policy.tensors(), tr.meta, tr.step)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
