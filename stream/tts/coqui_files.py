"""Where a Coqui model's files are: a checkpoint file (config.json beside it, or given), a folder
holding both, or a Coqui model name already in Coqui's local cache (or, for the models Coqui 0.28
fetches from the Hugging Face Hub, in that cache). Nothing is downloaded: a model that is not there
is one line saying where it belongs and how to fetch it on a machine with internet."""
from __future__ import annotations

import json
import os
import re

from ..errors import LipstreamError, one_line

_NAME = re.compile(r"^(tts_models|vocoder_models|voice_conversion_models)/[^/\s]+/[^/\s]+/[^/\s]+$")
_CHECKPOINTS = ("model_file.pth", "model_file.pth.tar", "model.pth", "checkpoint.pth", "best_model.pth")


def resolve(model: str, config: str | None) -> dict:
    """The files of `model`: {model, config, vocoder, vocoder_config}, all checked to exist."""
    path = os.path.expanduser(model)
    if config is not None:
        config = os.path.expanduser(config)
        if not os.path.isfile(config):
            raise LipstreamError(f"Coqui config not found: {config}")
    if os.path.isdir(path):
        ckpt = _checkpoint_in(path, model)
        config = config or os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise LipstreamError(f"no config.json in the Coqui model folder {model}: give --tts-config")
        files = {"model": os.path.realpath(ckpt), "config": os.path.realpath(config)}
    elif os.path.isfile(path):
        config = config or os.path.join(os.path.dirname(path) or ".", "config.json")
        if not os.path.isfile(config):
            raise LipstreamError(f"no config.json beside the Coqui model {model}: give --tts-config")
        files = {"model": os.path.realpath(path), "config": os.path.realpath(config)}
    elif _NAME.match(model):
        files = _cached(model, config)
    else:
        raise LipstreamError(f"Coqui model not found: {model} (give a model file or folder, or a model name "
                             f"like tts_models/en/ljspeech/vits)")
    if files["config"] is not None:
        check_config(files["config"])
    return files


def _checkpoint_in(folder: str, label: str) -> str:
    for name in _CHECKPOINTS:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    found = sorted(f for f in os.listdir(folder) if f.endswith((".pth", ".pth.tar", ".pt")) and "speaker" not in f)
    if len(found) == 1:
        return os.path.join(folder, found[0])
    if not found:
        raise LipstreamError(f"no model checkpoint (.pth) in the Coqui model folder {label}")
    raise LipstreamError(f"the Coqui model folder {label} holds several checkpoints ({', '.join(found[:4])}): "
                         f"give the file")


def user_data_dir():
    """Where coqui-tts keeps the models it downloaded (TTS_HOME, XDG_DATA_HOME, ~/.local/share, + /tts)."""
    try:
        from trainer.io import get_user_data_dir  # coqui-tts-trainer: what Coqui's ModelManager uses
    except ImportError:  # pragma: no cover - the trainer comes with coqui-tts
        from pathlib import Path

        base = os.environ.get("TTS_HOME") or os.environ.get("XDG_DATA_HOME") or "~/.local/share"
        return Path(base).expanduser().resolve() / "tts"
    return get_user_data_dir("tts")


def _models_json() -> dict:
    """Coqui's catalogue of released models (a file in the package; read without importing TTS)."""
    from importlib import resources

    try:
        return json.loads(resources.files("TTS").joinpath(".models.json").read_text(encoding="utf-8"))
    except (ModuleNotFoundError, OSError, ValueError) as e:
        raise LipstreamError(f"coqui-tts is not installed or broken ({e}): pip install coqui-tts") from None


def _cached(name: str, config: str | None, kind: str = "tts_models") -> dict:
    """A model name → its files in Coqui's local cache; never downloads."""
    model_type, lang, dataset, model = name.split("/")
    if model_type != kind:
        raise LipstreamError(f"{name} is not a text-to-speech model (Coqui names those tts_models/…)")
    item = _models_json().get(model_type, {}).get(lang, {}).get(dataset, {}).get(model)
    if item is None and "fairseq" not in name:
        raise LipstreamError(f"unknown Coqui model name {name} (`tts --list_models` lists them; or give a model file "
                             f"or folder)")
    folder = user_data_dir() / f"{model_type}--{lang}--{dataset}--{model}"
    fetch = f"python -c \"from TTS.api import TTS; TTS('{name}')\""
    if not folder.is_dir() and item is not None and "repo_id" in item:  # kept in the Hugging Face cache
        folder = _hf_snapshot(name, item, fetch)
    elif not folder.is_dir():
        raise LipstreamError(f"Coqui model {name} is not downloaded and lipstream never downloads: put it in "
                             f"{folder} (on a machine with internet, {fetch} fetches it there; copy the folder), "
                             f"or give --tts-model a model file or folder")
    if "fairseq" in name:  # Coqui loads these from the folder itself
        return {"model": str(folder), "config": None}
    try:
        from TTS.utils.manage import ModelManager

        ckpt, cfg = ModelManager._find_files(folder)
        ModelManager(progress_bar=False)._update_paths(folder, cfg)  # speaker files etc. where this copy lives
    except LipstreamError:
        raise
    except Exception as e:  # noqa: BLE001 - a cache folder Coqui cannot read
        raise LipstreamError(f"the cached Coqui model {name} in {folder} is incomplete ({one_line(e)}): "
                             f"fetch it again") from None
    files = {"model": os.path.realpath(ckpt), "config": os.path.realpath(config or cfg)}
    vocoder = item.get("default_vocoder") if item else None
    if vocoder:
        voc = _cached(vocoder, None, kind="vocoder_models")
        files["vocoder"], files["vocoder_config"] = voc["model"], voc["config"]
    return files


def _hf_snapshot(name: str, item: dict, fetch: str):
    """Models Coqui fetches from the Hugging Face Hub live in its cache: found there offline, or an error."""
    from pathlib import Path

    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:  # pragma: no cover - a dependency of coqui-tts
        raise LipstreamError(f"Coqui model {name} is not downloaded (huggingface_hub missing)") from None
    repo = item["repo_id"]
    where = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    try:
        return Path(snapshot_download(repo, allow_patterns=item.get("allow"), ignore_patterns=item.get("ignore"),
                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and kin: not in the cache
        raise LipstreamError(f"Coqui model {name} is not downloaded and lipstream never downloads: it belongs in "
                             f"the Hugging Face cache, {where} (on a machine with internet, {fetch} fetches it "
                             f"there; copy that folder), or give --tts-model the model's folder") from None


def check_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        raise LipstreamError(f"cannot read Coqui config {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise LipstreamError(f"Coqui config {path} is not valid JSON: {one_line(e)}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), str):
        raise LipstreamError(f"{path} is not a Coqui TTS config (it names no \"model\")")
    return cfg
