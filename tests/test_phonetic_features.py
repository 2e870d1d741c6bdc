"""The speaker-independent `phones` audio features: recognised phones (pocketsphinx's bundled model, offline) and
standardised loudness, at 100 frames/s."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.audio.audio_io import load_audio, write_wav
from aenerf_ns.audio.audio_stream import StreamingFeatures
from aenerf_ns.audio.feature_registry import get_extractor, streaming_names
from aenerf_ns.audio.phonetic import (
    FEATURE_DIM,
    PHONES,
    MissingRecogniserError,
    loudness_track,
    phone_track,
    recognise_phones,
)

PHONES_CONFIG = AudioFeatureConfig(encoder="phones", cache=False)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    from media_files import write_speech_wav

    return write_speech_wav(tmp_path_factory.mktemp("phones") / "speech.wav", 2.0, seed=5)


def test_phones_are_registered_at_100_frames_per_second_and_do_not_stream():
    extractor = get_extractor("phones")
    assert extractor.rate == 100.0
    assert extractor.dim(PHONES_CONFIG) == FEATURE_DIM == len(PHONES) + 1 == 41
    assert extractor.standardise is False
    assert "phones" not in streaming_names()
    with pytest.raises(ValueError, match="'phones' does not stream"):
        StreamingFeatures(PHONES_CONFIG, fps=25.0)


def test_features_are_one_hot_phones_and_loudness_per_video_frame(speech):
    feats = compute_audio_features(speech, fps=25.0, config=PHONES_CONFIG)
    assert feats.shape == (50, 16, FEATURE_DIM)  # 2 s at 25 fps, 0.16 s windows of 10 ms frames
    phones = feats[..., : len(PHONES)]
    # not standardised over the clip: every frame names exactly one phone
    np.testing.assert_array_equal(phones.sum(-1), np.ones(phones.shape[:2], np.float32))
    assert set(np.unique(phones)) == {0.0, 1.0}
    said = np.unique(phones.argmax(-1))
    assert len(said) >= 3, f"the recogniser heard almost nothing in synthetic speech: {[PHONES[i] for i in said]}"
    loudness = feats[:, 8, -1]  # the frame at each window's centre
    assert abs(float(loudness.mean())) < 0.3 and 0.5 < float(loudness.std()) < 1.5


def test_a_quieter_recording_of_the_same_speech_gives_the_same_features(speech, tmp_path):
    audio = load_audio(speech)
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, audio.samples * 0.3, audio.sample_rate)
    loud, soft = (compute_audio_features(p, fps=25.0, config=PHONES_CONFIG) for p in (speech, quiet))
    np.testing.assert_allclose(loud[..., -1], soft[..., -1], atol=0.02)  # loudness is relative to the clip
    agreement = (loud[..., :-1].argmax(-1) == soft[..., :-1].argmax(-1)).mean()
    assert agreement >= 0.9, f"only {agreement:.0%} of frames kept their phone when the level dropped"


def test_phone_segments_are_placed_one_recogniser_frame_later_and_noise_counts_as_silence():
    track = phone_track([("SIL", 0, 2), ("AA", 3, 5), ("+NSN+", 6, 7), ("IY", 8, 20)], num_frames=12)
    names = [PHONES[i] for i in track.argmax(-1)]
    assert names == ["SIL"] * 4 + ["AA"] * 3 + ["SIL"] * 2 + ["IY"] * 3
    assert track.shape == (12, len(PHONES)) and (track.sum(-1) == 1).all()


def test_loudness_is_standardised_and_follows_the_level():
    rate = 16000
    samples = np.concatenate([np.full(rate // 2, 0.01), np.full(rate // 2, 0.5)]).astype(np.float32)
    samples *= np.sign(np.sin(np.arange(rate) * 0.3)).astype(np.float32)
    level = loudness_track(samples, 100)
    assert abs(level.mean()) < 1e-5 and abs(level.std() - 1) < 1e-3
    assert level[10:40].max() < level[60:90].min()


def test_without_pocketsphinx_the_error_says_what_to_install(speech, monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(MissingRecogniserError, match="pip install pocketsphinx.*'logmel'"):
        recognise_phones(load_audio(speech))
