"""Streaming audio: incremental features equal the batch ones, live sources (growing wav, local socket), errors."""

import socket
import threading
import time
import wave

import numpy as np
import pytest

from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.audio.audio_io import AudioError, load_audio
from aenerf_ns.audio.audio_sources import GrowingWav, LocalSocket, open_source
from aenerf_ns.audio.audio_stream import StreamingFeatures
from aenerf_ns.audio.live_audio import LiveAudio
from aenerf_ns.audio.log_mel import log_mel_frames


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    from media_files import write_speech_wav

    return write_speech_wav(tmp_path_factory.mktemp("stream") / "speech.wav", 2.0, seed=7)


def _stream(features: StreamingFeatures, samples: np.ndarray, sizes) -> tuple[np.ndarray, list[int]]:
    out, counts, start = [], [], 0
    for size in sizes:
        out.append(features.push(samples[start : start + size]))
        counts.append(len(out[-1]))
        start += size
    out.append(features.finish())
    return np.concatenate(out), counts


@pytest.mark.parametrize("normalize", [False, True])
def test_chunked_features_equal_the_batch_features(short_speech, normalize):
    """Any chunking gives the whole file's numbers (normalised with the whole file's statistics when asked)."""
    config = AudioFeatureConfig(normalize=normalize, cache=False)
    audio = load_audio(short_speech)
    batch = compute_audio_features(short_speech, 25.0, None, config)
    frames = log_mel_frames(audio)
    stats = (frames.mean(0), frames.std(0)) if normalize else None
    sizes = np.random.default_rng(0).integers(1, 2500, size=len(audio.samples)).cumsum()
    sizes = np.diff(np.concatenate([[0], sizes[sizes < len(audio.samples)], [len(audio.samples)]]))
    got, _ = _stream(StreamingFeatures(config, 25.0, stats), audio.samples, sizes)
    assert got.shape == batch.shape
    np.testing.assert_allclose(got, batch, atol=2e-5)


def test_each_chunk_emits_the_frames_it_completes(short_speech):
    """Frames come out as soon as their window has arrived (about 0.1 s after their middle), never twice."""
    audio = load_audio(short_speech)
    features = StreamingFeatures(AudioFeatureConfig(normalize=False), 25.0)
    chunk = 640  # 40 ms: one video frame of audio
    sizes = [chunk] * (len(audio.samples) // chunk)
    got, counts = _stream(features, audio.samples, sizes)
    emitted = np.cumsum(counts)
    arrived = np.arange(1, len(sizes) + 1) * chunk / 16000.0
    # frame i's window ends 8 log-mel frames (+ a 12.5 ms half window) after its middle (i + 0.5) / 25
    ready = np.floor((arrived - 0.0925) * 25.0 - 0.5 + 1).clip(0)
    assert np.all(emitted >= ready - 1) and np.all(emitted <= ready + 1), np.c_[emitted, ready][:8]
    assert len(got) == 50 and features.finish().shape[0] == 0


def test_streaming_refuses_what_it_cannot_do():
    with pytest.raises(AudioError, match="logmel"):
        StreamingFeatures(AudioFeatureConfig(encoder="wav2vec2"), 25.0)
    features = StreamingFeatures()
    with pytest.raises(AudioError, match=r"non-finite sample \(nan\) at 0.000 s"):
        features.push(np.array([0.0, np.nan], np.float32))


def _write_growing_wav(path, samples, chunk, pause):
    with wave.open(str(path), "wb") as f:  # the header is patched after every write, as many writers do
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        for start in range(0, len(samples), chunk):
            f.writeframes((samples[start : start + chunk] * 32767).astype("<i2").tobytes())
            f._file.flush()
            time.sleep(pause)


def test_growing_wav_is_followed_while_it_is_written(short_speech, tmp_path):
    audio = load_audio(short_speech)
    path = tmp_path / "growing.wav"
    writer = threading.Thread(target=_write_growing_wav, args=(path, audio.samples, 4000, 0.02))
    writer.start()
    live = LiveAudio(GrowingWav(path, idle_seconds=0.5), StreamingFeatures(AudioFeatureConfig(normalize=False)))
    live.start().join(timeout=30)
    writer.join()
    assert live.done and live.error is None
    config = AudioFeatureConfig(normalize=False, cache=False)
    batch = compute_audio_features(path, 25.0, None, config)
    np.testing.assert_allclose(live.rows(range(len(live))), batch, atol=2e-5)
    assert np.all(np.diff(live.arrival) >= 0)


def test_a_stream_in_the_wrong_format_is_refused_clearly(tmp_path):
    import soundfile

    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.zeros((4410, 2), np.float32), 44100, subtype="FLOAT")
    live = LiveAudio(GrowingWav(path, idle_seconds=0.2), StreamingFeatures()).start()
    live.join(timeout=10)
    assert "float 32-bit, 2 channel(s), 44100 Hz" in live.error and "mono, 16000 Hz, 16-bit PCM" in live.error
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        list(GrowingWav(tmp_path / "text.wav", idle_seconds=0.2))
    with pytest.raises(AudioError, match="does not exist"):
        list(GrowingWav(tmp_path / "missing.wav", idle_seconds=0.1))


def test_the_socket_listens_on_localhost_only_unless_asked():
    with pytest.raises(AudioError, match="refusing to listen for audio on 0.0.0.0"):
        LocalSocket("0.0.0.0", 0)
    with pytest.raises(AudioError, match="refusing"):
        open_source("tcp://192.168.1.2:5000")
    with pytest.raises(AudioError, match="tcp://127.0.0.1:PORT"):
        open_source("tcp://127.0.0.1")
    with pytest.raises(AudioError, match="unknown stream address"):
        open_source("udp://127.0.0.1:5000")
    remote = LocalSocket("0.0.0.0", 0, allow_remote=True)
    remote.stop()
    list(remote)  # a stopped server ends its stream and closes


def test_socket_chunks_arrive_in_order(short_speech):
    audio = load_audio(short_speech)
    source = LocalSocket("127.0.0.1", 0)
    live = LiveAudio(source, StreamingFeatures(AudioFeatureConfig(normalize=False))).start()
    pcm = (audio.samples * 32767).astype("<i2").tobytes()
    with socket.create_connection(("127.0.0.1", source.port)) as conn:
        for start in range(0, len(pcm), 3001):  # odd sizes split samples across chunks
            conn.sendall(pcm[start : start + 3001])
    live.join(timeout=30)
    assert live.done and live.error is None
    expected = StreamingFeatures(AudioFeatureConfig(normalize=False))
    want = np.concatenate([expected.push((audio.samples * 32767).astype("<i2") / 32768.0), expected.finish()])
    np.testing.assert_allclose(live.rows(range(len(live))), want, atol=1e-6)
