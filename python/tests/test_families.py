"""The diffusers families on tiny random pipelines (CPU, offline): forward-process and target identities, time
values, reference switching, latent sampling against the pipelines' own loops, Diffusion-DPO against the anchor
scripts' formula, LoRA save -> diffusers load_lora_weights, load errors."""
import importlib.util
import json
import math
import os
import subprocess

import pytest
import torch
import torch.nn.functional as F

from seppoc_torch.diffusers_family import load
from seppoc_torch.family import SampleNoise, UserError
from seppoc_torch.plan import load_objective

from conftest import seppoc_binary
from seppoc_torch.testing import tiny_sd, tiny_sd3, tiny_sdxl

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ["sd", "sd_v", "sdxl", "sd3"]
CAPTIONS = ["a red cube", "two blue dogs", "", "a cat 3"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"sd": tiny_sd(str(root / "sd")), "sd_v": tiny_sd(str(root / "sd_v"), prediction="v_prediction"),
            "sdxl": tiny_sdxl(str(root / "sdxl")), "sd3": tiny_sd3(str(root / "sd3"))}


@pytest.fixture(scope="module")
def dpo_emitted(tmp_path_factory):
    """objectives/dpo.obj through `seppoc emit --target torch`."""
    exe = seppoc_binary()
    out = str(tmp_path_factory.mktemp("emit") / "dpo_loss.py")
    subprocess.run([exe, "emit", "--target", "torch", os.path.join(ROOT, "objectives", "dpo.obj"), "-o", out],
                   check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("dpo_loss", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch(fam, n=4, seed=0):
    """Latents of random images, captions' conditions, (t, eps) from one generator."""
    g = torch.Generator().manual_seed(seed)
    px = torch.rand((n, 3, fam.resolution, fam.resolution), generator=g) * 2 - 1
    x0 = fam.encode_images(px)
    t = fam.draw_t(g, n)
    eps = torch.randn(x0.shape, generator=g)
    return x0, t, eps, fam.encode_prompts(CAPTIONS[:n])


def perturb(fam, seed=1, scale=0.05):
    """Moves every trainable parameter (as a few training steps would), so policy and base differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in fam.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def bare_base(path, fam):
    """The base denoiser straight from disk, as a frozen copy."""
    from diffusers import SD3Transformer2DModel, UNet2DConditionModel

    cls = SD3Transformer2DModel if fam.name == "sd3" else UNet2DConditionModel
    return cls.from_pretrained(os.path.join(path, fam.net_name)).requires_grad_(False).train()


# ---------------------------------------------------------------- forward process, targets, time values
@pytest.mark.parametrize("kind", KINDS)
def test_noise_target_identities(models, kind):
    fam = load(models[kind], lora_rank=2)
    x0, t, eps, _ = batch(fam)
    x_t, target = fam.add_noise(x0, eps, t), fam.target(x0, eps, t)
    tv = fam.time_values(t)
    a, s = (tv[k].view(-1, 1, 1, 1) for k in ("alpha", "sigma"))
    x0d, epsd, xtd, tgt = x0.double(), eps.double(), x_t.double(), target.double()
    assert torch.allclose(xtd, a * x0d + s * epsd, atol=1e-6)
    if kind == "sd":
        assert fam.prediction == "epsilon" and torch.equal(target, eps)
        assert torch.allclose((xtd - s * tgt) / a, x0d, atol=1e-4)
    elif kind == "sd_v":
        # v = alpha eps - sigma x0, so eps = sigma x_t + alpha v and x0 = alpha x_t - sigma v (alpha^2 + sigma^2 = 1)
        assert fam.prediction == "v_prediction"
        assert torch.allclose(s * xtd + a * tgt, epsd, atol=1e-5)
        assert torch.allclose(a * xtd - s * tgt, x0d, atol=1e-5)
        v = fam.train_scheduler.get_velocity(x0, eps, t)
        assert torch.allclose(target, v, atol=1e-6)
    elif kind == "sdxl":
        assert torch.equal(target, eps)
    else:
        # flow: target = eps - x0, so eps = x_t + alpha target and x0 = x_t - sigma target
        assert fam.prediction == "flow" and torch.equal(target, eps - x0)
        assert torch.allclose(xtd + a * tgt, epsd, atol=1e-5)
        assert torch.allclose(xtd - s * tgt, x0d, atol=1e-5)
    if kind != "sd3":
        # The anchors' noising (DDPMScheduler.add_noise in float32).
        assert torch.allclose(x_t, fam.train_scheduler.add_noise(x0, eps, t), atol=1e-6)
    else:
        # diffusers' SD3 scripts: sigma looked up in the scheduler's table, x_t = (1 - sigma) x0 + sigma eps.
        sig = fam.train_scheduler.sigmas[t].view(-1, 1, 1, 1)
        assert torch.equal(x_t, (1.0 - sig) * x0 + sig * eps)


@pytest.mark.parametrize("kind", ["sd", "sd3"])
def test_time_values(models, kind):
    fam = load(models[kind], lora_rank=2)
    T = fam.num_timesteps
    t = torch.tensor([0, 1, 17, 500, T - 1])
    tv = fam.time_values(t)
    assert all(v.dtype == torch.float64 for v in tv.values())
    assert torch.allclose(tv["snr"], tv["alpha"] ** 2 / tv["sigma"] ** 2, rtol=1e-12)
    if kind == "sd":
        # scaled_linear betas 0.00085..0.012 over T = 1000, computed independently in float64
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
        assert torch.allclose(fam.alphas_cumprod[t], torch.cumprod(1 - betas, 0)[t], atol=1e-6)
        # the values are those of the schedule the model is noised with (the scheduler's float32 table)
        abar = fam.train_scheduler.alphas_cumprod.double()[t]
        assert torch.equal(tv["timestep"], (t.double() + 1) / T)
        assert torch.equal(tv["alpha"], abar.sqrt()) and torch.equal(tv["sigma"], (1 - abar).sqrt())
        assert torch.equal(fam._model_timestep(t), t)
    else:
        # the shifted table: index i -> u = (T - i) / T, sigma = shift u / (1 + (shift - 1) u), shift 3
        u = (T - t.double()) / T
        sig = 3.0 * u / (1 + 2.0 * u)
        assert torch.allclose(tv["sigma"], sig, rtol=1e-6)
        assert torch.equal(tv["timestep"], tv["sigma"]) and torch.equal(tv["alpha"], 1 - tv["sigma"])
        # the transformer sees sigma * 1000
        assert torch.allclose(fam._model_timestep(t).double(), sig * 1000, rtol=1e-6)


def test_sd3_draws_t_as_diffusers_scripts():
    """Logit-normal (0, 1) u -> index floor(u T), exactly compute_density_for_timestep_sampling's draw."""
    from diffusers.training_utils import compute_density_for_timestep_sampling
    from seppoc_torch.diffusers_family import Sd3

    fam = Sd3.__new__(Sd3)
    fam.num_timesteps = 1000
    mine = fam.draw_t(torch.Generator().manual_seed(3), 4096)
    u = compute_density_for_timestep_sampling("logit_normal", 4096, logit_mean=0.0, logit_std=1.0,
                                              generator=torch.Generator().manual_seed(3))
    assert torch.equal(mine, (u * 1000).long())
    # symmetric around the middle of the table, most mass away from the ends
    assert abs(mine.double().mean().item() - 500) < 15 and (mine < 100).double().mean() < 0.05


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("kind", KINDS)
def test_initial_reference_is_the_base_model(models, kind):
    fam = load(models[kind], lora_rank=2)
    x0, t, eps, cond = batch(fam)
    x_t = fam.add_noise(x0, eps, t)
    perturb(fam)
    before = fam.trainable_set()
    policy = fam.predict(fam.module(), x_t, t, cond)
    with torch.no_grad(), fam.weights(None):
        ref = fam.predict(fam.module(), x_t, t, cond)
        assert fam.trainable_set() == before
    base = bare_base(models[kind], fam)
    with torch.no_grad():
        expect = fam._forward(base, x_t, fam._model_timestep(t), cond)
    assert torch.equal(ref, expect)
    assert not torch.allclose(ref, policy)
    assert fam.trainable_set() == before and before == {n for n, _ in fam.trainable_parameters()}
    assert torch.equal(fam.predict(fam.module(), x_t, t, cond), policy)


@pytest.mark.parametrize("lora", [2, None])
def test_pool_slot_equals_its_snapshot(models, lora):
    fam = load(models["sd"], lora_rank=lora)
    x0, t, eps, cond = batch(fam)
    x_t = fam.add_noise(x0, eps, t)
    perturb(fam, seed=1)
    snap = fam.snapshot()
    then = fam.predict(fam.module(), x_t, t, cond)
    perturb(fam, seed=2)
    now = fam.predict(fam.module(), x_t, t, cond)
    assert not torch.allclose(then, now)
    before = fam.trainable_set()
    with torch.no_grad(), fam.weights(snap):
        assert torch.equal(fam.predict(fam.module(), x_t, t, cond), then)
    assert fam.trainable_set() == before
    assert torch.equal(fam.predict(fam.module(), x_t, t, cond), now)
    if lora is None:
        with torch.no_grad(), fam.weights(None):
            base = fam.predict(fam.module(), x_t, t, cond)
        with torch.no_grad():
            assert torch.equal(base, fam._forward(bare_base(models["sd"], fam), x_t, fam._model_timestep(t), cond))


def test_lora_starts_equal_and_trains_adapters_only(models):
    fam = load(models["sd3"], lora_rank=4, seed=7)
    names = [n for n, _ in fam.trainable_parameters()]
    assert names and all("lora_" in n and ".default." in n for n in names)
    assert any("add_q_proj" in n for n in names), "SD3's text-side projections are adapted too"
    assert all(p.dtype == torch.float32 for _, p in fam.trainable_parameters())
    assert all(torch.count_nonzero(p) == 0 for n, p in fam.trainable_parameters() if "lora_B" in n)
    again = load(models["sd3"], lora_rank=4, seed=7)
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(fam.trainable_parameters(), again.trainable_parameters()))


@pytest.mark.parametrize("kind", ["sdxl", "sd3"])
def test_bf16_mixed_precision(models, kind):
    """Frozen parts and LoRA base weights in bf16, adapters in float32; under autocast the first step's policy
    is the base model exactly and gradients reach every adapter weight."""
    fam = load(models[kind], lora_rank=2, mixed_precision="bf16")
    assert fam.net_dtype == torch.bfloat16 and fam.vae.dtype == torch.bfloat16
    assert {p.dtype for _, p in fam.trainable_parameters()} == {torch.float32}
    x0, t, eps, cond = batch(fam, n=2)
    x_t = fam.add_noise(x0, eps, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = fam.predict(fam.module(), x_t, t, cond)
        with torch.no_grad(), fam.weights(None):
            ref = fam.predict(fam.module(), x_t, t, cond)
    assert torch.equal(pred, ref)
    ((pred.float() - fam.target(x0, eps, t)) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for _, p in fam.trainable_parameters())


# ---------------------------------------------------------------- sampling
def pipeline_latents(path, kind, cond_prompts, x_T, steps, cfg, scheduler):
    """The pipeline's own __call__ from the same x_T (output_type latent)."""
    from diffusers import DiffusionPipeline

    extra = {"text_encoder_3": None, "tokenizer_3": None} if kind == "sd3" else {}
    pipe = DiffusionPipeline.from_pretrained(path, **extra)
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config, clip_sample=False)
    pipe.set_progress_bar_config(disable=True)
    res = x_T.shape[-1] * 2
    return pipe(cond_prompts, num_inference_steps=steps, guidance_scale=cfg, latents=x_T.clone(), height=res,
                width=res, output_type="latent").images


@pytest.mark.parametrize("kind", KINDS)
def test_two_step_sampling_matches_the_pipeline(models, kind):
    from diffusers import DDIMScheduler

    fam = load(models[kind], lora_rank=2)
    n = 2
    cond = fam.encode_prompts(CAPTIONS[:n])
    x_T = torch.randn((n,) + fam.latent_shape, generator=torch.Generator().manual_seed(5))
    spec = {"sampler": "ddim", "steps": 2, "cfg": 4.0, "eta": 0.0}
    mine = fam.sample(cond, x_T, spec, SampleNoise(0, torch.arange(n), n, fam.latent_shape))
    theirs = pipeline_latents(models[kind], kind, CAPTIONS[:n], x_T, 2, 4.0, None if kind == "sd3" else DDIMScheduler)
    assert mine.shape == x_T.shape and torch.isfinite(mine).all()
    assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mine, x_T)


@pytest.mark.parametrize("sampler,eta", [("ddim", 1.0), ("ddpm", 0.0)])
def test_stochastic_sampling_does_not_depend_on_the_split(models, sampler, eta):
    fam = load(models["sd_v"], lora_rank=2)
    n = 4
    cond = fam.encode_prompts(CAPTIONS[:n])
    x_T = torch.randn((n,) + fam.latent_shape, generator=torch.Generator().manual_seed(5))
    spec = {"sampler": sampler, "steps": 2, "cfg": 2.0, "eta": eta}
    whole = fam.sample(cond, x_T, spec, SampleNoise(11, torch.arange(n), n, fam.latent_shape))
    parts = [fam.sample({k: v[r] for k, v in cond.items()}, x_T[r], spec, SampleNoise(11, r, n, fam.latent_shape))
             for r in (torch.tensor([0, 2]), torch.tensor([1, 3]))]
    split = torch.empty_like(whole)
    split[[0, 2]], split[[1, 3]] = parts
    assert torch.allclose(whole, split, atol=1e-6)
    other = fam.sample(cond, x_T, spec, SampleNoise(12, torch.arange(n), n, fam.latent_shape))
    assert not torch.allclose(whole, other)


def test_ddpm_step_is_diffusers_step_with_given_noise():
    from diffusers import DDPMScheduler
    from seppoc_torch.diffusers_family import DiffusersFamily

    for prediction in ("epsilon", "v_prediction"):
        sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              prediction_type=prediction)
        sched.set_timesteps(4)
        g = torch.Generator().manual_seed(0)
        x, pred = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
        for t in sched.timesteps:
            expect = sched.step(pred, t, x, generator=torch.Generator().manual_seed(9)).prev_sample
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
            mine = DiffusersFamily.ddpm_step(sched, pred, t, x, (lambda: noise) if int(t) > 0 else None)
            assert torch.allclose(mine, expect, atol=1e-6), (prediction, int(t))


def test_flow_refuses_stochastic_samplers(models):
    fam = load(models["sd3"], lora_rank=2)
    x_T = torch.zeros((1,) + fam.latent_shape)
    for spec in ({"sampler": "ddpm", "steps": 2, "cfg": 1.0, "eta": 0.0},
                 {"sampler": "ddim", "steps": 2, "cfg": 1.0, "eta": 0.5}):
        with pytest.raises(UserError, match="flow model"):
            fam.sample(fam.encode_prompts(["a"]), x_T, spec, SampleNoise(0, torch.arange(1), 1, fam.latent_shape))


# ---------------------------------------------------------------- Diffusion-DPO against the anchors
def anchor_errors(fam, x0w, x0l, eps, t, cond):
    """Per-sample errors as diffusers' train_diffusion_dpo.py computes them: winner || loser in one 2B batch,
    shared noise and t, DDPMScheduler.add_noise, reference = the bare UNet with adapters disabled."""
    unet = fam.module()
    sched = fam.train_scheduler
    latents = torch.cat([x0w, x0l])
    noise, ts = torch.cat([eps, eps]), torch.cat([t, t])
    noisy = sched.add_noise(latents, noise, ts)
    h = cond["encoder_hidden_states"].repeat(2, 1, 1)
    target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, ts)
    pred = unet(noisy, ts, h).sample
    model_losses = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
    with torch.no_grad():
        unet.disable_adapters()
        ref_pred = unet(noisy, ts, h).sample
        unet.enable_adapters()
    ref_losses = F.mse_loss(ref_pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
    return model_losses, ref_losses


def sd15_loss(model_losses, ref_losses, beta):
    """diffusers' SD1.5 script: logits = ref_diff - model_diff, loss = -logsigmoid(beta logits).mean()."""
    mw, ml = model_losses.chunk(2)
    rw, rl = ref_losses.chunk(2)
    return -F.logsigmoid(beta * ((rw - rl) - (mw - ml))).mean()


def sdxl_loss(model_losses, ref_losses, beta):
    """diffusers' SDXL script and DiffusionDPO: -logsigmoid(-0.5 beta (model_diff - ref_diff)).mean()."""
    mw, ml = model_losses.chunk(2)
    rw, rl = ref_losses.chunk(2)
    return -F.logsigmoid(-0.5 * beta * ((mw - ml) - (rw - rl))).mean()


def executor_leaves(fam, x0w, x0l, eps, t, cond):
    """The leaves as the executor builds them from the family: one taped pass over both views, one reference
    pass under weights(None), err = per-sample mean squared error against the family's target."""
    x = torch.cat([fam.add_noise(x0w, eps, t), fam.add_noise(x0l, eps, t)])
    tt = torch.cat([t, t])
    tgt = torch.cat([fam.target(x0w, eps, t), fam.target(x0l, eps, t)])
    c = {k: v.repeat(2, *[1] * (v.dim() - 1)) for k, v in cond.items()}
    pol = ((fam.predict(fam.module(), x, tt, c).float() - tgt) ** 2).flatten(1).mean(1)
    with torch.no_grad(), fam.weights(None):
        ref = ((fam.predict(fam.module(), x, tt, c).float() - tgt) ** 2).flatten(1).mean(1)
    n = x0w.shape[0]
    return {"e_policy_winner": pol[:n], "e_policy_loser": pol[n:], "e_ref_winner": ref[:n], "e_ref_loser": ref[n:]}


def grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


@pytest.mark.parametrize("kind", ["sd", "sd_v"])
def test_dpo_obj_is_the_anchor_loss(models, kind, dpo_emitted):
    fam = load(models[kind], lora_rank=4)
    params = [p for _, p in fam.trainable_parameters()]
    g = torch.Generator().manual_seed(0)
    n = 3
    px = torch.rand((2 * n, 3, fam.resolution, fam.resolution), generator=g) * 2 - 1
    x0 = fam.encode_images(px)
    x0w, x0l = x0[:n], x0[n:]
    t = fam.draw_t(g, n)
    eps = torch.randn(x0w.shape, generator=g)
    cond = fam.encode_prompts(CAPTIONS[:n])
    for step in (1, 2):
        if step == 2:
            perturb(fam)  # a policy away from the reference: non-trivial margins
        leaves = executor_leaves(fam, x0w, x0l, eps, t, cond)
        m_loss, r_loss = anchor_errors(fam, x0w, x0l, eps, t, cond)
        assert torch.allclose(torch.cat([leaves["e_policy_winner"], leaves["e_policy_loser"]]), m_loss, rtol=1e-5)
        assert torch.allclose(torch.cat([leaves["e_ref_winner"], leaves["e_ref_loser"]]), r_loss, rtol=1e-5)
        # dpo.obj's beta = 5000 is diffusers' SD1.5 default beta_dpo = 2500 (no 0.5 factor) and its SDXL /
        # DiffusionDPO default 5000 (with the 0.5 factor): the same loss. On the same per-sample errors:
        same = torch.cat([leaves["e_policy_winner"], leaves["e_policy_loser"]])
        ref = torch.cat([leaves["e_ref_winner"], leaves["e_ref_loser"]])
        for beta in (5000.0, 300.0):
            loss = dpo_emitted.objective(leaves, {"beta": beta})[0]
            a15, axl = sd15_loss(same, ref, beta / 2), sdxl_loss(same, ref, beta)
            if step == 1:  # policy = reference exactly: ln 2 (in float32, the leaves' dtype)
                assert loss.item() == torch.tensor(math.log(2), dtype=torch.float32).item()
            assert torch.allclose(loss, a15, rtol=1e-6) and torch.allclose(loss, axl, rtol=1e-6)
            # Gradients: both formulas on the same leaves taken to float64, so what is compared is the formula and
            # not float32 rounding. (In float32 the emitted ops, autograd Functions with the f64 oracle's derivative
            # formulas, round differently from torch's built-ins, and the winner and loser terms of +-beta/2 nearly
            # cancel: parameter gradients then differ by up to ~1e-5 of their largest entry, run to run.)
            wide = {k: v.double() for k, v in leaves.items()}
            loss64 = dpo_emitted.objective(wide, {"beta": beta})[0]
            axl64 = sdxl_loss(same.double(), ref.double(), beta)
            for gs, ga in zip(grads(loss64, params), grads(axl64, params)):
                assert torch.allclose(gs, ga, rtol=1e-5, atol=1e-12)
            # ... and the anchor's own errors give the same loss
            assert torch.allclose(loss, sd15_loss(m_loss, r_loss, beta / 2), rtol=1e-4, atol=1e-6)
        assert any(p.abs().sum() > 0 for p in grads(dpo_emitted.objective(leaves, {"beta": 5000.0})[0], params))


# ---------------------------------------------------------------- saving
def fresh_pipeline(path, kind):
    from diffusers import DiffusionPipeline

    extra = {"text_encoder_3": None, "tokenizer_3": None} if kind == "sd3" else {}
    return DiffusionPipeline.from_pretrained(path, **extra)


def train_two_steps(fam):
    opt = torch.optim.AdamW([p for _, p in fam.trainable_parameters()], lr=1e-2)
    for step in range(2):
        x0, t, eps, cond = batch(fam, seed=step)
        pred = fam.predict(fam.module(), fam.add_noise(x0, eps, t), t, cond)
        loss = ((pred.float() - fam.target(x0, eps, t)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("kind,alpha", [("sd", None), ("sd_v", 8), ("sdxl", None), ("sd3", 1)])
def test_saved_lora_loads_into_a_fresh_pipeline(models, kind, alpha, tmp_path):
    fam = load(models[kind], lora_rank=4, lora_alpha=alpha)
    train_two_steps(fam)
    x0, t, eps, cond = batch(fam, seed=9)
    x_t = fam.add_noise(x0, eps, t)
    with torch.no_grad():
        trained = fam.predict(fam.module(), x_t, t, cond)
    out = fam.save(str(tmp_path / "run"))
    assert sorted(os.listdir(out)) == ["pytorch_lora_weights.safetensors"]
    pipe = fresh_pipeline(models[kind], kind)
    net = getattr(pipe, fam.net_name)
    with torch.no_grad():
        base = fam._forward(net, x_t, fam._model_timestep(t), cond)
    pipe.load_lora_weights(out)
    with torch.no_grad():
        loaded = fam._forward(net, x_t, fam._model_timestep(t), cond)
    assert not torch.allclose(loaded, base, atol=1e-4)
    assert torch.allclose(loaded, trained, atol=1e-6, rtol=1e-5)
    # saving again replaces the file; nothing else is left behind
    fam.save(out)
    assert sorted(os.listdir(out)) == ["pytorch_lora_weights.safetensors"]


def test_full_fine_tune_saves_a_pipeline(models, tmp_path):
    fam = load(models["sd"], lora_rank=None)
    train_two_steps(fam)
    x0, t, eps, cond = batch(fam, seed=9)
    x_t = fam.add_noise(x0, eps, t)
    with torch.no_grad():
        trained = fam.predict(fam.module(), x_t, t, cond)
        with fam.weights(None):
            base = fam.predict(fam.module(), x_t, t, cond)
    out = fam.save(str(tmp_path / "run"))
    again = load(out, lora_rank=None)
    with torch.no_grad():
        assert torch.equal(again.predict(again.module(), x_t, t, cond), trained)
    assert not torch.allclose(trained, base, atol=1e-4)


# ---------------------------------------------------------------- loading errors
def test_load_errors(tmp_path, models):
    with pytest.raises(UserError, match=r"empty.*model_index\.json is missing"):
        os.makedirs(tmp_path / "empty")
        load(str(tmp_path / "empty"))
    for cls, words in (("KandinskyPipeline", "'KandinskyPipeline' is not supported"),
                       ("FluxPipeline", "packing")):
        d = tmp_path / cls
        os.makedirs(d)
        (d / "model_index.json").write_text(json.dumps({"_class_name": cls}))
        with pytest.raises(UserError, match=f"{cls}.*{words}" if cls == "FluxPipeline" else words) as e:
            load(str(d))
        assert str(d) in str(e.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{")
    with pytest.raises(UserError, match="broken.*model_index.json: not readable JSON"):
        load(str(tmp_path / "broken"))
    with pytest.raises(UserError, match="lora-rank 0"):
        load(models["sd"], lora_rank=0)
    with pytest.raises(UserError, match="mixed precision"):
        load(models["sd"], mixed_precision="fp8")


# ---------------------------------------------------------------- every shipped objective through the executor
OBJECTIVES = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "objectives")) if f.endswith(".obj"))


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """objectives/NAME.obj -> an emitted module path, or the emitter's refusal (its message)."""
    exe = seppoc_binary()
    out_dir = tmp_path_factory.mktemp("objectives")
    cache = {}

    def get(name):
        if name not in cache:
            out = str(out_dir / f"{name}_loss.py")
            res = subprocess.run([exe, "emit", "--target", "torch", os.path.join(ROOT, "objectives", name + ".obj"),
                                  "-o", out], capture_output=True, text=True)
            cache[name] = (out, None) if res.returncode == 0 else (None, res.stderr.strip())
        return cache[name]
    return get


# Every shipped objective on every family (their reference samplers are all DDIM with eta 0, which the flow
# family runs as Euler).
CASES = [(o, k) for k in KINDS for o in OBJECTIVES]


@pytest.mark.parametrize("objective,kind", CASES)
def test_every_objective_trains_two_steps(models, emitted, objective, kind, tmp_path):
    """Two LoRA updates of a shipped objective on a tiny family with Pick-a-Pic rows, through the CLI's training
    loop: finite losses and gradient norms, metrics written, the LoRA saved."""
    from seppoc_torch.cli import parser
    from seppoc_torch.train import train

    module, refusal = emitted(objective)
    assert module is not None, f"seppoc emit --target torch refused {objective}.obj: {refusal}"
    out = str(tmp_path / "run")
    args = parser().parse_args(["train", "--objective", module, "--model", models[kind], "--data",
                                os.path.join(ROOT, "assets", "base", "preferences.parquet"), "--lora-rank", "2",
                                "--batch", "2", "--steps", "2", "--lr", "1e-3", "--warmup", "0", "--threads", "1",
                                "--json", "--out", out])
    plan = load_objective(module).plan
    if plan.get("online_rewards") or int(plan.get("group", 1)) > 1:
        # Online objectives (a reward model scores K samples per prompt) train with `seppoc run`: refused here.
        with pytest.raises(UserError, match="seppoc-torch train (has none|draws one row per prompt)"):
            train(args)
        return
    train(args)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in records), records
    assert os.path.isfile(os.path.join(out, "pytorch_lora_weights.safetensors"))
