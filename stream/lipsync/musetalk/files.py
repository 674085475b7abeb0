"""The MuseTalk 1.5 models folder, laid out as MuseTalk's own download script lays it out, checked
before anything is loaded: a missing, empty or foreign file is one line naming it and the layout."""
from __future__ import annotations

import os

from ...errors import LipstreamError

# role → path inside the folder; what MuseTalk's download_weights.sh fetches for v1.5.
LAYOUT = {
    "unet_config": "musetalkV15/musetalk.json",  # UNet2DConditionModel's kwargs
    "unet": "musetalkV15/unet.pth",  # its plain state dict
    "vae_config": "sd-vae/config.json",  # sd-vae-ft-mse (AutoencoderKL)
    "vae": "sd-vae/diffusion_pytorch_model.bin",
    "whisper_config": "whisper/config.json",  # whisper-tiny (WhisperModel; only the encoder runs)
    "whisper": "whisper/pytorch_model.bin",
    "whisper_features": "whisper/preprocessor_config.json",  # WhisperFeatureExtractor
    "parsing": "face-parse-bisent/79999_iter.pth",  # BiSeNet face parsing (19 classes)
}
# The ImageNet resnet18 that MuseTalk's BiSeNet constructor reads first is overwritten whole by
# 79999_iter.pth, so it is not needed here (it may be in the folder).
OPTIONAL = {"parsing_backbone": "face-parse-bisent/resnet18-5c106cde.pth"}


def layout_text() -> str:
    return ", ".join(LAYOUT.values())


def resolve(folder: str) -> dict[str, str]:
    """Every file of the layout in `folder`, as absolute paths; a clear error for the first one that is wrong."""
    if not isinstance(folder, str) or not folder:
        raise LipstreamError("--musetalk-models needs a folder")
    if os.path.isfile(folder):
        hint = (" (a Wav2Lip checkpoint goes with --checkpoint)" if folder.endswith((".pth", ".pt")) else "")
        raise LipstreamError(f"--musetalk-models wants the folder MuseTalk's download script fills, not a file: "
                             f"{folder}{hint}")
    if not os.path.isdir(folder):
        raise LipstreamError(f"MuseTalk models folder not found: {folder} (it holds {layout_text()})")
    files = {}
    for role, rel in LAYOUT.items():
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            raise LipstreamError(f"the MuseTalk models folder {folder} has no {rel} (the layout of MuseTalk's "
                                 f"download script: {layout_text()})")
        if os.path.getsize(path) == 0:
            raise LipstreamError(f"{path} is empty (download it again)")
        files[role] = os.path.abspath(path)
    return files


def signature(path: str) -> tuple:
    """What changes when a weights file is replaced: its path, size and modification time."""
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)
