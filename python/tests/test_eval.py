"""`seppoc-torch eval` on tiny random models (CPU, offline): scorer formulas against CLIP's own forward pass, the
bootstrap interval and win rate as properties over random inputs, shared seeds across models, determinism, resume
after a stop, refusal of a different command, and clear errors for bad input."""
import argparse
import json
import os
import shutil

import numpy as np
import pytest
import torch

from seppoc_torch import evaluate as ev
from seppoc_torch import scorers as sc
from seppoc_torch.family import UserError
from seppoc_torch.testing import tiny_sd, tiny_tokenizer

PROMPTS = ["a red cat", "blue dog 7", "green tree on a hill", "x"]


# ------------------------------------------------------------------------------------------------ fixtures
def tiny_clip(path, seed=0):
    """A CLIPModel with 1-layer 16-wide towers and 8-dim projections over the in-memory test tokenizer, with its
    processor (32 px images), saved to `path`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
    tok = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = CLIPConfig(
            text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=tok.model_max_length,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, projection_dim=8),
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=8, projection_dim=8),
            projection_dim=8)
        model = CLIPModel(cfg)
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def tiny_lora(path, base, seed=0, rank=2):
    """A LoRA on the base's UNet attention projections with random (non-zero) B, saved through the pipeline's
    save_lora_weights (loads with load_lora_weights; lora_alpha = rank so no adapter metadata is needed)."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                         init_lora_weights="gaussian"))
        with torch.no_grad():
            for n, p in pipe.unet.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
    StableDiffusionPipeline.save_lora_weights(str(path), unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    return str(path)


def aesthetic_head(path, dims=(8, 6, 4, 1), seed=0, gap_keys=True):
    """A LAION-layout head file: Linear layers under layers.<i> (indices with gaps, as dropouts leave them)."""
    g = torch.Generator().manual_seed(seed)
    sd, idx = {}, 0
    for a, b in zip(dims, dims[1:]):
        sd[f"layers.{idx}.weight"] = torch.randn(b, a, generator=g)
        sd[f"layers.{idx}.bias"] = torch.randn(b, generator=g)
        idx += 2 if gap_keys else 1
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return str(path), sd


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run ~5x faster on one thread than on torch's default pool."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval-world")
    base = tiny_sd(str(d / "base"), seed=0)
    w = {
        "dir": d,
        "base": base,
        "full": tiny_sd(str(d / "full"), seed=1),
        "lora": tiny_lora(d / "lora", base),
        "clip": tiny_clip(d / "clip", seed=0),
        "pick": tiny_clip(d / "pick", seed=1),
        "head": aesthetic_head(d / "head.safetensors")[0],
    }
    with open(d / "prompts.txt", "w") as f:
        f.write("\n".join(PROMPTS[:3]) + "\n\n")
    w["prompts"] = str(d / "prompts.txt")
    return w


def scorer_spec(w):
    return {"pickscore": w["pick"], "hps": w["clip"], "clip": w["clip"], "aesthetic": w["head"],
            "aesthetic_clip": w["clip"]}


def run(w, out, **kw):
    args = dict(scorers=scorer_spec(w), steps=2, chunk_size=2, batch_size=3, samples_per_prompt=2, bootstrap=500,
                progress=False, seed=3)
    args.update(kw)
    models = args.pop("models", ["full=" + w["full"], "lora=" + w["lora"], "same=" + w["base"]])
    return ev.evaluate(w["base"], models, w["prompts"], str(out), **args)


def images(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------------ scorers
def test_scorers_match_clip_forward(world, tmp_path):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in PROMPTS]
    model = CLIPModel.from_pretrained(world["clip"], local_files_only=True).eval()
    proc = CLIPProcessor.from_pretrained(world["clip"], local_files_only=True)
    x = proc(text=PROMPTS, images=imgs, padding=True, truncation=True,
             max_length=model.config.text_config.max_position_embeddings, return_tensors="pt")
    with torch.no_grad():
        o = model(**x)
    cos = torch.diagonal(o.logits_per_image).double() / model.logit_scale.detach().exp().double()
    # CLIP's own logits = logit_scale.exp() * cos: that is PickScore's formula (here with the `clip` weights).
    pick = sc.PickScorer(world["clip"]).score(PROMPTS, imgs)
    assert np.allclose(pick, torch.diagonal(o.logits_per_image).double().numpy(), rtol=1e-5, atol=1e-5)
    assert np.allclose(sc.HpsScorer(world["clip"]).score(PROMPTS, imgs), (100 * cos).numpy(), atol=1e-4)
    clip = sc.ClipScorer(world["clip"]).score(PROMPTS, imgs)
    assert np.allclose(clip, (100 * cos.clamp(min=0)).numpy(), atol=1e-4)
    # the same CLIP with its text projection negated has cos -> -cos: the CLIP score clamps those at 0
    neg = CLIPModel.from_pretrained(world["clip"], local_files_only=True)
    with torch.no_grad():
        neg.text_projection.weight.neg_()
    neg.save_pretrained(tmp_path / "neg")
    proc.save_pretrained(tmp_path / "neg")
    assert np.allclose(sc.HpsScorer(str(tmp_path / "neg")).score(PROMPTS, imgs), (-100 * cos).numpy(), atol=1e-4)
    clip_neg = sc.ClipScorer(str(tmp_path / "neg")).score(PROMPTS, imgs)
    assert np.allclose(clip_neg, (100 * (-cos).clamp(min=0)).numpy(), atol=1e-4)
    assert (cos > 0).any() and all(v == 0.0 for v, c in zip(clip_neg, cos) if c > 0)
    # the aesthetic head over the normalised image embedding, both file layouts
    for name, gap in (("h.safetensors", True), ("h.pth", False)):
        path, sd = aesthetic_head(tmp_path / name, gap_keys=gap, seed=5)
        e = o.image_embeds.double()
        e = e / e.norm(dim=-1, keepdim=True)
        for k in sorted({int(k.split(".")[1]) for k in sd}):
            e = e @ sd[f"layers.{k}.weight"].double().T + sd[f"layers.{k}.bias"].double()
        got = sc.AestheticScorer(path, world["clip"]).score(PROMPTS, imgs)
        assert np.allclose(got, e[:, 0].numpy(), atol=1e-6)
    single = tmp_path / "linear.pth"
    torch.save({"weight": torch.ones(1, 8), "bias": torch.zeros(1)}, single)
    e = o.image_embeds.double() / o.image_embeds.double().norm(dim=-1, keepdim=True)
    assert np.allclose(sc.AestheticScorer(str(single), world["clip"]).score(PROMPTS, imgs), e.sum(-1).numpy(),
                       atol=1e-6)


def test_scorer_errors(world, tmp_path):
    with pytest.raises(UserError, match="PickScore_v1"):
        sc.build({"pickscore": str(tmp_path / "missing")})
    with pytest.raises(UserError, match="config.json"):
        sc.build({"clip": str(tmp_path)})
    with pytest.raises(UserError, match="--aesthetic-clip"):
        sc.build({"aesthetic": world["head"]})
    bad, _ = aesthetic_head(tmp_path / "bad.safetensors", dims=(5, 1))
    with pytest.raises(UserError, match="takes 5-dim embeddings"):
        sc.build({"aesthetic": bad, "aesthetic_clip": world["clip"]})
    two, _ = aesthetic_head(tmp_path / "two.safetensors", dims=(8, 2))
    with pytest.raises(UserError, match="outputs 2 values"):
        sc.build({"aesthetic": two, "aesthetic_clip": world["clip"]})
    torch.save({"net.0.weight": torch.ones(1, 8)}, tmp_path / "odd.pth")
    with pytest.raises(UserError, match="unexpected key 'net.0.weight'"):
        sc.load_head(str(tmp_path / "odd.pth"))


# ------------------------------------------------------------------------------------------------ statistics
def test_bootstrap_interval_properties():
    rng = np.random.default_rng(1)
    widths = {20: [], 500: []}
    for trial in range(40):
        n = int(rng.integers(2, 300))
        v = rng.normal(rng.normal(), rng.uniform(0.1, 3), size=n)
        lo, hi = ev.bootstrap_interval(v, 400, seed=trial)
        assert lo <= v.mean() <= hi
        assert (lo, hi) == ev.bootstrap_interval(v, 400, seed=trial)  # deterministic per seed
        for m in widths:
            w = rng.normal(0, 1, size=m)
            a, b = ev.bootstrap_interval(w, 400, seed=trial)
            widths[m].append(b - a)
    # the interval shrinks with n (about as 1/sqrt(n): 0.88 vs 0.175 for unit variance)
    assert np.mean(widths[500]) < 0.35 * np.mean(widths[20])
    assert 0.13 < np.mean(widths[500]) < 0.22
    v = rng.normal(size=50)
    assert ev.bootstrap_interval(v, 400, seed=1) != ev.bootstrap_interval(v, 400, seed=2)
    assert ev.bootstrap_interval([2.0] * 7, 300, seed=0) == (2.0, 2.0)
    with pytest.raises(ValueError):
        ev.bootstrap_interval([], 100)


def test_win_rate_properties():
    rng = np.random.default_rng(2)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        a = rng.integers(0, 4, size=n).astype(float).tolist()  # small range: many ties
        b = rng.integers(0, 4, size=n).astype(float).tolist()
        wab, wba = ev.win_rate(a, b), ev.win_rate(b, a)
        assert abs(wab + wba - 1.0) < 1e-12
        ties = sum(x == y for x, y in zip(a, b))
        wins = sum(x > y for x, y in zip(a, b))
        assert abs(wab - (wins + 0.5 * ties) / n) < 1e-12
        assert ev.win_rate(a, a) == 0.5
    assert ev.win_rate([1, 2, 3, 4], [0, 2, 5, 4]) == (1 + 0.5 + 0 + 0.5) / 4


# ------------------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def first(world):
    out = world["dir"] / "run-a"
    return out, run(world, out)


def test_evaluate_report(world, first):
    out, report = first
    s = report["sampling"]
    assert (s["steps"], s["guidance"], s["resolution"], s["scheduler"]) == (2, 7.5, 32, "DDIMScheduler")
    assert report["prompts"]["count"] == 3  # the blank line is skipped
    names = ["base", "full", "lora", "same"]
    for scorer in ("pickscore", "hps", "clip", "aesthetic"):
        rows = report["results"][scorer]
        assert list(rows) == names
        assert all(rows[m]["images"] == 6 for m in names)
        # `same` is the base under another name: shared seeds give it the very same images and scores
        assert rows["same"]["diff"] == 0.0 and rows["same"]["diff_ci95"] == [0.0, 0.0]
        assert rows["same"]["win_rate"] == 0.5 and rows["same"]["win_rate_ci95"] == [0.5, 0.5]
        for m in ("full", "lora"):
            lo, hi = rows[m]["diff_ci95"]
            assert lo <= rows[m]["diff"] <= hi
            assert abs(rows[m]["diff"] - (rows[m]["mean"] - rows["base"]["mean"])) < 1e-9
    per = json.load(open(out / "per_prompt.json"))
    assert [r["prompt"] for r in per] == PROMPTS[:3] and all(len(r["samples"]) == 2 for r in per)
    for r in per:
        for smp in r["samples"]:
            assert set(smp["scores"]) == {"pickscore", "hps", "clip", "aesthetic"}
            assert smp["seed"] == ev.image_seed(3, r["index"], smp["sample"])
            base, same = images(out / smp["images"]["base"]), images(out / smp["images"]["same"])
            assert (base == same).all()
            assert not (base == images(out / smp["images"]["lora"])).all(), "the LoRA was not applied"
            assert not (base == images(out / smp["images"]["full"])).all()
    # the two samples of a prompt come from different noise
    assert not (images(out / per[0]["samples"][0]["images"]["base"]) ==
                images(out / per[0]["samples"][1]["images"]["base"])).all()
    # the recomputed table equals the stored one
    assert ev.summarise(per, names, ["pickscore", "hps", "clip", "aesthetic"], 500, 3) == report["results"]
    from PIL import Image
    g = Image.open(out / "grid.png")
    assert g.size[0] == 110 + 3 * (128 + 6) + 6 and g.size[1] > 4 * (128 + 6) + 6 + 12
    md = open(out / "report.md").read()
    assert "## pickscore" in md and "| lora |" in md and "DDIMScheduler, 2 steps, guidance 7.5, 32 px" in md


def test_evaluate_deterministic_and_resumable(world, first, tmp_path):
    out_a, report_a = first
    per_a = json.load(open(out_a / "per_prompt.json"))
    # stop after 3 finished pieces (of 4 models x 2 chunks + 2 scoring chunks), then run the same command again
    out_c = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        run(world, out_c, stop_after=3)
    assert not os.path.exists(out_c / "report.json")
    assert len(os.listdir(out_c / "gen" / "base")) == 2 and len(os.listdir(out_c / "gen" / "full")) == 1
    report_c = run(world, out_c)
    # the resumed run (a fresh folder, generated partly before the stop) equals the uninterrupted one: the same
    # images byte for byte, the same scores and report
    assert report_c["results"] == report_a["results"]
    assert json.load(open(out_c / "per_prompt.json")) == per_a
    for r in per_a:
        for smp in r["samples"]:
            for rel in smp["images"].values():
                assert (images(out_a / rel) == images(out_c / rel)).all()
    # stop during scoring too
    out_d = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        run(world, out_d, stop_after=9)
    assert run(world, out_d)["results"] == report_a["results"]
    # a different command on the same folder is refused, naming what differs
    with pytest.raises(UserError, match=r"settings.steps: was 2, now 3"):
        run(world, out_c, steps=3)
    with pytest.raises(UserError, match="not empty and not an evaluation folder"):
        run(world, world["dir"])


def test_preset_and_overrides(world, tmp_path):
    r = run(world, tmp_path / "p", preset="diffusion-kto-sd15", resolution=32, samples_per_prompt=1,
            models=["lora=" + world["lora"]], scorers={"clip": world["clip"]})
    assert r["sampling"]["guidance"] == 7.0 and r["sampling"]["steps"] == 2 and r["sampling"]["resolution"] == 32
    assert r["preset"] == "diffusion-kto-sd15" and r["given"]["steps"] == 2 and r["given"]["guidance"] is None
    with pytest.raises(UserError, match="unknown preset"):
        run(world, tmp_path / "q", preset="nope")


# ------------------------------------------------------------------------------------------------ bad input
def test_input_errors(world, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(UserError, match="no prompts"):
        ev.evaluate(world["base"], [world["full"]], str(empty), str(tmp_path / "o1"), scorers={"clip": world["clip"]})
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    (notmodel / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match=r"notmodel: not a diffusers model folder \(model_index.json is missing\)"):
        ev.evaluate(world["base"], [str(notmodel)], world["prompts"], str(tmp_path / "o2"),
                    scorers={"clip": world["clip"]})
    with pytest.raises(UserError, match="a LoRA folder cannot be the base"):
        ev.evaluate(world["lora"], [world["full"]], world["prompts"], str(tmp_path / "o3"),
                    scorers={"clip": world["clip"]})
    with pytest.raises(UserError, match="no scorer given"):
        ev.evaluate(world["base"], [world["full"]], world["prompts"], str(tmp_path / "o4"))
    with pytest.raises(UserError, match="PickScore_v1"):
        ev.evaluate(world["base"], [world["full"]], world["prompts"], str(tmp_path / "o5"),
                    scorers={"pickscore": str(tmp_path / "nothing-here")})
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"caption": ["a cat", None], "other": [1, 2]}), tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"no column 'prompt' \(columns: caption, other\)"):
        ev.read_prompts(str(tmp_path / "p.parquet"), "prompt")
    with pytest.raises(UserError, match=r"column 'caption', row 1"):
        ev.read_prompts(str(tmp_path / "p.parquet"), "caption")
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "a"}, {"prompt": "b c"}]))
    assert ev.read_prompts(str(tmp_path / "p.json")) == ["a", "b c"]
    # nothing was written into the output folders of refused runs
    for o in ("o1", "o2", "o3", "o4", "o5"):
        assert not os.path.exists(tmp_path / o) or not os.listdir(tmp_path / o)


def test_command_line(world, first, tmp_path, capsys):
    out_a, report_a = first
    out = out_a  # the same command as the `first` run: it finds every chunk done and writes the report again
    argv = ["--base", world["base"], "--model", "full=" + world["full"], "--model", "lora=" + world["lora"],
            "--model", "same=" + world["base"], "--prompts", world["prompts"], "--out", str(out), "--steps", "2",
            "--chunk-size", "2", "--batch-size", "3", "--samples-per-prompt", "2", "--bootstrap", "500", "--seed", "3",
            "--pickscore", world["pick"], "--hps", world["clip"], "--clip-score", world["clip"],
            "--aesthetic", world["head"], "--aesthetic-clip", world["clip"], "--device", "cpu", "--no-progress"]
    assert ev.main(argv) == 0
    text = capsys.readouterr().out
    assert "## aesthetic" in text and "| full |" in text
    assert json.load(open(out / "report.json"))["results"] == report_a["results"]
    assert ev.main(argv[:-1] + ["--pickscore", str(tmp_path / "none")]) == 2
    assert "PickScore_v1" in capsys.readouterr().err
    # the subcommand registers on a parent parser as `eval`
    parent = argparse.ArgumentParser(prog="seppoc-torch")
    ev.add_parser(parent.add_subparsers(dest="command"))
    a = parent.parse_args(["eval"] + argv)
    assert a.command == "eval" and a.func is ev.run_args and a.model[1] == "lora=" + world["lora"]


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_other_families(world, tmp_path, family):
    from seppoc_torch import testing
    make = {"sdxl": testing.tiny_sdxl, "sd3": testing.tiny_sd3}[family]
    base, other = make(str(tmp_path / "base"), seed=0), make(str(tmp_path / "other"), seed=1)
    r = ev.evaluate(base, ["other=" + other, "same=" + base], world["prompts"], str(tmp_path / "out"),
                    scorers={"hps": world["clip"]}, steps=2, bootstrap=200, progress=False)
    expect = {"sdxl": ("StableDiffusionXLPipeline", "EulerDiscreteScheduler", 5.0),
              "sd3": ("StableDiffusion3Pipeline", "FlowMatchEulerDiscreteScheduler", 7.0)}[family]
    s = r["sampling"]
    assert (s["pipeline"], s["scheduler"], s["guidance"], s["resolution"]) == expect + (32,)
    rows = r["results"]["hps"]
    assert rows["same"]["diff"] == 0.0 and rows["same"]["win_rate"] == 0.5
    assert rows["other"]["diff"] != 0.0
    # a model of another family cannot be compared (different pipeline)
    with pytest.raises(UserError, match="cannot be compared"):
        ev.evaluate(base, ["sd=" + world["base"]], world["prompts"], str(tmp_path / "mixed"),
                    scorers={"hps": world["clip"]}, steps=2, bootstrap=200, progress=False)


def test_progress_bar_on_a_terminal_plain_lines_otherwise():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    plain = io.StringIO()
    p = ev.Progress(2, stream=plain)
    p.step("generated base chunk 1/1")
    p.step("scored chunk 1/1")
    p.close()
    assert plain.getvalue() == "eval: [1/2] generated base chunk 1/1\neval: [2/2] scored chunk 1/1\n"
    tty = Tty()
    p = ev.Progress(2, stream=tty)
    assert p.bar is not None
    p.step("x")
    p.close()
    assert "eval: [" not in tty.getvalue() and "1/2" in tty.getvalue()
    quiet = io.StringIO()
    p = ev.Progress(1, enabled=False, stream=quiet)
    p.step("x")
    assert quiet.getvalue() == ""


def test_eval_of_a_lora_the_trainer_saved(world, tmp_path, dpo_module):
    """`seppoc-torch train --lora-rank` output (a run folder with pytorch_lora_weights.safetensors and the adapter
    metadata) evaluates as a LoRA model on its base."""
    from conftest import PARQUET
    from seppoc_torch.cli import main as cli_main
    run_dir = tmp_path / "run"
    cli_main(["train", "--objective", dpo_module, "--model", world["base"], "--lora-rank", "2", "--data", PARQUET,
              "--steps", "2", "--batch", "2", "--lr", "0.2", "--warmup", "0", "--out", str(run_dir)])
    r = ev.evaluate(world["base"], ["dpo=" + str(run_dir)], world["prompts"], str(tmp_path / "ev"),
                    scorers={"clip": world["clip"]}, steps=2, bootstrap=200, progress=False)
    assert r["models"][0]["kind"] == "lora"
    per = json.load(open(tmp_path / "ev" / "per_prompt.json"))
    assert any(not (images(tmp_path / "ev" / s["images"]["base"]) == images(tmp_path / "ev" / s["images"]["dpo"])).all()
               for p in per for s in p["samples"]), "the trained LoRA did not change any image"
