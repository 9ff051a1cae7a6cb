"""seppoc_torch: executes an objective module emitted by `seppoc emit --target torch` (its PLAN) on a model
family (seppoc's DiT, Stable Diffusion 1.x/2.x, SDXL, SD3) with accelerate. Entry point: `seppoc-torch train`."""
from .family import Family, SampleNoise, UserError, load_family

__all__ = ["Family", "SampleNoise", "UserError", "load_family"]
__version__ = "0.1.0"
