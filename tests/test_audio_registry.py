"""Pluggable audio: the feature-extractor registry (and docs/audio_features.md's example of adding one), the
log-mel settings shared by the batch and streaming paths, and the audio code network chosen by config."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aenerf_ns.audio import feature_registry
from aenerf_ns.audio.audio_code import ConvAudioCode, ConvAudioCodeConfig
from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.audio.audio_io import AudioError, load_audio
from aenerf_ns.audio.audio_stream import StreamingFeatures
from aenerf_ns.audio.feature_registry import (
    FeatureExtractor,
    extractor_names,
    get_extractor,
    register_extractor,
    streaming_names,
)
from aenerf_ns.audio.log_mel import LOG_MEL, LogMelStream, log_mel_frames

DOC = Path(__file__).resolve().parent.parent / "docs" / "audio_features.md"


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test (registering is global)."""
    extractor_names()  # the built-in modules are imported before the copy
    monkeypatch.setattr(feature_registry, "EXTRACTORS", dict(feature_registry.EXTRACTORS))
    return feature_registry


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    from media_files import write_speech_wav

    return write_speech_wav(tmp_path_factory.mktemp("registry") / "speech.wav", 1.5, seed=3)


def _python_blocks(section: str) -> list[str]:
    """The ```python blocks of a `## section` of docs/audio_features.md."""
    text = DOC.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_built_in_extractors_are_registered_and_unknown_names_refused(registry, speech):
    assert extractor_names()[:3] == ["logmel", "wav2vec2", "hubert"]
    assert streaming_names() == ["logmel"]
    assert get_extractor("logmel").rate == 100.0 and get_extractor("hubert").rate == 50.0
    with pytest.raises(ValueError, match=r"unknown audio encoder 'deepspeech'.*logmel, wav2vec2, hubert"):
        get_extractor("deepspeech")
    with pytest.raises(ValueError, match="unknown audio encoder"):
        AudioFeatureConfig(encoder="deepspeech").window_frames()
    logmel = get_extractor("logmel")
    with pytest.raises(ValueError, match="already registered"):
        register_extractor(logmel)
    with pytest.raises(ValueError, match="must state its dim"):
        register_extractor(FeatureExtractor("nodim", 10.0, logmel.frames, stream=logmel.stream))
    with pytest.raises(ValueError, match="rate must be positive"):
        register_extractor(FeatureExtractor("norate", 0.0, logmel.frames))
    assert "nodim" not in extractor_names() and "norate" not in extractor_names()
    register_extractor(FeatureExtractor("flat", 100.0, lambda audio, config, model: audio.samples[:100]))
    with pytest.raises(
        ValueError, match=r"'flat' returned frames of shape \(100,\); a loader must return \(time, dim\)"
    ):
        compute_audio_features(speech, 25.0, None, AudioFeatureConfig(encoder="flat", cache=False))


def test_log_mel_settings_are_the_ones_every_run_used():
    """Changing one changes every feature and breaks every trained model: it must be a deliberate edit here."""
    assert (LOG_MEL.sample_rate, LOG_MEL.n_fft, LOG_MEL.hop_length, LOG_MEL.n_mels) == (16000, 400, 160, 80)
    assert (LOG_MEL.fmin, LOG_MEL.fmax, LOG_MEL.floor, LOG_MEL.rate) == (55, 7600, 1e-6, 100.0)
    assert AudioFeatureConfig().n_mels == LOG_MEL.n_mels


@pytest.mark.parametrize("n_mels", [80, 24])
def test_log_mel_stream_gives_the_batch_frames(speech, n_mels):
    audio = load_audio(speech)
    batch = log_mel_frames(audio, n_mels)
    stream = LogMelStream(n_mels)
    sizes = np.random.default_rng(n_mels).integers(1, 700, size=200)
    parts, start = [], 0
    for size in sizes:
        parts.append(stream.push(audio.samples[start : start + size]))
        start += size
    parts += [stream.push(audio.samples[start:]), stream.finish()]
    got = np.concatenate(parts)
    assert got.shape == batch.shape == (len(audio.samples) // LOG_MEL.hop_length + 1, n_mels)
    np.testing.assert_allclose(got, batch, atol=1e-5)


def test_the_documented_extractor_works_and_is_refused_by_streaming(registry, speech):
    """Runs docs/audio_features.md's example module and registry line as written."""
    module_code, registry_line = _python_blocks("Adding an audio feature")
    module = types.ModuleType("aenerf_ns.audio.loudness")
    exec(compile(module_code, str(DOC), "exec"), module.__dict__)
    assert "loudness" in extractor_names() and "loudness" not in streaming_names()
    shown = {}
    exec(registry_line, shown)
    assert shown["EXTRACTOR_MODULES"] == (*feature_registry.EXTRACTOR_MODULES, "aenerf_ns.audio.loudness")

    config = AudioFeatureConfig(encoder="loudness", cache=False)
    feats = compute_audio_features(speech, 25.0, None, config)
    assert feats.shape == (37, config.window_frames(), 1) == (37, 16, 1)
    assert np.isfinite(feats).all() and feats.std() > 0.1
    with pytest.raises(AudioError, match=r"'loudness' does not stream.*Extractors that stream: logmel"):
        StreamingFeatures(config, 25.0)


def _audio_code_keys(model) -> list[str]:
    return [key for key in model.state_dict() if key.startswith("audio_encoder.")]


class _MeanAudioCode(torch.nn.Module):
    """A different audio code network: the window's mean feature, projected."""

    def __init__(self, config, window: int, feature_dim: int, code_dim: int) -> None:
        super().__init__()
        self.window, self.feature_dim = window, feature_dim
        self.project = torch.nn.Linear(feature_dim, code_dim)

    def forward(self, audio):
        return self.project(audio.reshape(*audio.shape[:-1], self.window, self.feature_dim).mean(-2))


def test_the_audio_code_network_is_chosen_by_config(sample_dataset, make_pipeline):
    from dataclasses import dataclass, field

    @dataclass
    class MeanAudioCodeConfig(ConvAudioCodeConfig):
        _target: type = field(default_factory=lambda: _MeanAudioCode)

    default = make_pipeline(sample_dataset).model
    assert type(default.audio_encoder) is ConvAudioCode
    assert _audio_code_keys(default) == [  # earlier checkpoints' names
        *(f"audio_encoder.convs.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")),
        "audio_encoder.head.weight",
        "audio_encoder.head.bias",
    ]
    assert default.audio_encoder.convs[0].out_channels == 64 and default.audio_encoder.head.in_features == 128

    narrow = make_pipeline(sample_dataset, audio_code=ConvAudioCodeConfig(hidden_dim=16)).model
    assert narrow.audio_encoder.convs[0].out_channels == 16 and narrow.audio_encoder.head.in_features == 32

    other = make_pipeline(sample_dataset, audio_code=MeanAudioCodeConfig())
    assert type(other.model.audio_encoder) is _MeanAudioCode
    _, losses, _ = other.get_train_loss_dict(0)
    sum(losses.values()).backward()
    assert other.model.audio_encoder.project.weight.grad.abs().sum() > 0


def _without_setting(yaml_text: str, name: str) -> str:
    """`yaml_text` without the `name:` mapping entry and its indented children (as written before it existed)."""
    lines, out, skip_deeper = yaml_text.splitlines(), [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if skip_deeper is not None and indent > skip_deeper:
            continue
        skip_deeper = indent if line.strip().startswith(f"{name}:") else None
        if skip_deeper is None:
            out.append(line)
    return "\n".join(out) + "\n"


def test_configs_saved_before_audio_code_existed_load_with_the_default():
    import pickle

    from aenerf_ns.inference.legacy_modules import current_path, upgrade_python_tags
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    text = yaml.dump(aenerf_tiny_config())
    assert "audio_code: !!python/object:aenerf_ns.audio.audio_code.ConvAudioCodeConfig" in text
    old_text = _without_setting(text, "audio_code")
    assert re.search(r"^\s*audio_code:", old_text, flags=re.M) is None
    model = yaml.load(upgrade_python_tags(old_text), Loader=yaml.Loader).pipeline.model
    assert "audio_code_dim" in vars(model) and model.audio_code == ConvAudioCodeConfig()

    pickled = aenerf_tiny_config().pipeline.model
    del pickled.__dict__["audio_code"]
    assert pickle.loads(pickle.dumps(pickled)).audio_code == ConvAudioCodeConfig()

    for old in ("aenerf_ns.audio_encoder.AudioEncoder", "aenerf_ns.audio.audio_encoder.AudioEncoder"):
        assert current_path(old) == "aenerf_ns.audio.audio_code.ConvAudioCode"
