"""What the PLAN executor costs over a hand-written Diffusion-DPO LoRA loop, on the same model, data and batch.

Usage: python bench/torch_overhead.py [--model DIR] [--module dpo_loss.py] [--batch 4] [--rank 4] [--rounds 7]
                                      [--steps 3] [--threads 1]

Side by side on the CPU, in one process, interleaved (each round times `--steps` updates of one, then of the
other; the medians over all rounds are compared):
  executor  seppoc_torch's `Executor.update()` running objectives/dpo.obj as emitted by `seppoc emit --target
            torch` (the binary from SEPPOC_BIN or target/{release,debug}), LoRA on the UNet;
  plain     a loop written the way diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py
            trains: decode the pair's images, VAE-encode winner || loser, one (t, noise) per pair repeated for
            both images, UNet on the 2B batch, the reference by disabling the adapters, the SD1.5 loss
            -logsigmoid(beta (ref_diff - model_diff)), clipping, AdamW.
Both encode images and captions every update (no caches), on rows of assets/base/preferences.parquet, at the
same batch of pairs. The model defaults to the tiny SD-1.x-like pipeline of seppoc_torch.testing (random
weights, 32 px), so the numbers measure the executor's bookkeeping rather than a real UNet's arithmetic. Prints
the medians, their ratio, the CPU model and the load average.
"""
import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

PARQUET = os.path.join(ROOT, "assets", "base", "preferences.parquet")


def emitted_dpo(out_dir):
    exe = os.environ.get("SEPPOC_BIN") or next(
        (p for p in (os.path.join(ROOT, "target", d, "seppoc") for d in ("release", "debug")) if os.path.isfile(p)),
        None)
    if exe is None:
        sys.exit("bench/torch_overhead.py: no seppoc binary (cargo build, or set SEPPOC_BIN, or pass --module)")
    path = os.path.join(out_dir, "dpo_loss.py")
    subprocess.run([exe, "emit", "--target", "torch", os.path.join(ROOT, "objectives", "dpo.obj"), "-o", path],
                   check=True)
    return path


class Plain:
    """The diffusers-style Diffusion-DPO LoRA step (SD 1.x, epsilon or v)."""

    def __init__(self, model, rank, batch, beta, seed=0):
        import pyarrow.parquet as pq
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder").requires_grad_(False)
        self.vae = AutoencoderKL.from_pretrained(model, subfolder="vae").requires_grad_(False)
        self.unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet").requires_grad_(False)
        self.sched = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
        torch.manual_seed(seed)
        self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                         target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        self.params = [p for p in self.unet.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-5)
        self.res = self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.table = pq.read_table(PARQUET, columns=["caption", "jpg_0", "jpg_1", "label_0"])
        self.batch, self.beta = batch, beta
        self.gen = np.random.default_rng(seed)

    def pixels(self, raw):
        from PIL import Image

        img = Image.open(io.BytesIO(raw)).convert("RGB").resize((self.res, self.res), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    def step(self):
        rows = self.gen.integers(0, self.table.num_rows, self.batch).tolist()
        # winner first, as the script orders each pair by label_0
        w = [self.table.column("jpg_0" if self.table.column("label_0")[r].as_py() >= 0.5 else "jpg_1")[r].as_py()
             for r in rows]
        l_ = [self.table.column("jpg_1" if self.table.column("label_0")[r].as_py() >= 0.5 else "jpg_0")[r].as_py()
              for r in rows]
        px = torch.stack([self.pixels(b) for b in w + l_])
        ids = self.tokenizer([self.table.column("caption")[r].as_py() for r in rows], padding="max_length",
                             max_length=self.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids
        with torch.no_grad():
            latents = self.vae.encode(px).latent_dist.sample() * self.vae.config.scaling_factor
            hidden = self.text_encoder(ids)[0].repeat(2, 1, 1)
        noise = torch.randn_like(latents).chunk(2)[0].repeat(2, 1, 1, 1)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (self.batch,)).long().repeat(2)
        noisy = self.sched.add_noise(latents, noise, t)
        target = noise if self.sched.config.prediction_type == "epsilon" else self.sched.get_velocity(latents, noise, t)
        pred = self.unet(noisy, t, hidden).sample
        model_losses = (pred.float() - target.float()).pow(2).mean(dim=[1, 2, 3])
        mw, ml = model_losses.chunk(2)
        with torch.no_grad():
            self.unet.disable_adapters()
            ref = self.unet(noisy, t, hidden).sample
            self.unet.enable_adapters()
            ref_losses = (ref.float() - target.float()).pow(2).mean(dim=[1, 2, 3])
        rw, rl = ref_losses.chunk(2)
        loss = -F.logsigmoid(self.beta * ((rw - rl) - (mw - ml))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a Stable Diffusion 1.x/2.x folder (default: tiny random)")
    ap.add_argument("--module", default=None, help="dpo.obj emitted for torch (default: emit it now)")
    ap.add_argument("--batch", type=int, default=4, help="pairs per update")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="updates per contender per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from seppoc_torch.cli import parser
    from seppoc_torch.testing import tiny_sd
    from seppoc_torch.train import Executor

    tmp = tempfile.mkdtemp(prefix="torch-overhead-")
    model = args.model or tiny_sd(os.path.join(tmp, "tiny-sd"))
    module = args.module or emitted_dpo(tmp)
    ex = Executor(parser().parse_args([
        "train", "--objective", module, "--model", model, "--data", PARQUET, "--lora-rank", str(args.rank),
        "--batch", str(args.batch), "--steps", "1000000", "--warmup", "0", "--lr", "1e-5",
        "--threads", str(args.threads), "--json"]), log=lambda *a, **k: None)
    beta = ex.obj.module.PARAMS["beta"]
    plain = Plain(model, args.rank, args.batch, beta / 2)  # SD1.5's beta_dpo without the 0.5 factor
    for _ in range(2):  # warm-up
        ex.update()
        plain.step()
    times = {"executor": [], "plain": []}
    for _ in range(args.rounds):
        times["executor"] += [timed(ex.update) for _ in range(args.steps)]
        times["plain"] += [timed(plain.step) for _ in range(args.steps)]
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"model {model} ({ex.family.describe()})")
    print(f"batch {args.batch} pairs, LoRA rank {args.rank}, {args.threads} thread(s), {args.rounds} rounds x "
          f"{args.steps} updates each, interleaved")
    for k in ("executor", "plain"):
        q = np.percentile(np.array(times[k]) * 1e3, [25, 75])
        print(f"{k:9s} median {med[k]:8.1f} ms/update  (IQR {q[0]:.1f}-{q[1]:.1f})")
    print(f"ratio executor/plain {med['executor'] / med['plain']:.3f}")
    print(f"cpu {cpu}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
