"""Coqui TTS through coqui-tts's own loaders: tiny random VITS models, saved the way Coqui saves
them ({"model": state_dict} + config.json), on the CPU, never touching the network."""
import json
import os
import shutil
import subprocess
import sys
import threading

import av
import numpy as np
import pytest
import torch
from conftest import ROOT

import stream
from stream.cli.main import main
from stream.config import make_config
from stream.errors import LipstreamError
from stream.live.session import Frame, SegmentEnd, Session
from stream.tts import coqui as tts_coqui
from stream.tts.chunker import sentences
from stream.tts.coqui import CoquiTTS
from stream.tts.coqui_random import save_random_vits as save_tiny_vits
from stream.tts.registry import make_tts

# With pytest-xdist, one worker runs them all: the tiny XTTS and VITS are made once, transformers
# is imported once (5.5 s), and librosa's numba kernels, which Coqui imports, are compiled once
# (≈ 25 s of CPU in a fresh venv; tests/test_mel.py's librosa test joins the group for the same reason).
pytestmark = pytest.mark.xdist_group("librosa")

BOX = (67, 170, 177, 270)  # the example avatar's face box: no face detection
RATE = 16000
SENTENCE = "Hello there, this is a test."
LONG = ("The quick brown fox jumps over the lazy dog near the river bank. "
        "Sphinx of black quartz, judge my vow and do it quickly please. "
        "Pack my box with five dozen liquor jugs before the evening comes. "
        "How vexingly quick daft zebras jump over the sleeping brown cat. "
        "The five boxing wizards jump quickly over the tall wooden fence. "
        "Jackdaws love my big sphinx of quartz more than anything else here. "
        "A wizard's job is to vex chumps quickly in fog, said the old man. "
        "We promptly judged antique ivory buckles for the next prize today.")


@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory) -> tuple[str, str]:
    pytest.importorskip("TTS", reason="coqui-tts is not installed (a GPU machine has it only when carried as a wheel)")
    return save_tiny_vits(tmp_path_factory.mktemp("vits"))


@pytest.fixture(scope="session")
def tiny_vits_speakers(tmp_path_factory) -> tuple[str, str]:
    return save_tiny_vits(tmp_path_factory.mktemp("vits_speakers"), speakers=["alice", "bob", "carol"])


def engine(model, config=None, **settings) -> CoquiTTS:
    tts = make_tts(make_config(tts_model=model, tts_config=config, **settings), torch.device("cpu"))
    assert isinstance(tts, CoquiTTS)
    return tts


def say(tts, text) -> np.ndarray:
    chunks = list(tts.synthesize(text))
    assert chunks and all(isinstance(c, np.ndarray) and c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    return np.concatenate(chunks)


@pytest.fixture
def no_downloads(monkeypatch):
    """Coqui's downloader fails the test if anything calls it."""
    from TTS.utils.manage import ModelManager

    def no_download(*args, **kwargs):
        raise AssertionError("lipstream tried to download a model")

    monkeypatch.setattr(ModelManager, "download_model", no_download)


def test_a_saved_vits_loads_through_the_factory_and_speaks(tiny_vits):
    model, config = tiny_vits
    tts = engine(model, config)
    assert (tts.name, tts.device, tts.sample_rate, tts.describe()) == ("coqui vits", "cpu", RATE, "coqui vits (cpu)")
    short, long = say(tts, "Hello."), say(tts, SENTENCE + " And a good deal more to say after that.")
    assert np.isfinite(long).all() and np.sqrt(np.mean(long**2)) > 1e-4
    assert len(long) > 2 * len(short) > 0
    assert len(long) % 256 == 0  # whole hops: the waveform decoder's frames at the config's rate
    assert len(say(tts, SENTENCE)) == len(say(tts, SENTENCE))  # no duration noise: the same length each time
    # The folder alone, or the checkpoint with its config.json beside it, is the same model.
    assert engine(os.path.dirname(model)).sample_rate == engine(model).sample_rate == RATE
    assert list(tts.synthesize("   ")) == []


def test_text_the_model_cannot_read_gets_a_warning(tiny_vits, caplog):
    model, config = tiny_vits
    tts = engine(model, config)
    with caplog.at_level("WARNING", logger="lipstream"):
        tts.check("Hello, déjà vu!")  # a few letters outside a–z: read well enough
        assert not caplog.records
        tts.check("你好，世界。")
    assert [r.getMessage() for r in caplog.records] == [
        f"the Coqui model {model} cannot read most of this text ('世', '你', '好', '界' are not in its vocabulary; "
        f"it drops them): use a model for the text's language"]


def test_the_model_is_loaded_once_and_shared(tiny_vits):
    model, config = tiny_vits
    a, b, c = engine(model, config), engine(model), engine(os.path.dirname(model))
    assert a is not b and a._m is b._m is c._m
    assert a._m.model is b._m.model
    # Two threads at once (two sessions on the shared TTS threads): each gets its own, whole speech.
    expected = {t: len(say(a, t)) for t in (SENTENCE, LONG[:120])}
    errors, lengths = [], {SENTENCE: set(), LONG[:120]: set()}

    def run(tts, text):
        try:
            for _ in range(8):
                lengths[text].add(len(say(tts, text)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a, SENTENCE)), threading.Thread(target=run, args=(b, LONG[:120]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and lengths == {k: {n} for k, n in expected.items()}


def test_render_speaks_with_coqui(tmp_path, tiny_vits):
    model, config = tiny_vits
    out = tmp_path / "coqui.mp4"
    text = "Hello there. This clip is spoken by a tiny random Coqui model."
    result = stream.render(str(out), text=text, tts_model=model, tts_config=config, box=BOX, cache=False)
    assert "coqui vits (cpu)" in result.summary()
    tts = engine(model, config)
    speech = sum(len(say(tts, piece)) for piece in sentences(text)) / RATE
    assert abs(result.speech_seconds - speech) < 1e-6
    with av.open(str(out)) as c:
        a, v = c.streams.audio[0], c.streams.video[0]
        audio_s, video_s = float(a.duration * a.time_base), float(v.duration * v.time_base)
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert abs(audio_s - speech) < 0.1 and abs(video_s - speech) < 1 / 25 + 1e-6
    assert np.abs(pcm).max() > 1e-3  # speech, not silence


def test_a_live_session_speaks_with_coqui(tiny_vits):
    model, config = tiny_vits
    tts = engine(model, config)
    assert sentences(SENTENCE) == ["Hello there,", "this is a test."]  # the first clause goes first
    n = sum(len(say(tts, piece)) for piece in sentences(SENTENCE))
    with Session(tts_model=model, tts_config=config, box=BOX, cache=False) as s:
        s.say(SENTENCE)
        items = _drain(s)
    frames = [i for i in items if isinstance(i, Frame)]
    assert isinstance(items[-1], SegmentEnd) and not items[-1].interrupted
    assert frames and all(f.speaking for f in frames)
    assert len(frames) == -(-n * 25 // RATE)
    assert abs(items[-1].playback_position - n / RATE) < 1e-3


def _drain(session, first=None, seconds=60.0):
    """Speaking frames and the SegmentEnd, pulled as fast as they come; `first()` at the first speaking frame."""
    import time

    items, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = session.get()
        if isinstance(item, SegmentEnd):
            return items + [item]
        if item.speaking:
            if first is not None and not items:
                first()
            items.append(item)
        else:
            time.sleep(0.001)
    raise AssertionError("no SegmentEnd")


def test_speech_starts_before_the_whole_text_is_synthesised(tiny_vits, monkeypatch):
    """A piece (sentence or clause) per call: the first audio is out when one piece of many is made,
    and a live session shows its first speaking frame while later sentences are not synthesised yet."""
    model, config = tiny_vits
    tts = engine(model, config)
    pieces = sentences(LONG)
    assert len(pieces) >= 8
    lengths = [len(say(tts, p)) for p in pieces]
    assert sum(lengths) / RATE > 10  # more than the session synthesises ahead of playback (6 s)

    made = []
    synthesize = CoquiTTS.synthesize

    def counted(self, text):
        yield from synthesize(self, text)
        made.append(text)

    monkeypatch.setattr(CoquiTTS, "synthesize", counted)
    seen = []
    for piece in pieces:  # what the render's TTS stage does
        tts.speak(piece, lambda pcm: seen.append((len(made), len(pcm))))
    assert seen[0] == (0, lengths[0]) and [n for _, n in seen] == lengths  # the first audio: no piece finished yet

    made.clear()
    at_first = []
    with Session(tts_model=model, tts_config=config, box=BOX, cache=False) as s:
        s.say(LONG)
        items = _drain(s, first=lambda: at_first.append(len(made)))
    assert 1 <= at_first[0] < len(pieces)  # speaking before the last sentences were synthesised
    assert made == pieces  # and every sentence came, in order
    assert len([i for i in items if isinstance(i, Frame)]) == -(-sum(lengths) * 25 // RATE)


def test_speakers_of_a_multi_speaker_model(tiny_vits_speakers):
    model, config = tiny_vits_speakers
    bob = engine(model, config, tts_speaker="bob")
    assert int(bob._aux["speaker_ids"]) == 1 and len(say(bob, SENTENCE)) > 0
    with pytest.raises(LipstreamError, match=r"^the Coqui model .*model\.pth has several speakers: give --tts-speaker "
                                             r"\(one of alice, bob, carol\)$"):
        engine(model, config)
    with pytest.raises(LipstreamError, match=r"^the Coqui model .*model\.pth has no speaker 'zed' "
                                             r"\(it has alice, bob, carol\)$"):
        engine(model, config, tts_speaker="zed")
    with pytest.raises(LipstreamError, match=r"^the Coqui model .*model\.pth has no language 'de' "
                                             r"\(it speaks only en\): drop --tts-language$"):
        engine(model, config, tts_speaker="bob", tts_language="de")


def test_a_single_speaker_model_takes_no_speaker(tiny_vits):
    model, config = tiny_vits
    assert engine(model, config, tts_language="en").sample_rate == RATE
    with pytest.raises(LipstreamError) as e:
        engine(model, config, tts_speaker="alice")
    assert str(e.value) == f"the Coqui model {model} has a single speaker: drop --tts-speaker 'alice'"


def test_a_model_name_loads_from_coquis_cache_and_never_downloads(tmp_path, tiny_vits, monkeypatch, no_downloads):
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "coqui"))
    folder = tmp_path / "coqui" / "tts" / "tts_models--en--ljspeech--vits"
    name = "tts_models/en/ljspeech/vits"
    with pytest.raises(LipstreamError) as e:
        engine(name)
    assert str(e.value) == (
        f"Coqui model {name} is not downloaded and lipstream never downloads: put it in {folder} (on a machine with "
        f"internet, python -c \"from TTS.api import TTS; TTS('{name}')\" fetches it there; copy the folder), or give "
        f"--tts-model a model file or folder")
    folder.mkdir(parents=True)
    for f in tiny_vits:
        shutil.copy(f, folder)
    tts = engine(name)
    assert tts.name == "coqui vits" and len(say(tts, SENTENCE)) > 0
    assert tts._m.label == name


def test_a_hub_model_name_is_looked_for_in_the_hugging_face_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("TTS_HOME", str(tmp_path / "coqui"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    name = "tts_models/multilingual/multi-dataset/xtts_v2"
    with pytest.raises(LipstreamError) as e:
        engine(name, tts_language="en")
    assert str(e.value) == (
        f"Coqui model {name} is not downloaded and lipstream never downloads: it belongs in the Hugging Face cache, "
        f"{tmp_path / 'hub' / 'models--tts-hub--XTTS-v2'} (on a machine with internet, python -c \"from TTS.api "
        f"import TTS; TTS('{name}')\" fetches it there; copy that folder), or give --tts-model the model's folder")


def test_bad_models_and_configs_are_one_clear_error(tmp_path, tiny_vits):
    model, config = tiny_vits

    def error(m, c=None) -> str:
        with pytest.raises(LipstreamError) as e:
            engine(str(m), c and str(c))
        assert "\n" not in str(e.value)
        return str(e.value)

    missing = tmp_path / "none.pth"
    assert error(missing) == (f"Coqui model not found: {missing} (give a model file or folder, or a model name like "
                              f"tts_models/en/ljspeech/vits)")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(model, alone)
    assert error(alone / "model.pth") == f"no config.json beside the Coqui model {alone / 'model.pth'}: give --tts-config"
    assert error(alone) == f"no config.json in the Coqui model folder {alone}: give --tts-config"
    assert error(model, tmp_path / "nope.json") == f"Coqui config not found: {tmp_path / 'nope.json'}"
    assert error("tts_models/xx/nobody/vits") == ("unknown Coqui model name tts_models/xx/nobody/vits "
                                                  "(`tts --list_models` lists them; or give a model file or folder)")

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{this is not json")
    assert error(model, garbage).startswith(f"Coqui config {garbage} is not valid JSON: ")
    other = tmp_path / "other.json"
    other.write_text('{"fps": 25}')
    assert error(model, other) == f'{other} is not a Coqui TTS config (it names no "model")'
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"model": "wav2lip"}')
    assert error(model, unknown) == f"{unknown} is not a Coqui TTS config (Coqui has no model called 'wav2lip')"
    with open(config) as f:
        cfg = json.load(f)
    vocoder = tmp_path / "vocoder.json"
    vocoder.write_text(json.dumps({**cfg, "model": "hifigan"}))
    assert error(model, vocoder) == f"{vocoder} is a Coqui vocoder config (model hifigan), not a text-to-speech one"
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**cfg, "model_args": {**cfg["model_args"], "hidden_channels": 24}}))
    assert error(model, wider).startswith(f"the Coqui checkpoint {model} does not match its config {wider} "
                                          f"(size mismatch for ")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    assert error(junk, config) == f"the Coqui model {junk} is not a readable torch checkpoint"
    other_ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other_ckpt)
    assert error(other_ckpt, config) == f'{other_ckpt} is not a Coqui checkpoint (it has no "model" weights)'


def test_cli_errors_are_one_line(tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "render", "--text", "hi", "--tts", "coqui",
                           "-o", str(tmp_path / "x.mp4")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "lipstream: error: tts coqui needs a model: --tts-model PATH (with --tts-config) or a Coqui model name"]
    missing = tmp_path / "none.pth"
    assert main(["render", "--text", "hi", "--tts-model", str(missing), "--box", *map(str, BOX),
                 "-o", str(tmp_path / "y.mp4")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert err == [f"lipstream: error: Coqui model not found: {missing} (give a model file or folder, or a model "
                   f"name like tts_models/en/ljspeech/vits)"]
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


def test_a_spectrogram_model_speaks_through_its_vocoder_or_griffin_lim(tmp_path, monkeypatch, no_downloads):
    """Not VITS nor XTTS, here Glow-TTS: by name from Coqui's cache it comes with its default vocoder
    (a Multiband MelGAN) and speaks through it; a folder without a vocoder falls back to Coqui's
    Griffin-Lim. A waveform per piece either way."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.glow_tts_config import GlowTTSConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.models.glow_tts import GlowTTS
    from TTS.utils.audio.processor import AudioProcessor
    from TTS.vocoder.configs import MultibandMelganConfig
    from TTS.vocoder.models import setup_model as setup_vocoder

    torch.manual_seed(0)
    audio = BaseAudioConfig(sample_rate=RATE, fft_size=256, win_length=256, hop_length=64, num_mels=40,
                            griffin_lim_iters=10, do_trim_silence=False)
    chars = CharactersConfig(characters_class="TTS.tts.utils.text.characters.Graphemes", pad="<PAD>", eos="<EOS>",
                             bos="<BOS>", blank="<BLNK>", characters="abcdefghijklmnopqrstuvwxyz",
                             punctuations="!'(),-.:;? ")
    config = GlowTTSConfig(audio=audio, characters=chars, use_phonemes=False, text_cleaner="basic_cleaners",
                           out_channels=40, hidden_channels_enc=16, hidden_channels_dec=16, hidden_channels_dp=16,
                           num_flow_blocks_dec=2, num_block_layers=1,
                           encoder_params={"kernel_size": 3, "dropout_p": 0.1, "num_layers": 1, "num_heads": 2,
                                           "hidden_channels_ffn": 32, "input_length": None})
    cache = tmp_path / "coqui" / "tts"
    model = cache / "tts_models--en--ljspeech--glow-tts"  # .models.json: its default vocoder is this MelGAN
    vocoder = cache / "vocoder_models--en--ljspeech--multiband-melgan"
    model.mkdir(parents=True), vocoder.mkdir()
    torch.save({"model": GlowTTS(config).state_dict()}, model / "model_file.pth")
    config.save_json(str(model / "config.json"))
    voc = MultibandMelganConfig(audio=audio, generator_model_params={"upsample_factors": [4, 4], "num_res_blocks": 1},
                                discriminator_model_params={"base_channels": 16, "max_channels": 32,
                                                            "downsample_factors": [4]})  # 4 bands × 16 = the hop
    torch.save({"model": setup_vocoder(voc).state_dict()}, vocoder / "model_file.pth")
    voc.save_json(str(vocoder / "config.json"))
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "coqui"))
    long_text = SENTENCE + " And a good deal more to say after that, and more."

    def griffin_lim_not_used(*args, **kwargs):
        raise AssertionError("Griffin-Lim ran although the model has a vocoder")

    with monkeypatch.context() as m:
        m.setattr(AudioProcessor, "inv_melspectrogram", griffin_lim_not_used)
        named = engine("tts_models/en/ljspeech/glow-tts")
        vocoded = []
        run = named._m.api.synthesizer.vocoder_model.inference
        m.setattr(named._m.api.synthesizer.vocoder_model, "inference", lambda x: vocoded.append(x) or run(x))
        assert (named.name, named.sample_rate) == ("coqui glow_tts", RATE)
        short, long = say(named, "Hello there."), say(named, long_text)
        assert np.isfinite(long).all() and len(long) > 2 * len(short) > 0 and len(vocoded) >= 2

    alone = engine(str(model))  # the folder by itself: no vocoder, so Coqui's Griffin-Lim
    assert alone._m.api.synthesizer.vocoder_model is None
    short, long = say(alone, "Hello there."), say(alone, long_text)
    assert np.isfinite(long).all() and len(long) > 2 * len(short) > 0


# XTTS: a tiny random one (1 GPT layer, 32 channels; Coqui's fixed-size HiFi-GAN and speaker encoder).

def save_tiny_xtts(folder) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[de]"]
    vocab = {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz.,!?'-"))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "vocab.json"))
    torch.manual_seed(0)
    args = XttsArgs(gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, gpt_num_audio_tokens=66,
                    gpt_start_audio_token=64, gpt_stop_audio_token=65, gpt_max_audio_tokens=28, gpt_max_text_tokens=100,
                    gpt_use_perceiver_resampler=True, decoder_input_dim=32, tokenizer_file=str(folder / "vocab.json"))
    config = XttsConfig(model_args=args, languages=["en", "de"])
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    model.init_models()  # the GPT is made once the tokenizer is known
    with torch.no_grad():  # random weights would stop a sentence at a random token: always run to the limit
        model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    torch.save({"Ana": {"gpt_cond_latent": torch.randn(1, 32, 32), "speaker_embedding": torch.randn(1, 512, 1)}},
               folder / "speakers_xtts.pth")
    return str(folder)


@pytest.fixture(scope="session")
def tiny_xtts(tmp_path_factory) -> str:
    return save_tiny_xtts(tmp_path_factory.mktemp("xtts"))


@pytest.fixture
def gpt_steps(monkeypatch) -> list:
    """Counts the XTTS GPT's forward passes (one per generated token after the prompt)."""
    from TTS.tts.layers.xtts.gpt_inference import GPT2InferenceModel

    steps, forward = [], GPT2InferenceModel.forward

    def counted(self, *args, **kwargs):
        steps.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(GPT2InferenceModel, "forward", counted)
    return steps


def xtts(folder, **settings) -> CoquiTTS:
    return make_tts(make_config(tts_model=folder, **settings), torch.device("cpu"))


def test_xtts_streams_a_sentence_with_a_builtin_speaker(tiny_xtts, gpt_steps):
    tts = xtts(tiny_xtts, tts_speaker="Ana", tts_language="en")
    assert (tts.name, tts.sample_rate, tts.describe()) == ("coqui xtts", 24000, "coqui xtts (cpu)")
    gpt_steps.clear()
    at, chunks = [], []
    for chunk in tts.synthesize(SENTENCE):
        at.append(len(gpt_steps))
        chunks.append(chunk)
    assert all(isinstance(c, np.ndarray) and c.dtype == np.float32 and c.ndim == 1 and len(c) for c in chunks)
    assert np.isfinite(np.concatenate(chunks)).all()
    # The first chunk leaves after XTTS_CHUNK_TOKENS tokens, long before the sentence's last one.
    assert len(chunks) >= 2 and at[0] <= tts_coqui.XTTS_CHUNK_TOKENS + 1 < len(gpt_steps)
    assert not tts._m.lock.locked()


def test_closing_the_xtts_stream_stops_the_gpt(tiny_xtts, gpt_steps):
    tts = xtts(tiny_xtts, tts_speaker="Ana", tts_language="en")
    gpt_steps.clear()
    whole = len(list(tts.synthesize(SENTENCE))) and len(gpt_steps)
    gpt_steps.clear()
    stream_ = tts.synthesize(SENTENCE)
    next(stream_)
    first = len(gpt_steps)
    stream_.close()
    assert first < whole and len(gpt_steps) == first and not tts._m.lock.locked()
    gpt_steps.clear()
    got = []
    tts.speak(SENTENCE, lambda pcm: got.append(pcm) or False)  # an interrupt after the first chunk
    assert len(got) == 1 and len(gpt_steps) == first and not tts._m.lock.locked()


def test_xtts_clones_a_wav_read_with_soundfile(tmp_path, tiny_xtts, gpt_steps, speech_22k, monkeypatch):
    import soundfile
    import torchaudio

    def no_torchaudio_load(*args, **kwargs):
        raise AssertionError("torchaudio.load needs FFmpeg libraries: soundfile reads the WAV")

    monkeypatch.setattr(torchaudio, "load", no_torchaudio_load)
    wav = tmp_path / "voice.wav"
    soundfile.write(str(wav), np.stack([speech_22k, speech_22k], axis=1), 22050)  # stereo: averaged to mono
    a = xtts(tiny_xtts, tts_speaker=str(wav), tts_language="de")
    latent, embedding = a._latents
    assert latent.shape == (1, 32, 32) and embedding.shape == (1, 512, 1)
    assert xtts(tiny_xtts, tts_speaker=str(wav), tts_language="de")._latents[0] is latent  # cloned once
    assert len(np.concatenate(list(a.synthesize("Hallo, wie geht es?")))) > 0


def test_xtts_voice_and_language_errors(tmp_path, tiny_xtts, gpt_steps):
    import soundfile

    def error(**settings) -> str:
        with pytest.raises(LipstreamError) as e:
            xtts(tiny_xtts, **settings)
        return str(e.value)

    m = f"the Coqui model {tiny_xtts}"
    assert error(tts_speaker="Ana") == f"{m} (XTTS) is multilingual: give --tts-language (one of de, en)"
    assert error(tts_speaker="Ana", tts_language="fr") == f"{m} has no language 'fr' (it has de, en)"
    assert error(tts_language="en") == (f"{m} (XTTS) needs a voice: give --tts-speaker (one of Ana, or a WAV of the "
                                        f"voice to clone)")
    assert error(tts_speaker="Bob", tts_language="en") == (f"{m} has no speaker 'Bob' and no such WAV exists "
                                                           f"(give one of Ana, or a WAV of the voice to clone)")
    short = tmp_path / "short.wav"
    soundfile.write(str(short), np.zeros(1000, np.float32), 22050)
    assert error(tts_speaker=str(short), tts_language="en") == (
        f"the speaker WAV {short} is too short to clone a voice (give 3 to 30 s of speech)")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    assert error(tts_speaker=str(text), tts_language="en").startswith(f"cannot read the speaker WAV {text}: ")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_speaks_on_the_device_in_reduced_precision(tiny_vits):
    model, config = tiny_vits
    tts = make_tts(make_config(tts_model=model, tts_config=config), torch.device("cuda"))
    assert tts.device.startswith("cuda") and tts.describe().startswith("coqui vits (cuda")
    assert isinstance(tts._m.model.waveform_decoder, tts_coqui.Autocast)  # the HiFi-GAN decoder in float16
    chunks = list(tts.synthesize(SENTENCE))
    assert chunks and all(isinstance(c, torch.Tensor) and c.is_cuda and c.dtype == torch.float32 and c.ndim == 1
                          for c in chunks)
    wav = torch.cat(chunks)
    assert torch.isfinite(wav).all() and wav.abs().max() > 1e-4
    assert abs(len(wav) - len(say(engine(model, config), SENTENCE))) <= 4 * 256  # durations stay float32: ~the same
    with Session(tts_model=model, tts_config=config, box=BOX, device="cuda", cache=False) as s:
        s.say(SENTENCE)
        items = _drain(s)
    assert isinstance(items[-1], SegmentEnd) and all(f.image.is_cuda for f in items[:-1])
