"""Tiny Stable-Diffusion-like pipelines with random weights, built from configs and saved with `save_pretrained`.

They have the structure of the real models (the same pipeline, UNet / transformer, VAE, CLIP text encoder and
scheduler classes) at a few thousand parameters, so tests, examples and evaluation code run on a CPU in seconds and
never touch the network:

    from seppoc_torch.testing import tiny_sd, tiny_sdxl, tiny_sd3
    tiny_sd("/tmp/tiny-sd")                              # StableDiffusionPipeline, epsilon prediction
    tiny_sd("/tmp/tiny-sd-v", prediction="v_prediction")
    tiny_sdxl("/tmp/tiny-sdxl")                          # StableDiffusionXLPipeline (two text encoders)
    tiny_sd3("/tmp/tiny-sd3")                            # StableDiffusion3Pipeline (rectified flow, no T5)

Images are `resolution` pixels square (default 32); the VAE downsamples by 2, so latents are 4 x 16 x 16. The text
side is an in-memory CLIP tokenizer over single letters and digits (no merges; anything else is `<unk>`) and
one-layer CLIP text encoders of width 8. The weights are random: the pipelines are for exercising code, their
images are noise.
"""
import contextlib
import os
import string

import torch

TOKEN_LENGTH = 77  # model_max_length of the tiny tokenizers (and the text encoders' position table)


def tiny_tokenizer(max_length: int = TOKEN_LENGTH):
    """A CLIP tokenizer held in memory: start/end specials, `<unk>`, each lowercase letter and digit both as a
    word piece and as a word end (`a`, `a</w>`), no merges, so every word becomes its characters."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for ch in string.ascii_lowercase + string.digits:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>", model_max_length=max_length)


def _text_config(tok, hidden: int, projection: int):
    from transformers import CLIPTextConfig

    # The end token must not have id 2: CLIP then pools at the argmax of the ids (the original checkpoints'
    # behaviour) instead of at the first end token.
    return CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, projection_dim=projection,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=tok.model_max_length,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _vae(latent_channels=4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=2, sample_size=32, **extra)


def _discrete_scheduler_config(prediction):
    # Stable Diffusion 1.x/2.x's training schedule ("scaled_linear" betas 0.00085..0.012 over 1000 steps).
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type=prediction, steps_offset=1, timestep_spacing="leading")


def _save(pipe, path):
    os.makedirs(path, exist_ok=True)
    pipe.save_pretrained(path)
    return path


@contextlib.contextmanager
def _seeded(seed):
    """A private CPU RNG stream seeded with `seed`: the weights depend on `seed` only and the caller's global RNG
    is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_sd(path: str, prediction: str = "epsilon", seed: int = 0, resolution: int = 32) -> str:
    """A StableDiffusionPipeline (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, DDIMScheduler with
    `prediction`: "epsilon" or "v_prediction") saved to `path`; returns `path`."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"tiny_sd: prediction {prediction!r} (expected 'epsilon' or 'v_prediction')")
    with _seeded(seed):
        tok = tiny_tokenizer()
        unet = UNet2DConditionModel(
            sample_size=resolution // 2, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8, attention_head_dim=2,
            norm_num_groups=2)
        pipe = StableDiffusionPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok, 8, 8)), tokenizer=tok, unet=unet,
            scheduler=DDIMScheduler(clip_sample=False, set_alpha_to_one=False,
                                    **_discrete_scheduler_config(prediction)),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _save(pipe, path)


def tiny_sdxl(path: str, seed: int = 0, resolution: int = 32) -> str:
    """A StableDiffusionXLPipeline: a "text_time" UNet conditioned on both text encoders' penultimate states
    (8 + 8 wide) and on the second encoder's pooled projection (8) plus the six size/crop ids (4 each);
    EulerDiscreteScheduler as SDXL ships (the family trains on a DDPM schedule from its config)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with _seeded(seed):
        tok, tok2 = tiny_tokenizer(), tiny_tokenizer()
        unet = UNet2DConditionModel(
            sample_size=resolution // 2, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=2,
            norm_num_groups=2, use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + 8)
        pipe = StableDiffusionXLPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok, 8, 8)),
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tok2, 8, 8)), tokenizer=tok, tokenizer_2=tok2,
            unet=unet, scheduler=EulerDiscreteScheduler(**_discrete_scheduler_config("epsilon")),
            force_zeros_for_empty_prompt=True)
    return _save(pipe, path)


def tiny_sd3(path: str, seed: int = 0, resolution: int = 32) -> str:
    """A StableDiffusion3Pipeline without the T5 encoder (the pipeline then uses zero T5 embeddings): an
    SD3Transformer2DModel with one joint block (2 heads of 8), two CLIPTextModelWithProjection encoders (8 wide,
    pooled 8 + 8), a VAE with a shift factor, FlowMatchEulerDiscreteScheduler with shift 3 as SD3 ships."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    with _seeded(seed):
        tok, tok2 = tiny_tokenizer(), tiny_tokenizer()
        transformer = SD3Transformer2DModel(
            sample_size=resolution // 2, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
            attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
            pooled_projection_dim=16, pos_embed_max_size=resolution // 2)
        pipe = StableDiffusion3Pipeline(
            transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_vae(shift_factor=0.0609, scaling_factor=1.5305),
            text_encoder=CLIPTextModelWithProjection(_text_config(tok, 8, 8)), tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tok2, 8, 8)), tokenizer_2=tok2,
            text_encoder_3=None, tokenizer_3=None)
    return _save(pipe, path)
