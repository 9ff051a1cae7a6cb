"""The PLAN executor: trains a Family with an emitted objective module under accelerate.

One optimizer update of --batch B prompts (global: all processes and accumulation steps together):
 1. every random draw for the B rows comes from ONE torch.Generator seeded by --seed, in a fixed order: the data
    order (shuffled epochs), each reference's slot (uniform per step or per prompt), caption dropout, each
    `sample(...)`'s x_T and sampler seed, then (t, eps) per draw (shared by a prompt's image kinds) or per view;
 2. the rows are cut into --grad-accum micro-batches and each of those into one shard per process, so N processes
    x A accumulation steps see exactly the rows and noise of 1 process x 1 step;
 3. per micro-batch: reference samples under no_grad with each reference slot's weights (grouped by slot), one
    no_grad pass per reference slot over all that reference's views, then one taped policy pass over all the
    policy's views; err/dist leaves in float32 (float64 with --dtype float64); datums; objective(...) with a
    differentiable cross-process sum when PLAN["global_loss"];
 4. accelerator.backward, and on the last micro-batch gradient clipping, warmup LR, AdamW, then the EMA, the pool
    and `progress` advance.
Checkpoints hold everything a resumed run needs to continue exactly as an uninterrupted one.
"""
import json
import math
import os
import sys
import time

import torch

from .data import DataOrder, ExportSource, open_data
from .family import SampleNoise, UserError, load_family
from .plan import check_feedable, load_objective, refuse_online
from .refs import References

CHECKPOINT = "checkpoint.pt"
RUN = "run.json"
IDENTITY = ("objective_sha256", "objective", "model", "data", "batch", "grad_accum", "lr", "warmup", "max_grad_norm",
            "seed", "lora_rank", "mixed_precision", "dtype", "caption_dropout", "steps")


def write_atomic(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def rows_of(k, rank, batch, accum, world):
    """Global row indices of micro-batch k on process `rank`."""
    micro = batch // accum
    n = micro // world
    start = k * micro + rank * n
    return list(range(start, start + n))


class Executor:
    def __init__(self, args, log=print):
        from accelerate import Accelerator
        self.args, self.log = args, log
        self.dtype = torch.float64 if args.dtype == "float64" else torch.float32
        cpu = args.cpu or not torch.cuda.is_available()
        try:
            self.acc = Accelerator(gradient_accumulation_steps=args.grad_accum, mixed_precision=args.mixed_precision,
                                   cpu=cpu, log_with=args.report_to or None, project_dir=args.out)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"--mixed-precision {args.mixed_precision}: {e}")
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.lead = self.acc.is_main_process
        b, a = args.batch, args.grad_accum
        if a < 1 or b < 1 or b % (a * self.world):
            raise UserError(f"--batch {b} must be a multiple of --grad-accum {a} x {self.world} processes")
        if args.report_to and not args.out:
            raise UserError("--report-to needs --out (the trackers write there)")
        self.obj = load_objective(args.objective)
        refuse_online(self.obj)  # before the data is opened: its reward columns are not what such a file reads
        self.plan = self.obj.plan
        self.identity = {
            "objective_sha256": self.obj.sha256, "objective": self.obj.name,
            "model": os.path.abspath(args.model) if os.path.exists(args.model) else args.model,
            "data": os.path.abspath(args.data) if os.path.exists(args.data) else args.data,
            "batch": b, "grad_accum": a, "lr": args.lr, "warmup": args.warmup, "max_grad_norm": args.max_grad_norm,
            "seed": args.seed, "lora_rank": args.lora_rank, "mixed_precision": args.mixed_precision,
            "dtype": args.dtype, "caption_dropout": args.caption_dropout, "steps": args.steps}
        self.resume_from = self.decide_out() if args.out else None
        torch.manual_seed(args.seed)  # any random initialisation in the family (LoRA A) is the same on every rank
        self.family = load_family(args.model, lora_rank=args.lora_rank, device=self.acc.device, dtype=self.dtype,
                                  mixed_precision=args.mixed_precision)
        self.data = open_data(args.data, self.plan, self.family, log=log)
        if isinstance(self.data, ExportSource) and self.data.alphas_cumprod and hasattr(self.family,
                                                                                         "set_alphas_cumprod"):
            self.family.set_alphas_cumprod(self.data.alphas_cumprod)
        check_feedable(self.obj, self.family, self.data)
        self.kinds = self.obj.image_kinds()
        self.cache = {} if args.cache_latents else None
        probe = self.data.fetch([0], self.kinds, self.family, self.cache)[1]
        self.shape = tuple(probe[self.kinds[0]].shape[1:])
        self.refs = References(self.plan, self.family)
        self.params = [p for _, p in self.family.trainable_parameters()]
        fused = {}
        if getattr(args, "compile", False):
            self.family.compile()
            fused = {"fused": True}  # one kernel per parameter group instead of the for-each chain
        opt = torch.optim.AdamW(self.family.optimizer_groups(0.01), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                                **fused)
        self.model, self.opt = self.acc.prepare(self.family.module(), opt)
        # The bare module under the DDP wrapper, for the reference passes (adapter switches need it); looked up
        # once: accelerate's unwrap_model walks every submodule on each call.
        self.bare = self.acc.unwrap_model(self.model)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.order = DataOrder(len(self.data))
        self.step = 0
        if args.out:
            self.finish_out()
        if self.world > 1 and self.plan["global_loss"]:
            import torch.distributed.nn.functional as dist_fn
            self.reduce = lambda t: dist_fn.all_reduce(t)
        else:
            self.reduce = None

    # ------------------------------------------------------------ output folder, run identity, resume
    def decide_out(self):
        """Before anything is loaded: is --out free, this run (with --resume), or another run (refused)?
        Returns the checkpoint to resume from, or None."""
        out, args = self.args.out, self.args
        run_file = os.path.join(out, RUN)
        ckpt = None
        if os.path.isfile(run_file):
            with open(run_file) as f:
                theirs = json.load(f)
            diff = [f"{k}: {theirs.get(k)!r} there, {self.identity[k]!r} here" for k in IDENTITY
                    if theirs.get(k) != self.identity[k]]
            if diff:
                raise UserError(f"{out} holds a different run ({'; '.join(diff)}); choose another --out")
            if not args.resume:
                raise UserError(f"{out} holds this run already; pass --resume to continue it, or choose another --out")
            ckpt = os.path.join(out, CHECKPOINT)
            if not os.path.isfile(ckpt):
                raise UserError(f"{out}: nothing to resume (no {CHECKPOINT}; was --checkpoint-every 0?)")
        else:
            if args.resume:
                raise UserError(f"{out}: nothing to resume (no {RUN})")
            if os.path.isdir(out) and os.listdir(out):
                raise UserError(f"{out} is not empty and is not a seppoc-torch run folder; refusing to write into it")
        self.acc.wait_for_everyone()  # every process has decided before the lead writes
        return ckpt

    def finish_out(self):
        """After the model and data loaded: resume state, run.json, metrics.jsonl."""
        out = self.args.out
        if self.resume_from:
            self.load_checkpoint(self.resume_from)
        elif self.lead:
            os.makedirs(out, exist_ok=True)
            write_atomic(os.path.join(out, RUN), lambda p: json.dump(self.identity, open(p, "w"), indent=1))
        if self.lead:
            path = os.path.join(out, "metrics.jsonl")
            kept = []
            if os.path.isfile(path):  # a resumed run: drop records past the checkpoint (they are recomputed)
                kept = [l for l in open(path) if l.strip() and json.loads(l)["step"] <= self.step]
            self.metrics = open(path, "w")
            self.metrics.writelines(kept)
            self.metrics.flush()
        self.acc.wait_for_everyone()

    def checkpoint(self):
        if not self.lead:
            return
        state = {
            "format": "seppoc-torch-checkpoint-1", "run": self.identity, "step": self.step,
            "trainable": {k: p.detach().cpu().clone() for k, p in self.family.trainable_parameters()},
            "optimizer": self.opt.state_dict(), "refs": self.refs.state_dict(), "gen": self.gen.get_state(),
            "order": self.order.state_dict(), "family": self.family.state_dict_for_resume(),
            "scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
        }
        write_atomic(os.path.join(self.args.out, CHECKPOINT), lambda p: torch.save(state, p))

    def load_checkpoint(self, path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise UserError(f"{path}: not a readable checkpoint ({e})")
        if state.get("format") != "seppoc-torch-checkpoint-1":
            raise UserError(f"{path}: not a seppoc-torch checkpoint")
        with torch.no_grad():
            saved = state["trainable"]
            for k, p in self.family.trainable_parameters():
                p.copy_(saved[k])
        self.opt.load_state_dict(state["optimizer"])
        self.refs.load_state_dict(state["refs"])
        self.gen.set_state(state["gen"])
        self.order.load_state_dict(state["order"])
        self.family.load_state_for_resume(state["family"])
        if state["scaler"] is not None and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]

    # ------------------------------------------------------------ one update's random draws (global batch)
    def draw(self):
        B, plan = self.args.batch, self.plan
        g = {"idx": self.order.take(B, self.gen), "refs": self.refs.draw(self.gen, B)}
        g["drop"] = torch.rand(B, generator=self.gen) < self.args.caption_dropout if self.args.caption_dropout > 0 \
            else None
        g["samples"] = []
        for spec in plan["samples"]:
            x_T = torch.randn((B,) + self.shape, generator=self.gen, dtype=self.dtype)
            seed = int(torch.randint(2 ** 62, (1,), generator=self.gen))
            g["samples"].append((x_T, seed))
        noise = {}
        for d in range(int(plan["draws"])):
            views = [v for v in plan["views"] if v["draw"] == d]
            shared = None
            for v in views:
                if plan["noise"] == "shared" and shared is not None:
                    noise[v["name"]] = shared
                    continue
                t = self.family.draw_t(self.gen, B)
                eps = torch.randn((B,) + self.shape, generator=self.gen, dtype=self.dtype)
                noise[v["name"]] = (t, eps)
                if plan["noise"] == "shared":
                    shared = noise[v["name"]]
        g["noise"] = noise
        return g

    # ------------------------------------------------------------ one micro-batch's inputs
    def micro_inputs(self, g, rows):
        """{view: (x_t, t, target)}, cond, slots {ref: [slot per local row]}, fields, for global rows `rows`."""
        dev, B = self.acc.device, self.args.batch
        cond, images, fields = self.data.fetch([g["idx"][r] for r in rows], self.kinds, self.family, self.cache)
        cond = {k: v.to(dev) for k, v in cond.items()}
        images = {k: v.to(dev, self.dtype) for k, v in images.items()}
        slots = {name: [s[r] for r in rows] for name, s in g["refs"].items()}
        rows_t = torch.tensor(rows)
        for spec, (x_T, seed) in zip(self.plan["samples"], g["samples"]):
            out = torch.zeros((len(rows),) + self.shape, dtype=self.dtype, device=dev)
            s_slots = slots[spec["model"]] if spec["model"] != "policy" else ["policy"] * len(rows)
            for slot in sorted(set(s_slots), key=str):
                sel = torch.tensor([s == slot for s in s_slots])
                noise = SampleNoise(seed, rows_t[sel], B, self.shape, device=dev)
                sub = {k: v[sel.to(v.device)] for k, v in cond.items()}
                with torch.no_grad(), self.acc.autocast():
                    if spec["model"] == "policy":
                        x = self.family.sample(sub, x_T[rows_t[sel]].to(dev), spec, noise)
                    else:
                        with self.refs.weights(spec["model"], slot):
                            x = self.family.sample(sub, x_T[rows_t[sel]].to(dev), spec, noise)
                out[sel.to(dev)] = x.to(self.dtype)
            images[spec["images"]] = out
        if g["drop"] is not None:
            drop = g["drop"][rows_t]
            if drop.any():
                null = self.family.null_cond(len(rows))
                cond = {k: torch.where(drop.to(v.device).view((-1,) + (1,) * (v.dim() - 1)), null[k].to(v.device), v)
                        for k, v in cond.items()}
        views = {}
        for v in self.plan["views"]:
            t, eps = g["noise"][v["name"]]
            t, eps = t[rows_t], eps[rows_t].to(dev)
            x0 = images[v["images"]]
            views[v["name"]] = (self.family.add_noise(x0, eps, t), t, self.family.target(x0, eps, t))
        return views, cond, slots, fields

    # ------------------------------------------------------------ passes, leaves, datums
    def predictions(self, views, cond, slots, model, taped):
        """Predictions of `model` on its views (one batched pass; reference passes grouped by slot)."""
        names = [n for q in self.plan["passes"] if q["model"] == model for n in q["views"]]
        x = torch.cat([views[n][0] for n in names])
        t = torch.cat([views[n][1] for n in names])
        c = {k: v.repeat((len(names),) + (1,) * (v.dim() - 1)) for k, v in cond.items()}
        n = views[names[0]][0].shape[0]
        if taped:
            with self.acc.autocast():
                pred = self.family.predict(self.model, x, t, c)
        else:
            row_slots = slots[model] * len(names)
            pred = None
            bare = self.bare
            with torch.no_grad():
                for slot in sorted(set(row_slots), key=str):
                    sel = torch.tensor([s == slot for s in row_slots])
                    with self.refs.weights(model, slot), self.acc.autocast():
                        p = self.family.predict(bare, x[sel.to(x.device)], t[sel],
                                                {k: v[sel.to(v.device)] for k, v in c.items()})
                    if pred is None:
                        pred = torch.zeros((x.shape[0],) + tuple(p.shape[1:]), dtype=p.dtype, device=p.device)
                    pred[sel.to(p.device)] = p
        return {name: pred[j * n:(j + 1) * n] for j, name in enumerate(names)}

    def inputs(self, views, cond, slots, fields):
        plan, err_dtype, dev = self.plan, self.dtype, self.acc.device
        models = []
        for q in plan["passes"]:
            if q["model"] not in models:
                models.append(q["model"])
        preds = {}
        for m in models:  # references first: their weight switches must not touch a taped graph
            if m != "policy":
                preds[m] = self.predictions(views, cond, slots, m, taped=False)
        if "policy" in models:
            preds["policy"] = self.predictions(views, cond, slots, "policy", taped=True)
        out = {}
        for name, l in plan["leaves"].items():
            p = preds[l["model"]][l["view"]].to(err_dtype)
            if l["quantity"] == "err":
                d = p - views[l["view"]][2].to(err_dtype)
            else:
                d = p - preds[l["against"]][l["view"]].detach().to(err_dtype)
            v = (d * d).flatten(1).mean(1)
            out[name] = v if l["grad"] else v.detach()
        n = next(iter(views.values()))[0].shape[0]
        for name, d in plan["datums"].items():
            kind = d["kind"]
            if kind in ("timestep", "alpha", "sigma", "snr"):
                val = self.family.time_values(views[d["view"]][1])[kind]
            elif kind == "progress":
                val = torch.full((n,), self.step / self.args.steps, dtype=torch.float64)
            elif kind == "num_timesteps":
                val = torch.full((n,), float(self.family.num_timesteps), dtype=torch.float64)
            elif kind == "reward":
                val = fields["reward_" + d["images"]]
            else:
                val = fields[kind]
            out[name] = val.to(dev, err_dtype)
        return out

    # ------------------------------------------------------------ one update
    def update(self, replay=None):
        args = self.args
        g = self.draw() if replay is None else None
        totals, n_micro, norm = None, args.grad_accum, None
        leaf_sums = {}
        for k in range(n_micro):
            rows = rows_of(k, self.rank, args.batch, n_micro, self.world)
            with self.acc.accumulate(self.model):
                if replay is None:
                    views, cond, slots, fields = self.micro_inputs(g, rows)
                else:
                    views, cond, slots, fields = replay
                inputs = self.inputs(views, cond, slots, fields)
                loss, _, logs = self.obj.call(inputs, None, reduce=self.reduce)
                self.acc.backward(loss)
                if self.acc.sync_gradients:
                    clip = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
                    norm = float(self.acc.clip_grad_norm_(self.params, clip))
                lr = args.lr * (min((self.step + 1) / args.warmup, 1.0) if args.warmup else 1.0)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
            stats = torch.tensor([loss.item()] + [v.item() for v in logs.values()], dtype=torch.float64)
            totals = stats if totals is None else totals + stats
            for name, v in inputs.items():
                if name in self.plan["leaves"]:
                    leaf_sums[name] = leaf_sums.get(name, 0.0) + v.detach().double().sum().item()
        self.step += 1
        self.refs.advance(self.step)
        totals = totals / n_micro
        names = list(leaf_sums)
        sums = torch.tensor([leaf_sums[k] for k in names], dtype=torch.float64)
        if self.world > 1:
            import torch.distributed as dist
            if not self.plan["global_loss"]:
                dist.all_reduce(totals)
                totals /= self.world
            dist.all_reduce(sums)
        means = {k: (s / args.batch) for k, s in zip(names, sums.tolist())} if replay is None else \
            {k: s / next(iter(replay[0].values()))[0].shape[0] for k, s in zip(names, sums.tolist())}
        return {"step": self.step, "loss": totals[0].item(), "logs": dict(zip(logs, totals[1:].tolist())),
                "leaf_means": means, "grad_norm": norm, "lr": lr}

    # ------------------------------------------------------------ the run
    def replay_inputs(self, path):
        """`seppoc export-torch`'s first_step.safetensors: the native trainer's first-step tokens, x_t, t, eps
        per view and reference slots, so step 1 can be compared with `seppoc run`'s."""
        from safetensors import safe_open
        from safetensors.torch import load_file
        if self.world != 1 or self.args.grad_accum != 1:
            raise UserError("--replay-first-step runs in one process without accumulation")
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
        t = load_file(path)
        dev = self.acc.device
        views = {}
        for v in self.plan["views"]:
            x_t, tt, eps = (t[f"{q}.{v['name']}"] for q in ("x_t", "t", "eps"))
            views[v["name"]] = (x_t.to(dev, self.dtype), tt, eps.to(dev, self.dtype))
        slots = {k: [s if s == "ema" else int(s) for s in v] for k, v in json.loads(meta["references"]).items()}
        return (views, {"tokens": t["tokens"].to(dev)}, slots, {}), meta

    def run(self):
        args = self.args
        replay, meta = (self.replay_inputs(args.replay_first_step) if args.replay_first_step else (None, None))
        from tqdm import tqdm
        tty = self.lead and sys.stderr.isatty() and not args.json
        bar = tqdm(total=args.steps, initial=self.step, disable=not tty, dynamic_ncols=True, desc=self.obj.name)
        if self.lead and args.report_to:
            self.acc.init_trackers("seppoc-torch", config={k: str(v) for k, v in self.identity.items()})
        if self.lead and not args.json:
            self.log(f"seppoc-torch: {self.obj.name} ({self.obj.path}) on {self.family.describe()}; data "
                     f"{self.data.describe()}: {len(self.data)} items; {self.world} process(es), batch {args.batch}"
                     f" = {args.grad_accum} x {args.batch // args.grad_accum}; from update {self.step} to {args.steps}")
        while self.step < args.steps:
            t0 = time.perf_counter()
            rec = self.update(replay if (replay is not None and self.step == 0) else None)
            if args.time:
                if self.acc.device.type == "cuda":
                    torch.cuda.synchronize()
                rec["step_ms"] = (time.perf_counter() - t0) * 1e3
            if meta is not None and rec["step"] == 1:
                rec["native_loss"] = json.loads(meta["loss"])
                rec["native_leaf_means"] = json.loads(meta["leaf_means"])
            if self.lead:
                self.report(rec, bar)
            if args.out and args.checkpoint_every and self.step % args.checkpoint_every == 0:
                self.checkpoint()
            if args.stop_after and self.step >= args.stop_after:
                break
        bar.close()
        if args.out and self.lead:
            self.family.trained_steps = self.step
            self.family.save(args.out)
        if args.report_to:
            self.acc.end_training()
        self.acc.wait_for_everyone()

    def report(self, rec, bar):
        if getattr(self, "metrics", None):
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()
        if self.args.report_to:
            flat = {"loss": rec["loss"], "lr": rec["lr"], "grad_norm": rec["grad_norm"] or 0.0}
            flat.update({f"log/{k}": v for k, v in rec["logs"].items()})
            flat.update({f"leaf/{k}": v for k, v in rec["leaf_means"].items()})
            self.acc.log(flat, step=rec["step"])
        if self.args.json:
            print(json.dumps(rec), flush=True)
            return
        logs = " ".join(f"{k} {v:.4g}" for k, v in rec["logs"].items())
        if not bar.disable:
            bar.update(1)
            bar.set_postfix_str(f"loss {rec['loss']:.4g} {logs}".strip())
        else:
            leaves = " ".join(f"{k} {v:.4g}" for k, v in rec["leaf_means"].items())
            self.log(f"step {rec['step']}/{self.args.steps} loss {rec['loss']:.6g} {logs} lr {rec['lr']:.3g} "
                     f"grad_norm {rec['grad_norm']:.4g} | {leaves}".replace("  ", " "), flush=True)


def train(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "float64":
        torch.set_default_dtype(torch.float64)
    Executor(args).run()
