"""SyncNet LSE-C / LSE-D: network layout, weights loading, MFCCs, face crops and the offset search.

Random weights stand in for syncnet_v2.model (never downloaded); the real-weights check is in the docs.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from aenerf_ns.audio.audio_io import LoadedAudio
from aenerf_ns.evaluation.syncnet_network import SyncNet, SyncNetWeightsError, load_syncnet
from aenerf_ns.evaluation.syncnet_score import (
    face_crops,
    indices_at_25fps,
    speech_mfcc,
    sync_offset_report,
    syncnet_metric,
    syncnet_pcm,
    syncnet_scores,
)
from aenerf_ns.utils.offline_weights import SYNCNET_WEIGHTS_ENV, syncnet_weights_path


@pytest.fixture(scope="module")
def network() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet().eval()


@pytest.fixture(scope="module")
def weights_file(network, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(network.state_dict(), path)
    return path


def _audio(samples: np.ndarray, rate: int = 16000) -> LoadedAudio:
    return LoadedAudio(samples.astype(np.float32), rate, rate, 1, Path("made-up.wav"))


def test_branches_embed_into_1024_dims(network):
    with torch.inference_mode():
        audio = network.embed_audio(torch.randn(3, 1, 13, 20))
        lips = network.embed_lips(torch.rand(2, 3, 5, 224, 224) * 255)
    assert audio.shape == (3, 1024) and lips.shape == (2, 1024)
    assert torch.isfinite(audio).all() and torch.isfinite(lips).all()


def test_layout_matches_released_key_names(network):
    keys = network.state_dict()
    assert keys["netcnnaud.0.weight"].shape == (64, 1, 3, 3)
    assert keys["netcnnaud.18.weight"].shape == (512, 256, 5, 4)  # index 18: the no-op MaxPool at 3 counts
    assert keys["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert keys["netcnnlip.18.weight"].shape == (512, 256, 1, 6, 6)
    assert keys["netfcaud.3.weight"].shape == keys["netfclip.3.weight"].shape == (1024, 512)
    assert sum(v.numel() for k, v in keys.items() if "num_batches" not in k) * 4 / 2**20 == pytest.approx(52, abs=1)


@pytest.mark.parametrize("wrapping", ["plain", "module_prefix", "syncnet_instance", "wrapped_dict"])
def test_weights_round_trip(network, tmp_path, wrapping):
    state = network.state_dict()
    content = {
        "plain": state,
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "syncnet_instance": {f"__S__.{k}": v for k, v in state.items() if "num_batches" not in k},
        "wrapped_dict": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
    }[wrapping]
    path = tmp_path / "weights.model"
    torch.save(content, path)
    loaded = load_syncnet(path)
    assert not loaded.training
    mfcc = torch.randn(2, 1, 13, 20)
    with torch.inference_mode():
        assert torch.equal(loaded.embed_audio(mfcc), network.embed_audio(mfcc))


def test_a_pickled_module_is_refused_naming_the_global(network, tmp_path):
    """Unpickling a whole module could run code from the file: it is refused, not read in full."""
    path = tmp_path / "module.model"
    torch.save(network, path)
    with pytest.raises(SyncNetWeightsError, match="refusing to load") as err:
        load_syncnet(path)
    assert str(path) in str(err.value) and "SyncNet" in str(err.value)


def test_mismatching_weights_are_refused_clearly(network, tmp_path):
    other = tmp_path / "other.model"
    torch.save(SyncNet(embedding_dim=512).state_dict(), other)
    with pytest.raises(SyncNetWeightsError, match="mismatching shapes") as err:
        load_syncnet(other)
    assert str(other) in str(err.value) and "netfcaud.3.weight" in str(err.value)

    partial = tmp_path / "partial.model"
    state = network.state_dict()
    state.pop("netcnnlip.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(SyncNetWeightsError, match=r"missing keys: netcnnlip\.0\.weight.*unexpected keys: extra"):
        load_syncnet(partial)

    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SyncNetWeightsError, match="could not read"):
        load_syncnet(junk)
    with pytest.raises(SyncNetWeightsError, match="does not exist"):
        load_syncnet(tmp_path / "absent.model")


def test_metric_skips_without_the_file_and_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(SYNCNET_WEIGHTS_ENV, raising=False)
    assert syncnet_weights_path() == Path.home() / ".cache" / "aenerf_ns" / "syncnet_v2.model"
    absent = tmp_path / "nowhere" / "syncnet_v2.model"
    monkeypatch.setenv(SYNCNET_WEIGHTS_ENV, str(absent))
    assert syncnet_weights_path() == absent
    network, reason = syncnet_metric()
    assert network is None and reason.startswith("skipped:") and str(absent) in reason
    network, reason = syncnet_metric(tmp_path / "explicit.model")
    assert network is None and str(tmp_path / "explicit.model") in reason


def test_metric_loads_present_weights(weights_file, tmp_path):
    network, reason = syncnet_metric(weights_file)
    assert reason is None and isinstance(network, SyncNet)
    bad = tmp_path / "bad.model"
    torch.save({"x": torch.zeros(2)}, bad)
    network, reason = syncnet_metric(bad)
    assert network is None and reason.startswith("skipped:") and str(bad) in reason


@pytest.mark.parametrize("shift", [3, -4, 0])
def test_offset_search_finds_a_known_shift(shift):
    """Audio features that are the video features moved by `shift` windows: the offset must be `shift`."""
    n, max_shift, dim = 200, 15, 64
    rng = np.random.default_rng(1)
    base = rng.normal(size=(n + 2 * max_shift, dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    video = base[max_shift : max_shift + n]  # video window i shows what audio window i - shift says
    audio = base[max_shift + shift : max_shift + shift + n]
    report = sync_offset_report(torch.tensor(video), torch.tensor(audio), max_shift)
    assert report["offset_frames"] == shift
    assert report["lse_d"] < 0.05  # only the |shift| windows without a partner add distance
    assert report["lse_c"] > 1.0  # unrelated unit vectors lie sqrt(2) apart
    assert report["windows"] == n


def test_offset_sign_means_video_lags_audio():
    """A mouth event in video window 10 and the sound in audio window 7: the video lags by 3 frames."""
    video, audio = torch.zeros(30, 4), torch.zeros(30, 4)
    video[10, 0] = audio[7, 0] = 5.0
    assert sync_offset_report(video, audio, 5)["offset_frames"] == 3


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(2)
    pcm = np.clip(rng.normal(0, 4000, 16000), -32768, 32767).astype(np.int16)
    pcm[4000:7000] = 0  # digital silence: the log(0) guards
    for length in (399, 400, 401, 1234, 16000):
        ours, theirs = speech_mfcc(pcm[:length]), psf.mfcc(pcm[:length], 16000)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-8)


def test_pcm_is_16k_int16_scale():
    samples = np.array([0.5, -1.0, 0.25, 1.0], np.float32)
    np.testing.assert_array_equal(syncnet_pcm(_audio(samples)), [16384, -32768, 8192, 32767])
    eight_k = syncnet_pcm(_audio(np.zeros(8000), 8000))
    assert len(eight_k) == 16000


def test_frames_picked_at_25fps_by_nearest_time():
    np.testing.assert_array_equal(indices_at_25fps(80, 50.0), np.arange(0, 80, 2))
    np.testing.assert_array_equal(indices_at_25fps(10, 25.0), np.arange(10))
    thirty = indices_at_25fps(30, 30.0)
    assert len(thirty) == 25 and thirty[5] == 6 and thirty[2] == 2  # 0.08 s: frame 2 (0.067 s) is nearest


def _box_landmarks(n: int, x0, y0, x1, y1) -> np.ndarray:
    points = np.zeros((n, 468, 3))
    points[..., 0] = np.linspace(x0, x1, 468)
    points[..., 1] = np.linspace(y1, y0, 468)
    return points


def test_face_crop_follows_the_reference_geometry():
    import cv2

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    # box x 20..40, y 16..36: half size 10, centre (30, 26); crop rows 26-10 .. 26+18, cols 30-14 .. 30+14
    crops = face_crops(frames, _box_landmarks(8, 20, 16, 40, 36))
    assert crops.shape == (8, 224, 224, 3)
    np.testing.assert_array_equal(crops[5], cv2.resize(frames[5][16:44, 16:44], (224, 224)))
    # a face at the corner: the 4 columns left of the image are the reference's grey padding
    grey = face_crops([np.full((64, 64, 3), 200, np.uint8)] * 8, _box_landmarks(8, 0, 0, 20, 20))
    assert (grey[:, :, :28] == 110).all() and (grey[:, :, 40:] == 200).all()


def test_too_few_frames_and_short_audio_are_refused(network):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 6
    with pytest.raises(ValueError, match="at least 7 frames"):
        syncnet_scores(network, frames, _box_landmarks(6, 8, 8, 24, 24), _audio(np.zeros(16000)), fps=25)
    frames = [np.zeros((32, 32, 3), np.uint8)] * 20
    with pytest.raises(ValueError, match="audio .* is shorter than the video"):
        syncnet_scores(network, frames, _box_landmarks(20, 8, 8, 24, 24), _audio(np.zeros(640 * 18)), fps=25)


def test_scores_end_to_end_on_a_tiny_clip(network):
    rng = np.random.default_rng(4)
    n = 40
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    jitter = rng.normal(0, 0.5, (n, 1, 1))
    landmarks = _box_landmarks(n, 18, 14, 46, 50) + jitter
    audio = _audio(rng.normal(0, 0.1, int(1.6 * 22050)), 22050)  # resampled to 16 kHz on the way
    report = syncnet_scores(network, frames, landmarks, audio, fps=25.0, batch_size=16)
    assert report["frames"] == n and report["windows"] == n - 5
    assert np.isfinite(report["lse_c"]) and np.isfinite(report["lse_d"])
    assert report["lse_c"] >= 0 and report["lse_d"] > 0
    assert -15 <= report["offset_frames"] <= 15
