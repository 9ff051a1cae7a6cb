"""Evaluation presets: the sampling settings the alignment papers' released evaluation code and model cards use.

Each preset fills steps / guidance / resolution / scheduler / seed / samples per prompt; flags given explicitly on
the command line override it (the report states both). Prompt sets are the user's files (see `prompts`).
docs/evaluation.md cites where every value comes from and says what the papers leave unstated.
"""
from .family import UserError

PICKAPIC = ("Pick-a-Pic v2 validation prompts: the `caption` column of the `validation_unique` split of "
            "yuvalkirstain/pickapic_v2_no_images (save it as Parquet, pass --prompts FILE --column caption)")
PARTI = ("PartiPrompts: the `Prompt` column of nateraw/parti-prompts (train split, 1632 prompts), or "
         "PartiPrompts.tsv from google-research/parti (--column Prompt)")
HPSV2 = ("HPS v2 benchmark prompts (tgxs002/HPSv2): a JSON list of prompt strings, or of objects with a `prompt` "
         "field (the form SePPO's valid_scores.py reads); pass the .json file as --prompts")


def _preset(family, guidance, resolution, sources, steps=50):
    """The settings of a paper's released evaluation: the pipeline's own scheduler, seed 0, one image per prompt
    unless stated otherwise; prompts from Pick-a-Pic, PartiPrompts and HPS v2 (the sets these papers report)."""
    return {"family": family, "steps": steps, "guidance": guidance, "resolution": resolution, "scheduler": "default",
            "seed": 0, "samples_per_prompt": 1, "prompts": [PICKAPIC, PARTI, HPSV2], "sources": sources}


PRESETS = {
    "diffusion-dpo-sd15": _preset("sd", 7.5, 512, [
        "DiffusionDPO quick_samples.ipynb (guidance 7.5 for SD 1.x, pipeline defaults otherwise, seed 0 per model)",
        "SePPO valid_scores.py (guidance 7.5 for SD 1.x, the pipeline's default 50 steps and scheduler, "
        "manual_seed(0))", "mhdang/dpo-sd1.5-text2image-v1 model card (guidance_scale=7.5)",
        "DiffusionDPO README (--resolution 512 for non-SDXL)"]),
    "diffusion-dpo-sdxl": _preset("sdxl", 5.0, 1024, [
        "DiffusionDPO quick_samples.ipynb (guidance 5 for SDXL, pipeline defaults otherwise, seed 0 per model)",
        "mhdang/dpo-sdxl-text2image-v1 model card (guidance_scale=5)",
        "SePPO valid_scores.py (guidance 5 for non-SD-1 models)", "DiffusionDPO README (--resolution 1024 for SDXL)"]),
    "seppo-sd15": _preset("sd", 7.5, 512, [
        "SePPO valid_scores.py: StableDiffusionPipeline called with guidance_scale=7.5 and otherwise defaults "
        "(50 steps, the checkpoint's scheduler, 512 px), torch.Generator manual_seed(0)"]),
    "diffusion-kto-sd15": _preset("sd", 7.0, 512, [
        "diffusion-kto README usage example (num_inference_steps=50, guidance_scale=7.0)"]),
}

SETTINGS = ("steps", "guidance", "resolution", "scheduler", "seed", "samples_per_prompt")


def family_of(pipeline_class: str) -> str:
    """"sd3" | "sdxl" | "sd" from a diffusers pipeline class name."""
    if "StableDiffusion3" in pipeline_class:
        return "sd3"
    return "sdxl" if "XL" in pipeline_class else "sd"


def get(name):
    if name not in PRESETS:
        raise UserError(f"--preset {name}: unknown preset; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
