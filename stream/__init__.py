"""lipstream: text or live audio in, a lip-synced talking avatar out.

Names resolve lazily, so the torch-only parts (model, mel, kernels) import on a machine that has
torch and triton but not the media stack (PyAV, eSpeak).
"""
import importlib

_NAMES = {
    "Wav2Lip": "lipsync.wav2lip.net",
    "load_wav2lip": "lipsync.wav2lip.checkpoint",
    "wav2lip_mel": "audio.mel",
    "musetalk_features": "lipsync.musetalk.features",
    "render": "graphs.render",
    "RenderResult": "graphs.render",
    "RenderConfig": "config",
    "LipstreamError": "errors",
    "InferenceWav2Lip": "lipsync.wav2lip.inference",
    "Session": "live.session",
    "Frame": "live.items",
    "SegmentEnd": "live.items",
    "SessionLimitError": "graphs.runtime",
}
__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'stream' has no attribute {name!r}")
