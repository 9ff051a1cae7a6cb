"""`seppoc-torch eval`: judge trained diffusion models against their base as the preference-alignment papers do.

For every prompt i and sample j the initial latents x_T (and any sampler noise) come from a seed derived from
(seed, i, j) alone, so every model starts from the same noise for the same prompt and sample, and a result does not
depend on batching or on where a run was stopped. The run is split into prompt chunks; each finished piece is
written atomically into the output folder (images, then a JSON marker), so rerunning the same command continues
where it stopped, and a different command on the same folder is refused with the settings that differ.

Outputs (in --out): run.json (the command's identity), images/<model>/<prompt>_<sample>.png, gen/ and scores/
(per-chunk markers), per_prompt.json (every image's scores), report.json + report.md (per scorer: mean per model,
difference to the base with a 95% bootstrap interval over prompts, win rate against the base with ties as half),
grid.png (base row, then each model; prompts under the columns).
"""
import argparse
import hashlib
import inspect
import json
import math
import os
import sys
import tempfile
import textwrap

from .family import UserError
from . import presets as presets_mod

REPORT_VERSION = 1
SCHEDULERS = {
    "default": None,
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "dpm-multistep": "DPMSolverMultistepScheduler",
    "flow-euler": "FlowMatchEulerDiscreteScheduler",
}


# ---------------------------------------------------------------------------------------------- small utilities
def atomic_write(path, data: bytes):
    """Write `data` to `path` through a temporary file in the same folder and a rename: never a half-written file."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_json(path, obj):
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def atomic_png(path, image):
    import io
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def image_seed(seed: int, index: int, sample: int) -> int:
    """The seed of prompt `index`, sample `sample`: a hash of the three, independent of batching and chunks."""
    h = hashlib.sha256(f"seppoc-eval:{int(seed)}:{int(index)}:{int(sample)}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path):
    """Identity of a model folder: its files' relative paths, sizes and modification times (not their bytes)."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- statistics
def bootstrap_interval(values, resamples=2000, seed=0, level=0.95):
    """Percentile bootstrap interval of the mean of `values` (one value per prompt): resample the prompts with
    replacement `resamples` times from numpy's PCG64 seeded with `seed`, take the (1-level)/2 and (1+level)/2
    quantiles of the resampled means (Efron & Tibshirani 1993, ch. 13). Deterministic for a seed."""
    import numpy as np
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("bootstrap_interval needs a non-empty 1-d sequence")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    idx = rng.integers(0, len(v), size=(int(resamples), len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def win_values(a, b):
    """Per pair: 1 where a beats b, 0.5 for a tie, 0 where b beats a."""
    return [1.0 if x > y else (0.5 if x == y else 0.0) for x, y in zip(a, b)]


def win_rate(a, b):
    """Fraction of pairs a wins against b, ties counted as half: win_rate(a, b) + win_rate(b, a) == 1."""
    if len(a) != len(b) or not a:
        raise ValueError("win_rate needs two non-empty sequences of the same length")
    return sum(win_values(a, b)) / len(a)


def summarise(records, models, scorers, resamples, seed):
    """Aggregate per-prompt records into the report's table. Per prompt, a model's score is the mean over its
    samples; the difference to the base and the win rate are paired per (prompt, sample), and their intervals
    come from resampling prompts (the same resampled prompts for every scorer and model)."""
    out = {}
    base = models[0]
    for sc in scorers:
        rows = {}
        per_prompt = {m: [] for m in models}
        per_image = {m: [] for m in models}
        for rec in records:
            for m in models:
                vals = [s["scores"][sc][m] for s in rec["samples"]]
                per_prompt[m].append(sum(vals) / len(vals))
                per_image[m].extend(vals)
        for m in models:
            row = {"mean": sum(per_image[m]) / len(per_image[m]), "images": len(per_image[m])}
            if m != base:
                diffs = [x - y for x, y in zip(per_prompt[m], per_prompt[base])]
                wins = []
                for rec in records:
                    w = win_values([s["scores"][sc][m] for s in rec["samples"]],
                                   [s["scores"][sc][base] for s in rec["samples"]])
                    wins.append(sum(w) / len(w))
                row["diff"] = sum(diffs) / len(diffs)
                row["diff_ci95"] = list(bootstrap_interval(diffs, resamples, seed))
                row["win_rate"] = win_rate(per_image[m], per_image[base])
                row["win_rate_ci95"] = list(bootstrap_interval(wins, resamples, seed))
            rows[m] = row
        out[sc] = rows
    return out


# ---------------------------------------------------------------------------------------------- inputs
def read_prompts(path, column=None):
    """Prompts from a text file (one per line; blank lines skipped), a Parquet file (--column), or a JSON file
    (a list of strings, or of objects holding --column). Errors name the file, row or line."""
    if not path or not os.path.isfile(path):
        raise UserError(f"--prompts {path}: no such file")
    low = path.lower()
    if low.endswith(".parquet"):
        import pyarrow.parquet as pq
        if not column:
            raise UserError(f"{path}: a Parquet prompt file needs --column (the prompt column)")
        try:
            schema = pq.read_schema(path)
        except Exception as e:
            raise UserError(f"{path}: not a readable Parquet file ({e})")
        if column not in schema.names:
            raise UserError(f"{path}: no column {column!r} (columns: {', '.join(schema.names)})")
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
        prompts = []
        for row, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise UserError(f"{path}: column {column!r}, row {row}: not a non-empty string ({v!r})")
            prompts.append(v.strip())
    elif low.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})")
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of prompts (strings or objects)")
        prompts = []
        key = column or "prompt"
        for row, v in enumerate(data):
            if isinstance(v, dict):
                v = v.get(key)
            if not isinstance(v, str) or not v.strip():
                raise UserError(f"{path}: item {row}: no non-empty string" +
                                (f" under {key!r}" if isinstance(data[row], dict) else ""))
            prompts.append(v.strip())
    else:
        if column:
            raise UserError(f"{path}: --column applies to Parquet and JSON prompt files; a text file holds one "
                            "prompt per line")
        try:
            with open(path, encoding="utf-8") as f:
                prompts = [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e})")
    if not prompts:
        raise UserError(f"{path}: no prompts (the file is empty)")
    return prompts


class ModelSpec:
    """A model to generate with: a diffusers pipeline folder, or a LoRA folder applied to the base."""

    def __init__(self, name, path, kind):
        self.name, self.path, self.kind = name, path, kind

    def identity(self):
        return {"name": self.name, "path": os.path.abspath(self.path), "kind": self.kind,
                "fingerprint": fingerprint(self.path)}


LORA_FILE = "pytorch_lora_weights.safetensors"


def classify(path, what):
    if not os.path.isdir(path):
        raise UserError(f"{what} {path}: no such folder")
    if os.path.isfile(os.path.join(path, "model_index.json")):
        return "pipeline"
    if os.path.isfile(os.path.join(path, LORA_FILE)):
        return "lora"
    raise UserError(f"{what} {path}: not a diffusers model folder (model_index.json is missing) nor a LoRA "
                    f"folder ({LORA_FILE} is missing)")


def parse_models(base, models):
    if classify(base, "--base") != "pipeline":
        raise UserError(f"--base {base}: a LoRA folder cannot be the base; give the diffusers model it was trained "
                        "from")
    specs = [ModelSpec("base", base, "pipeline")]
    if not models:
        raise UserError("no --model to compare with the base")
    for m in models:
        name, sep, path = m.partition("=")
        if not sep:
            path = m
            name = os.path.basename(os.path.normpath(m)) or "model"
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        if name in {s.name for s in specs}:
            raise UserError(f"--model {m}: the name {name!r} is taken (the base is 'base'); name it NAME=PATH")
        specs.append(ModelSpec(name, path, classify(path, "--model")))
    return specs


# ---------------------------------------------------------------------------------------------- generation
def _torch_dtype(name):
    import torch
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise UserError(f"--dtype {name}: expected one of {', '.join(table)}")
    return table[name]


def load_pipeline(spec, base, device, dtype, scheduler):
    """A diffusers pipeline for `spec` (LoRA: the base plus `load_lora_weights`) with the chosen scheduler."""
    import diffusers
    path = spec.path if spec.kind == "pipeline" else base
    with open(os.path.join(path, "model_index.json"), encoding="utf-8") as f:
        index = json.load(f)
    kw = {k: None for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] is None}
    if "safety_checker" in index:
        kw["safety_checker"] = None  # as the papers' evaluation scripts: no NSFW blanking of judged images
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(path, dtype=_torch_dtype(dtype),
                                                           local_files_only=True, **kw)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: cannot load the diffusers pipeline ({type(e).__name__}: {e})")
    if spec.kind == "lora":
        try:
            pipe.load_lora_weights(spec.path)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"--model {spec.path}: cannot load the LoRA into {base} ({type(e).__name__}: {e})")
    if scheduler != "default":
        cls = getattr(diffusers, SCHEDULERS[scheduler])
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _denoiser(pipe):
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer")


def resolve_sampling(pipe, steps, guidance, resolution):
    """Fill unset settings from the pipeline's own defaults (what `pipe(prompt)` would use)."""
    params = inspect.signature(pipe.__call__).parameters
    if steps is None:
        steps = params["num_inference_steps"].default
    if guidance is None:
        guidance = params["guidance_scale"].default
    if resolution is None:
        size = getattr(pipe, "default_sample_size", None) or _denoiser(pipe).config.sample_size
        resolution = int(size) * int(pipe.vae_scale_factor)
    return int(steps), float(guidance), int(resolution)


def latent_shape(pipe, resolution):
    f = int(pipe.vae_scale_factor)
    if resolution % f:
        raise UserError(f"--resolution {resolution}: must be a multiple of the VAE factor {f}")
    return (int(_denoiser(pipe).config.in_channels), resolution // f, resolution // f)


def generate(pipe, prompts, seeds, shape, steps, guidance, resolution, device):
    """PIL images for prompts[k] from the initial latents of seeds[k]; any sampler noise from a generator seeded
    with seeds[k] + 1, one per image."""
    import torch
    latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s), dtype=torch.float32)
                           for s in seeds]).to(device=device, dtype=_denoiser(pipe).dtype)
    gens = [torch.Generator().manual_seed((s + 1) & ((1 << 63) - 1)) for s in seeds]
    with torch.no_grad():
        out = pipe(prompt=list(prompts), num_inference_steps=steps, guidance_scale=guidance, height=resolution,
                   width=resolution, latents=latents, generator=gens, output_type="pil")
    return out.images


# ---------------------------------------------------------------------------------------------- progress
class Progress:
    """tqdm on a terminal, plain lines otherwise."""

    def __init__(self, total, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=self.stream, unit="chunk")
            except ImportError:
                self.bar = None

    def step(self, what):
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(what)
            self.bar.update(1)
        elif self.enabled:
            print(f"eval: [{self.done}/{self.total}] {what}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------- the run
def evaluate(base, models, prompts, out, *, column=None, scorers=None, preset=None, steps=None, guidance=None,
             resolution=None, scheduler=None, seed=None, samples_per_prompt=None, chunk_size=16, batch_size=4,
             limit=None, device="cpu", dtype="float32", bootstrap=2000, grid_prompts=6, progress=True,
             stop_after=None):
    """Generate from `base` and each of `models` on the prompts of file `prompts` with shared seeds, score every
    image and write the report into folder `out` (see the module docstring). Returns the report dict.

    models: list of "NAME=PATH" or "PATH" (a diffusers folder, or a LoRA folder loaded into the base).
    scorers: dict for scorers.build, e.g. {"pickscore": DIR, "clip": DIR, "aesthetic": FILE, "aesthetic_clip": DIR}.
    preset: a name from presets.PRESETS; explicit settings override it. stop_after: stop (raise KeyboardInterrupt)
    after that many finished pieces (generation chunks + scoring chunks); for tests of resume."""
    from . import scorers as scorers_mod
    scorers = dict(scorers or {})
    if not any(scorers.get(k) for k in ("pickscore", "hps", "clip", "aesthetic", "aesthetic_clip")):
        raise UserError("no scorer given: pass at least one of --pickscore, --hps, --clip-score, --aesthetic")
    given = {"steps": steps, "guidance": guidance, "resolution": resolution, "scheduler": scheduler, "seed": seed,
             "samples_per_prompt": samples_per_prompt}
    settings = dict(given)
    if preset:
        p = presets_mod.get(preset)
        for k in presets_mod.SETTINGS:
            if settings[k] is None:
                settings[k] = p[k]
    settings["scheduler"] = settings["scheduler"] or "default"
    settings["seed"] = 0 if settings["seed"] is None else int(settings["seed"])
    settings["samples_per_prompt"] = int(settings["samples_per_prompt"] or 1)
    if settings["scheduler"] not in SCHEDULERS:
        raise UserError(f"--scheduler {settings['scheduler']}: expected one of {', '.join(SCHEDULERS)}")
    for k, lo in (("steps", 1), ("resolution", 8), ("samples_per_prompt", 1)):
        if settings[k] is not None and int(settings[k]) < lo:
            raise UserError(f"--{k.replace('_', '-')} {settings[k]}: must be at least {lo}")
    if chunk_size < 1 or batch_size < 1 or bootstrap < 100:
        raise UserError("--chunk-size and --batch-size must be at least 1, --bootstrap at least 100")

    texts = read_prompts(prompts, column)
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit {limit}: must be at least 1")
        texts = texts[:limit]
    specs = parse_models(base, models)
    built = scorers_mod.build(scorers, device=device)  # loads (and checks) every scorer before generating

    identity = {
        "version": REPORT_VERSION,
        "base": specs[0].identity(),
        "models": [s.identity() for s in specs[1:]],
        "prompts": {"file": os.path.abspath(prompts), "sha256": sha256_file(prompts), "column": column,
                    "limit": limit, "count": len(texts)},
        "scorers": [s.describe() for s in built],
        "preset": preset,
        "settings": settings,
        "chunk_size": chunk_size, "batch_size": batch_size, "device": str(device).split(":")[0], "dtype": dtype,
        "bootstrap": bootstrap,
    }
    os.makedirs(out, exist_ok=True)
    run_path = os.path.join(out, "run.json")
    if os.path.exists(run_path):
        with open(run_path, encoding="utf-8") as f:
            old = json.load(f)
        if old != json.loads(json.dumps(identity, default=str)):
            diff = _differences(old, json.loads(json.dumps(identity, default=str)))
            raise UserError(f"{out}: holds a run of a different command ({'; '.join(diff[:8])}); use another "
                            "--out or the same command")
    elif any(n for n in os.listdir(out) if not n.startswith(".")):
        raise UserError(f"{out}: not empty and not an evaluation folder (no run.json); use an empty or new folder")
    else:
        atomic_json(run_path, identity)

    n_chunks = math.ceil(len(texts) / chunk_size)
    spp = settings["samples_per_prompt"]
    todo_gen = [(s, k) for s in specs for k in range(n_chunks)
                if not os.path.exists(os.path.join(out, "gen", s.name, f"chunk_{k:05d}.json"))]
    todo_score = [k for k in range(n_chunks) if not os.path.exists(os.path.join(out, "scores", f"chunk_{k:05d}.json"))]
    bar = Progress(len(todo_gen) + len(todo_score), progress)
    finished = [0]

    def tick(what):
        bar.step(what)
        finished[0] += 1
        if stop_after is not None and finished[0] >= stop_after:
            bar.close()
            raise KeyboardInterrupt(f"stopped after {finished[0]} pieces")

    resolved = {}
    for spec in specs:
        chunks = [k for s, k in todo_gen if s is spec]
        if not chunks and spec.name != "base":
            continue
        if not chunks and "resolved" in _read_json(os.path.join(out, "gen", "sampling.json"), {}):
            continue
        pipe = load_pipeline(spec, base, device, dtype, settings["scheduler"])
        steps_, guidance_, res_ = resolve_sampling(pipe, settings["steps"], settings["guidance"],
                                                   settings["resolution"])
        shape = latent_shape(pipe, res_)
        mine = {"steps": steps_, "guidance": guidance_, "resolution": res_, "latent_shape": list(shape),
                "scheduler": type(pipe.scheduler).__name__, "scheduler_config": dict(pipe.scheduler.config),
                "pipeline": type(pipe).__name__}
        if spec.name == "base":
            resolved = mine
            if preset and presets_mod.family_of(mine["pipeline"]) != presets_mod.get(preset)["family"]:
                print(f"warning: --preset {preset} is for {presets_mod.get(preset)['family']} models but the base "
                      f"is a {mine['pipeline']}", file=sys.stderr)
            atomic_json(os.path.join(out, "gen", "sampling.json"), {"resolved": resolved})
        else:
            if not resolved:
                resolved = _read_json(os.path.join(out, "gen", "sampling.json"), {})["resolved"]
            if list(shape) != resolved["latent_shape"] or mine["pipeline"] != resolved["pipeline"]:
                raise UserError(f"--model {spec.path}: a {mine['pipeline']} with latents {list(shape)} cannot be "
                                f"compared with the base's {resolved['pipeline']} with latents "
                                f"{resolved['latent_shape']}")
        for k in chunks:
            items = [(i, j) for i in range(k * chunk_size, min(len(texts), (k + 1) * chunk_size))
                     for j in range(spp)]
            records = []
            for b in range(0, len(items), batch_size):
                batch = items[b:b + batch_size]
                seeds = [image_seed(settings["seed"], i, j) for i, j in batch]
                images = generate(pipe, [texts[i] for i, _ in batch], seeds, shape, steps_, guidance_, res_, device)
                for (i, j), s, img in zip(batch, seeds, images):
                    rel = os.path.join("images", spec.name, f"{i:05d}_{j}.png")
                    atomic_png(os.path.join(out, rel), img)
                    records.append({"index": i, "sample": j, "seed": s, "path": rel})
            atomic_json(os.path.join(out, "gen", spec.name, f"chunk_{k:05d}.json"), {"chunk": k, "images": records})
            tick(f"generated {spec.name} chunk {k + 1}/{n_chunks}")
        del pipe
        _free(device)
    if not resolved:
        resolved = _read_json(os.path.join(out, "gen", "sampling.json"), {})["resolved"]

    names = [s.name for s in specs]
    from PIL import Image
    for k in todo_score:
        gen = {m: _read_json(os.path.join(out, "gen", m, f"chunk_{k:05d}.json"), None)["images"] for m in names}
        prompts_out = {}
        for n, item in enumerate(gen["base"]):
            i, j = item["index"], item["sample"]
            rec = prompts_out.setdefault(i, {"index": i, "prompt": texts[i], "samples": []})
            rec["samples"].append({"sample": j, "seed": item["seed"],
                                   "images": {m: gen[m][n]["path"] for m in names}, "scores": {}})
        flat = [(rec, s) for rec in prompts_out.values() for s in rec["samples"]]
        for m in names:
            imgs = [Image.open(os.path.join(out, s["images"][m])).convert("RGB") for _, s in flat]
            caps = [rec["prompt"] for rec, _ in flat]
            for sc in built:
                vals = []
                for b in range(0, len(imgs), batch_size):
                    vals.extend(sc.score(caps[b:b + batch_size], imgs[b:b + batch_size]))
                for (_, s), v in zip(flat, vals):
                    s["scores"].setdefault(sc.name, {})[m] = float(v)
        atomic_json(os.path.join(out, "scores", f"chunk_{k:05d}.json"),
                    {"chunk": k, "prompts": [prompts_out[i] for i in sorted(prompts_out)]})
        tick(f"scored chunk {k + 1}/{n_chunks}")
    bar.close()

    records = []
    for k in range(n_chunks):
        records.extend(_read_json(os.path.join(out, "scores", f"chunk_{k:05d}.json"), None)["prompts"])
    table = summarise(records, names, [s.name for s in built], bootstrap, settings["seed"])
    report = {
        "version": REPORT_VERSION,
        "base": identity["base"], "models": identity["models"], "prompts": identity["prompts"],
        "preset": preset, "preset_sources": presets_mod.get(preset)["sources"] if preset else None, "given": given,
        "sampling": {**resolved, "seed": settings["seed"], "samples_per_prompt": spp, "dtype": dtype,
                     "device": str(device),
                     "seeds": "per (prompt i, sample j): sha256('seppoc-eval:{seed}:{i}:{j}') -> initial latents "
                              "N(0, I) from torch.Generator (CPU, float32); sampler noise from that seed + 1; the "
                              "same for every model"},
        "scorers": identity["scorers"],
        "bootstrap": {"resamples": bootstrap, "seed": settings["seed"], "level": 0.95, "unit": "prompt",
                      "method": "percentile"},
        "results": table,
    }
    atomic_json(os.path.join(out, "per_prompt.json"), records)
    atomic_json(os.path.join(out, "report.json"), report)
    atomic_write(os.path.join(out, "report.md"), render_markdown(report).encode())
    atomic_png(os.path.join(out, "grid.png"), make_grid(out, records, names, grid_prompts))
    return report


def _free(device):
    import gc
    gc.collect()
    if str(device).startswith("cuda"):
        import torch
        torch.cuda.empty_cache()


def _read_json(path, default):
    if not os.path.exists(path):
        if default is None:
            raise UserError(f"{path}: missing (the output folder was changed by hand?)")
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _differences(old, new, prefix=""):
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{k}."))
        elif a != b:
            out.append(f"{prefix}{k}: was {json.dumps(a, default=str)[:120]}, now {json.dumps(b, default=str)[:120]}")
    return out


# ---------------------------------------------------------------------------------------------- rendering
def render_markdown(report):
    s = report["sampling"]
    lines = ["# Evaluation report", "",
             f"Base: `{report['base']['path']}`; prompts: `{report['prompts']['file']}` "
             f"({report['prompts']['count']} prompts x {s['samples_per_prompt']} samples).",
             f"Sampling: {s['pipeline']}, scheduler {s['scheduler']}, {s['steps']} steps, guidance {s['guidance']}, "
             f"{s['resolution']} px, seed {s['seed']}, {s['dtype']} on {s['device']}"
             + (f", preset `{report['preset']}`" if report["preset"] else "") + ".",
             "Difference to the base: mean over prompts of (model - base), 95% percentile bootstrap interval over "
             f"prompts ({report['bootstrap']['resamples']} resamples). Win rate: share of (prompt, sample) pairs "
             "where the model scores above the base, ties as half.", ""]
    for sc, rows in report["results"].items():
        lines += [f"## {sc}", "", "| model | mean | diff to base [95% CI] | win rate [95% CI] |",
                  "|---|---|---|---|"]
        for m, r in rows.items():
            if "diff" in r:
                lines.append(f"| {m} | {r['mean']:.4f} | {r['diff']:+.4f} [{r['diff_ci95'][0]:+.4f}, "
                             f"{r['diff_ci95'][1]:+.4f}] | {r['win_rate']:.3f} [{r['win_rate_ci95'][0]:.3f}, "
                             f"{r['win_rate_ci95'][1]:.3f}] |")
            else:
                lines.append(f"| {m} | {r['mean']:.4f} | | |")
        lines.append("")
    return "\n".join(lines)


def _wrap(draw, font, text, width, max_lines):
    """Greedy word wrap of `text` to lines at most `width` pixels wide (long words are cut)."""
    lines, cur = [], ""
    for word in text.split():
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word)
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            if cur:
                lines.append(cur)
                cur = ""
            lines.append(word[:cut])
            word = word[cut:]
        trial = f"{cur} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            cur = trial
        else:
            lines.append(cur)
            cur = word
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:-1] + "…" if len(lines[-1]) > 1 else "…"
    return lines


def make_grid(out, records, names, n_prompts):
    """Base row then each model (sample 0 of the first n_prompts prompts), row labels at the left and each
    prompt written under its column (PIL's default font). Cells are 128-256 px (small images are enlarged)."""
    from PIL import Image, ImageDraw, ImageFont
    recs = records[:max(1, n_prompts)]
    first = Image.open(os.path.join(out, recs[0]["samples"][0]["images"][names[0]]))
    cell = min(256, max(128, first.width))
    font = ImageFont.load_default()
    label_w, pad, line_h = 110, 6, 12
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    captions = [_wrap(scratch, font, r["prompt"], cell, 8) for r in recs]
    cap_h = pad * 2 + line_h * max(len(c) for c in captions)
    W = label_w + len(recs) * (cell + pad) + pad
    H = len(names) * (cell + pad) + pad + cap_h
    grid = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(grid)
    for r, m in enumerate(names):
        y = pad + r * (cell + pad)
        draw.text((pad, y + cell // 2 - 6), _wrap(draw, font, m, label_w - 2 * pad, 1)[0], fill="black", font=font)
        for c, rec in enumerate(recs):
            img = Image.open(os.path.join(out, rec["samples"][0]["images"][m])).convert("RGB")
            resample = Image.NEAREST if img.width < cell else Image.LANCZOS
            grid.paste(img.resize((cell, cell), resample), (label_w + c * (cell + pad), y))
    y0 = pad + len(names) * (cell + pad)
    for c, cap in enumerate(captions):
        for n, line in enumerate(cap):
            draw.text((label_w + c * (cell + pad), y0 + n * line_h), line, fill="black", font=font)
    return grid


# ---------------------------------------------------------------------------------------------- command line
def add_arguments(p):
    p.add_argument("--base", required=True, help="the base model: a diffusers folder (model_index.json)")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                   help="a trained model to compare: a diffusers folder, or a LoRA folder "
                        f"({LORA_FILE}) loaded into the base; repeat for several")
    p.add_argument("--prompts", required=True, help="prompt file: text (one per line), Parquet or JSON")
    p.add_argument("--column", help="the prompt column of a Parquet file (key of a JSON list of objects)")
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument("--preset", help=f"sampling settings of a paper: {', '.join(sorted(presets_mod.PRESETS))}")
    p.add_argument("--steps", type=int, help="sampler steps (default: the preset's, else the pipeline's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: preset, else pipeline)")
    p.add_argument("--resolution", type=int, help="image size in pixels (default: preset, else the pipeline's)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), help="sampler (default: the model's own scheduler)")
    p.add_argument("--seed", type=int, help="seed of the shared initial noise and the bootstrap (default 0)")
    p.add_argument("--samples-per-prompt", type=int, help="images per prompt and model (default 1)")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--chunk-size", type=int, default=16, help="prompts per resumable chunk (default 16)")
    p.add_argument("--batch-size", type=int, default=4, help="images per pipeline / scorer call (default 4)")
    p.add_argument("--pickscore", help="PickScore CLIP folder (transformers format, with its processor)")
    p.add_argument("--pickscore-processor", help="processor folder, if not inside --pickscore")
    p.add_argument("--hps", help="HPS v2-style CLIP folder (transformers format)")
    p.add_argument("--hps-processor", help="processor folder, if not inside --hps")
    p.add_argument("--clip-score", help="CLIP folder for the CLIP score (e.g. openai/clip-vit-large-patch14)")
    p.add_argument("--clip-score-processor", help="processor folder, if not inside --clip-score")
    p.add_argument("--aesthetic", help="LAION-style aesthetics head weights (.pth or .safetensors)")
    p.add_argument("--aesthetic-clip", help="the CLIP folder whose image embeddings the head reads")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="pipeline weights dtype (default float32)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--grid-prompts", type=int, default=6, help="prompts (columns) in grid.png (default 6)")
    p.add_argument("--no-progress", action="store_true", help="print nothing while running")
    return p


def add_parser(subparsers):
    """Register `eval` on an argparse subparsers object; the parsed args carry func=run_args."""
    p = subparsers.add_parser("eval", help="judge trained models against their base with preference scorers",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=run_args)
    return p


def run_args(a):
    device = a.device
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    scorers = {"pickscore": a.pickscore, "pickscore_processor": a.pickscore_processor, "hps": a.hps,
               "hps_processor": a.hps_processor, "clip": a.clip_score, "clip_processor": a.clip_score_processor,
               "aesthetic": a.aesthetic, "aesthetic_clip": a.aesthetic_clip}
    report = evaluate(a.base, a.model, a.prompts, a.out, column=a.column,
                      scorers={k: v for k, v in scorers.items() if v}, preset=a.preset, steps=a.steps,
                      guidance=a.guidance, resolution=a.resolution, scheduler=a.scheduler, seed=a.seed,
                      samples_per_prompt=a.samples_per_prompt, chunk_size=a.chunk_size, batch_size=a.batch_size,
                      limit=a.limit, device=device, dtype=a.dtype, bootstrap=a.bootstrap,
                      grid_prompts=a.grid_prompts, progress=not a.no_progress)
    print(render_markdown(report))
    print(f"written: {os.path.join(a.out, 'report.md')}, report.json, per_prompt.json, grid.png")
    return 0


def main(argv=None):
    """`python -m seppoc_torch.evaluate ...` (the same flags as `seppoc-torch eval`). Exit 2 on a UserError."""
    p = add_arguments(argparse.ArgumentParser(prog="seppoc-torch eval", description=__doc__.split("\n\n")[0]))
    a = p.parse_args(argv)
    try:
        return run_args(a)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
