"""`seppoc-torch train ...` (also `python -m seppoc_torch train ...`)."""
import argparse
import sys

from .family import UserError

TRAIN_HELP = """Train a model with an objective module from `seppoc emit --target torch`, following its PLAN.

  seppoc emit --target torch objectives/dpo.obj -o dpo_loss.py
  seppoc-torch train --objective dpo_loss.py --model runwayml/stable-diffusion-v1-5 --lora-rank 8 \\
      --data 'pickapic/*.parquet' --steps 2000 --batch 64 --grad-accum 4 --mixed-precision fp16 --out runs/dpo
  torchrun --nproc_per_node 2 -m seppoc_torch train ...        (or: accelerate launch -m seppoc_torch train ...)

--batch is the global batch of one optimizer update (all processes and accumulation steps together).
"""


def parser():
    ap = argparse.ArgumentParser(prog="seppoc-torch", description="Executes seppoc objectives on diffusion models.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--objective", required=True, help="module from `seppoc emit --target torch`")
    t.add_argument("--model", required=True,
                   help="a diffusers folder or hub id (SD 1.x/2.x, SDXL, SD3), or a seppoc .safetensors DiT")
    t.add_argument("--data", required=True,
                   help="Pick-a-Pic Parquet: a file, a glob or a folder; or a `seppoc export-torch` data.safetensors")
    t.add_argument("--lora-rank", type=int, default=None, help="train a LoRA of this rank (default: all weights)")
    t.add_argument("--steps", type=int, default=200, help="optimizer updates")
    t.add_argument("--batch", type=int, default=16, help="global batch per update")
    t.add_argument("--grad-accum", type=int, default=1, help="accumulation steps per update")
    t.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--warmup", type=int, default=10, help="updates of linear LR warmup")
    t.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: none)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder: model, checkpoint.pt, metrics.jsonl, run.json")
    t.add_argument("--checkpoint-every", type=int, default=0, help="write a resumable checkpoint every N updates")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--cache-latents", action="store_true", help="keep encoded images and prompts in memory")
    t.add_argument("--caption-dropout", type=float, default=0.0, help="probability of the empty prompt per sample")
    t.add_argument("--report-to", default=None, help="accelerate tracker, e.g. tensorboard")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="weights and leaves in float64 makes runs comparable to ~1e-12 (tests)")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    t.add_argument("--cpu", action="store_true", help="train on CPU even when CUDA is available")
    t.add_argument("--compile", action="store_true",
                   help="run the network under torch.compile (inductor) and use the fused AdamW (DiT family); the "
                        "first updates include the compilation")
    t.add_argument("--json", action="store_true", help="print each update's record as a JSON line")
    t.add_argument("--time", action="store_true", help="add each update's wall time (step_ms) to the records")
    t.add_argument("--stop-after", type=int, default=0, help=argparse.SUPPRESS)  # tests: stop as if interrupted
    t.add_argument("--replay-first-step", default=None,
                   help="first_step.safetensors from `seppoc export-torch`: train update 1 on the native trainer's "
                        "recorded inputs and report its loss beside seppoc's (DiT, one process)")
    from .evaluate import add_parser as add_eval_parser
    add_eval_parser(sub)
    return ap


def check(args):
    for flag in ("steps", "batch", "grad_accum"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.lora_rank is not None and args.lora_rank < 1:
        raise UserError("--lora-rank must be at least 1")
    if not 0.0 <= args.caption_dropout < 1.0:
        raise UserError("--caption-dropout must be in [0, 1)")
    if args.lr <= 0 or args.warmup < 0 or args.max_grad_norm < 0 or args.checkpoint_every < 0:
        raise UserError("--lr must be > 0; --warmup, --max-grad-norm and --checkpoint-every >= 0")


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.command == "eval":
            sys.exit(args.func(args))
        check(args)
        from .train import train
        train(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
