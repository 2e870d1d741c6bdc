import numpy as np
import pytest
import soundfile

from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.audio.audio_io import AudioError, load_audio
from aenerf_ns.audio.speech_models import MissingWeightsError, load_speech_model


def _speechy(seconds=2.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (
        0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
    ).astype(np.float32)


def test_logmel_shape_and_cache(tmp_path):
    wav = tmp_path / "a.wav"
    soundfile.write(wav, _speechy(), 16000)
    cache = tmp_path / "cache"
    feats = compute_audio_features(wav, fps=25, num_frames=50, cache_dir=cache)
    assert feats.shape == (50, 16, 80) and feats.dtype == np.float32
    assert len(list(cache.glob("logmel-*.npy"))) == 1
    again = compute_audio_features(wav, fps=25, num_frames=50, cache_dir=cache)
    np.testing.assert_array_equal(feats, again)
    other = compute_audio_features(wav, fps=25, num_frames=50, config=AudioFeatureConfig(n_mels=40), cache_dir=cache)
    assert other.shape == (50, 16, 40)
    assert len(list(cache.glob("logmel-*.npy"))) == 2, "different settings must not share a cache entry"


def test_window_is_centred_on_its_frame(tmp_path):
    """A click at 2.02 s (middle of frame 50 at 25 fps) is loudest in frame 50's window centre."""
    sr = 16000
    x = np.zeros(4 * sr, np.float32) + 1e-3 * np.random.default_rng(0).standard_normal(4 * sr).astype(np.float32)
    c = int(2.02 * sr)
    x[c - 80 : c + 80] = 0.9 * np.sin(np.arange(160) * 0.9)
    wav = tmp_path / "click.wav"
    soundfile.write(wav, x, sr)
    feats = compute_audio_features(wav, fps=25, num_frames=100, config=AudioFeatureConfig(normalize=False, cache=False))
    centre_energy = feats[:, 7:9, :].mean(axis=(1, 2))
    assert int(np.argmax(centre_energy)) == 50


@pytest.mark.parametrize("encoder", ["wav2vec2", "hubert"])
def test_speech_model_encoders_with_random_weights(tmp_path, encoder):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    small = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    model = (
        Wav2Vec2Model(Wav2Vec2Config(**small)) if encoder == "wav2vec2" else HubertModel(HubertConfig(**small))
    ).eval()
    wav = tmp_path / "a.wav"
    soundfile.write(wav, _speechy(), 16000)
    feats = compute_audio_features(wav, fps=25, num_frames=50, config=AudioFeatureConfig(encoder=encoder), model=model)
    assert feats.shape == (50, 8, 32)
    assert np.isfinite(feats).all() and feats.std() > 0
    # the same model saved to a folder loads through the local-files path
    model.save_pretrained(tmp_path / "model")
    loaded = load_speech_model(AudioFeatureConfig(encoder=encoder, model_path=tmp_path / "model"))
    again = compute_audio_features(
        wav,
        fps=25,
        num_frames=50,
        config=AudioFeatureConfig(encoder=encoder, model_path=tmp_path / "model"),
        cache_dir=tmp_path / "c",
    )
    assert type(loaded) is type(model)
    np.testing.assert_allclose(again, feats, atol=1e-4)


@pytest.mark.parametrize("encoder", ["wav2vec2", "hubert"])
def test_missing_weights_error_explains(tmp_path, encoder):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_speech_model(AudioFeatureConfig(encoder=encoder, model_path=tmp_path / "nowhere"))
    with pytest.raises(MissingWeightsError, match="Nothing is downloaded"):
        load_speech_model(AudioFeatureConfig(encoder=encoder, model_name="nobody/not-a-cached-model"))


def test_stereo_and_other_rates_are_converted(tmp_path):
    mono = _speechy(seconds=2.0, sr=16000)
    soundfile.write(tmp_path / "mono.wav", mono, 16000)
    import librosa

    hi = librosa.resample(mono, orig_sr=16000, target_sr=44100)
    soundfile.write(tmp_path / "stereo44.wav", np.stack([hi, hi], 1), 44100)
    loaded = load_audio(tmp_path / "stereo44.wav")
    assert loaded.source_channels == 2 and loaded.source_sample_rate == 44100 and loaded.sample_rate == 16000
    a = compute_audio_features(tmp_path / "mono.wav", 25, 50)
    b = compute_audio_features(tmp_path / "stereo44.wav", 25, 50)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    with pytest.raises(AudioError, match="could not decode"):
        load_audio(bad)
    short = tmp_path / "short.wav"
    soundfile.write(short, _speechy(seconds=1.0), 16000)
    with pytest.raises(AudioError, match="must cover the whole video"):
        compute_audio_features(short, fps=25, num_frames=50)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        compute_audio_features(silent, fps=25, num_frames=50)
    with pytest.raises(ValueError, match="unknown audio encoder"):
        compute_audio_features(short, fps=25, config=AudioFeatureConfig(encoder="deepspeech"))  # type: ignore[arg-type]
