"""lipstream: text or live audio in, a lip-synced talking avatar out."""
from .checkpoint import load_wav2lip
from .config import RenderConfig
from .errors import LipstreamError
from .mel import wav2lip_mel
from .render import RenderResult, render
from .wav2lip import Wav2Lip

__all__ = ["Wav2Lip", "load_wav2lip", "wav2lip_mel", "render", "RenderResult", "RenderConfig", "LipstreamError"]
