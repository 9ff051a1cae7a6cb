"""Image scorers for `seppoc-torch eval`: the automatic judges the preference-alignment papers report.

Every scorer is loaded from a local folder or file (nothing is fetched: a missing path is a UserError that names
what to download and where to put it) and maps (prompt, PIL image) pairs to one float per image:

  pickscore  PickScore (Kirstain et al. 2023, arXiv:2305.01569), a fine-tuned CLIP-H. As its README computes it:
             logit_scale.exp() * cos(text embedding, image embedding). (The README then softmaxes over candidate
             images; for one image per prompt the pre-softmax score is what papers tabulate, about 20-23.)
  hps        an HPS v2-style CLIP model (Wu et al. 2023, arXiv:2306.09341) saved in transformers' CLIPModel
             format: 100 * cos(text, image) (HPS v2 reports the cosine in percent, about 25-30).
  clip       CLIP score as torchmetrics' CLIPScore defines it: 100 * max(cos(text, image), 0) (Hessel et al. 2021,
             arXiv:2104.08718, with w = 100).
  aesthetic  a LAION-style aesthetics head: a stack of Linear layers over the L2-normalised CLIP image embedding of
             a CLIP model (LAION's predictor uses openai/clip-vit-large-patch14, 768-dim). See `AestheticScorer`
             for the weight layout.

A CLIP folder must load with transformers' CLIPModel.from_pretrained and CLIPProcessor.from_pretrained (config.json,
weights, preprocessor_config.json and the tokenizer files). PickScore's model repository lacks the processor: copy
the processor files of laion/CLIP-ViT-H-14-laion2B-s32B-b79K into the same folder, or name that folder with
`processor=` (`--pickscore-processor`).
"""
import os

import torch

from .family import UserError

# What to download for each scorer, for the error a missing path raises.
WHERE = {
    "pickscore": "the model yuvalkirstain/PickScore_v1 plus the processor (preprocessor_config.json, tokenizer "
                 "files) of laion/CLIP-ViT-H-14-laion2B-s32B-b79K, e.g. `huggingface-cli download "
                 "yuvalkirstain/PickScore_v1 --local-dir DIR` and the processor files into DIR",
    "hps": "an HPS v2 checkpoint converted to transformers' CLIPModel format (config.json + weights + processor "
           "files of laion/CLIP-ViT-H-14-laion2B-s32B-b79K); the official HPS_v2_compressed.pt is an open_clip "
           "checkpoint and does not load as it is",
    "clip": "a CLIP model in transformers format, e.g. `huggingface-cli download openai/clip-vit-large-patch14 "
            "--local-dir DIR` (torchmetrics' default CLIP score model)",
    "aesthetic": "the head weights (e.g. sac+logos+ava1-l14-linearMSE.pth from "
                 "christophschuhmann/improved-aesthetic-predictor) and, for --aesthetic-clip, the CLIP model "
                 "openai/clip-vit-large-patch14 in transformers format",
}

_CLIP_CACHE = {}


def _need(kind, path, what):
    if not path:
        raise UserError(f"{kind}: no path given; download {WHERE[kind]}")
    if not os.path.exists(path):
        raise UserError(f"{kind}: {path} does not exist; download {WHERE[kind]} and pass its {what}")


def load_clip(kind, path, processor=None, device="cpu"):
    """(CLIPModel, CLIPProcessor) from local folders (no hub access), cached per (path, processor, device)."""
    _need(kind, path, "folder")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(f"{kind}: {path} is not a transformers CLIP folder (config.json is missing); "
                        f"download {WHERE[kind]}")
    proc_dir = processor or path
    if processor:
        _need(kind, processor, "processor folder")
    if not any(os.path.isfile(os.path.join(proc_dir, n)) for n in ("preprocessor_config.json",
                                                                     "processor_config.json")):
        raise UserError(f"{kind}: {proc_dir} has no preprocessor_config.json (the CLIP processor); "
                        f"download {WHERE[kind]}" + ("" if processor else ", or name the processor folder"))
    key = (os.path.abspath(path), os.path.abspath(proc_dir), str(device))
    if key not in _CLIP_CACHE:
        from transformers import CLIPModel, CLIPProcessor
        try:
            model = CLIPModel.from_pretrained(path, local_files_only=True).eval().to(device)
            proc = CLIPProcessor.from_pretrained(proc_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise UserError(f"{kind}: cannot load a CLIP model from {path} ({e}); download {WHERE[kind]}")
        _CLIP_CACHE[key] = (model, proc)
    return _CLIP_CACHE[key]


def _features(out):
    """transformers returns a tensor or (newer versions) an output object with the projected features."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("pooler_output", "text_embeds", "image_embeds"):
        v = getattr(out, name, None)
        if isinstance(v, torch.Tensor):
            return v
    raise TypeError(f"unexpected CLIP feature output {type(out).__name__}")


class ClipEmbedder:
    """Normalised CLIP text and image embeddings from one model + processor."""

    def __init__(self, kind, path, processor=None, device="cpu"):
        self.kind, self.path, self.device = kind, path, device
        self.model, self.processor = load_clip(kind, path, processor, device)

    @torch.no_grad()
    def images(self, images):
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        e = _features(self.model.get_image_features(pixel_values=pixels)).double()
        return e / e.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def texts(self, prompts):
        limit = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        inputs = self.processor(text=list(prompts), padding=True, truncation=True, max_length=limit,
                                return_tensors="pt")
        kw = {k: inputs[k].to(self.device) for k in ("input_ids", "attention_mask") if k in inputs}
        e = _features(self.model.get_text_features(**kw)).double()
        return e / e.norm(dim=-1, keepdim=True)

    def cosine(self, prompts, images):
        return (self.texts(prompts) * self.images(images)).sum(-1)


class Scorer:
    name = "?"
    source = ""

    def score(self, prompts, images):
        """One float per (prompt, image) pair."""
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "source": self.source, "formula": self.formula}


class _TextImageScorer(Scorer):
    """A score of cos(text, image) under one CLIP model (the subclass sets name, formula and `of_cosine`)."""

    def __init__(self, path, processor=None, device="cpu"):
        self.clip = ClipEmbedder(self.name, path, processor, device)
        self.source = os.path.abspath(path)

    def score(self, prompts, images):
        return self.of_cosine(self.clip.cosine(prompts, images).cpu()).tolist()


class PickScorer(_TextImageScorer):
    name = "pickscore"
    formula = "logit_scale.exp() * cos(text, image)"

    def of_cosine(self, cos):
        return self.clip.model.logit_scale.detach().double().exp().cpu() * cos


class HpsScorer(_TextImageScorer):
    name = "hps"
    formula = "100 * cos(text, image)"

    def of_cosine(self, cos):
        return 100.0 * cos


class ClipScorer(_TextImageScorer):
    name = "clip"
    formula = "100 * max(cos(text, image), 0)  (torchmetrics CLIPScore)"

    def of_cosine(self, cos):
        return 100.0 * cos.clamp(min=0)


def load_head(path):
    """The Linear stack of a LAION-style aesthetics head, as [(weight [out,in], bias [out])] in application order.

    Accepted layouts (a .safetensors file, or a PyTorch .pth/.pt/.bin state dict loaded with weights_only=True):
      * `layers.{i}.weight` / `layers.{i}.bias` for some indices i: the improved-aesthetic-predictor MLP
        (Linear 768->1024, Dropout, ->128, Dropout, ->64, Dropout, ->16, ->1: keys layers.0, 2, 4, 6, 7). The
        Linear layers are applied in increasing i with NOTHING between them: that predictor has no activations
        and its dropouts are the identity at inference.
      * `weight` / `bias`: a single Linear (LAION's first linear aesthetic predictor, e.g. sa_0_4_vit_l_14_linear.pth).
    Every layer's input size must equal the previous layer's output size, and the last layer must output 1.
    """
    _need("aesthetic", path, "head weights file (--aesthetic)")
    if os.path.isdir(path):
        raise UserError(f"aesthetic: {path} is a folder; pass the head's weights file (.pth or .safetensors)")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: name it
        raise UserError(f"aesthetic: cannot read {path} as a state dict ({type(e).__name__}: {e})")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"aesthetic: {path} is not a state dict of tensors")
    if set(sd) == {"weight", "bias"}:
        layers = [(sd["weight"], sd["bias"])]
    else:
        idx = set()
        for k in sd:
            parts = k.split(".")
            if len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit() or parts[2] not in ("weight", "bias"):
                raise UserError(f"aesthetic: {path}: unexpected key {k!r} (expected layers.<i>.weight/bias, or "
                                "weight/bias)")
            idx.add(int(parts[1]))
        layers = []
        for i in sorted(idx):
            if f"layers.{i}.weight" not in sd or f"layers.{i}.bias" not in sd:
                raise UserError(f"aesthetic: {path}: layers.{i} needs both weight and bias")
            layers.append((sd[f"layers.{i}.weight"], sd[f"layers.{i}.bias"]))
    if not layers:
        raise UserError(f"aesthetic: {path} holds no layers")
    for n, (w, b) in enumerate(layers):
        if w.dim() != 2 or b.shape != (w.shape[0],):
            raise UserError(f"aesthetic: {path}: layer {n} has weight {tuple(w.shape)} and bias {tuple(b.shape)}")
        if n and w.shape[1] != layers[n - 1][0].shape[0]:
            raise UserError(f"aesthetic: {path}: layer {n} takes {w.shape[1]} inputs but layer {n - 1} gives "
                            f"{layers[n - 1][0].shape[0]}")
    if layers[-1][0].shape[0] != 1:
        raise UserError(f"aesthetic: {path}: the last layer outputs {layers[-1][0].shape[0]} values, not 1")
    return [(w.double(), b.double()) for w, b in layers]


class AestheticScorer(Scorer):
    name = "aesthetic"
    formula = "MLP(normalised CLIP image embedding), Linear layers without activations"

    def __init__(self, head, clip, processor=None, device="cpu"):
        self.layers = load_head(head)
        if not clip:
            raise UserError(f"aesthetic: the head needs its CLIP image model (--aesthetic-clip); download "
                            f"{WHERE['aesthetic']}")
        self.clip = ClipEmbedder("aesthetic", clip, processor, device)
        dim = self.clip.model.config.projection_dim
        if self.layers[0][0].shape[1] != dim:
            raise UserError(f"aesthetic: the head {head} takes {self.layers[0][0].shape[1]}-dim embeddings but "
                            f"the CLIP model {clip} gives {dim}")
        self.source = f"{os.path.abspath(head)} over {os.path.abspath(clip)}"

    def score(self, prompts, images):
        x = self.clip.images(images).cpu()
        for w, b in self.layers:
            x = x @ w.T + b
        return x[:, 0].tolist()


def build(spec, device="cpu"):
    """Scorers from a dict: {"pickscore": DIR, "pickscore_processor": DIR, "hps": DIR, "hps_processor": DIR,
    "clip": DIR, "clip_processor": DIR, "aesthetic": HEAD_FILE, "aesthetic_clip": DIR}. Order: as listed."""
    out = []
    known = {"pickscore", "pickscore_processor", "hps", "hps_processor", "clip", "clip_processor", "aesthetic",
             "aesthetic_clip", "aesthetic_processor"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise UserError(f"unknown scorer setting(s) {unknown}; known: {sorted(known)}")
    if spec.get("pickscore"):
        out.append(PickScorer(spec["pickscore"], spec.get("pickscore_processor"), device))
    if spec.get("hps"):
        out.append(HpsScorer(spec["hps"], spec.get("hps_processor"), device))
    if spec.get("clip"):
        out.append(ClipScorer(spec["clip"], spec.get("clip_processor"), device))
    if spec.get("aesthetic") or spec.get("aesthetic_clip"):
        if not spec.get("aesthetic"):
            raise UserError(f"aesthetic: --aesthetic-clip given without the head (--aesthetic); download "
                            f"{WHERE['aesthetic']}")
        out.append(AestheticScorer(spec["aesthetic"], spec.get("aesthetic_clip"), spec.get("aesthetic_processor"),
                                   device))
    return out
