"""GPU kernels of the avatar pipeline (Triton on CUDA, plain torch elsewhere)."""

from .background import over, stacked_alpha
from .colour import bgr_to_i420, bgr_to_nv12
from .compose import compose
from .prepare import prepare

__all__ = ["prepare", "compose", "bgr_to_nv12", "bgr_to_i420", "over", "stacked_alpha"]
