"""Audio with a NaN or infinite sample is refused wherever audio is read, naming the file and the sample's time:
aenerf-render, aenerf-eval, the dataparser, the viewer's audio file and its live stream."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from aenerf_ns.audio.audio_io import AudioError, load_audio, write_wav

VENV_BIN = Path(sys.executable).parent
BAD_TIME = 1.234
"""Where the bad sample sits, in seconds of the file."""


def _speech(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    track = synthesize_speech(seconds, seed=3)
    samples = track.audio.astype(np.float32)
    if rate != track.sample_rate:
        import librosa

        samples = librosa.resample(samples, orig_sr=track.sample_rate, target_sr=rate).astype(np.float32)
    return samples


def _float_wav(path: Path, bad: float, rate: int = 16000, channels: int = 1, seconds: float = 2.0) -> Path:
    """Speech as a 32-bit float wav (the format that can hold NaN) with one bad sample at BAD_TIME."""
    samples = np.repeat(_speech(seconds, rate)[:, None], channels, axis=1)
    samples[round(BAD_TIME * rate), channels - 1] = bad
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(("bad", "kind"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_the_loader_names_the_file_and_the_first_bad_samples_time(tmp_path, bad, kind):
    """Checked on the file's own samples: the time is right at 44.1 kHz in the right channel of a stereo file."""
    path = _float_wav(tmp_path / "speech.wav", bad, rate=44100, channels=2)
    with pytest.raises(AudioError, match=rf"speech.wav has a non-finite sample \({kind}\) at {BAD_TIME} s"):
        load_audio(path)
    everywhere = tmp_path / "all_nan.wav"
    soundfile.write(everywhere, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"all_nan.wav has a non-finite sample \(nan\) at 0.000 s"):
        load_audio(everywhere)
    with pytest.raises(AudioError, match=r"non-finite sample \(nan\) at 0.500 s"):
        write_wav(tmp_path / "out.wav", np.where(np.arange(16000) == 8000, np.nan, 0.0), 16000)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("program", ["aenerf-render", "aenerf-eval"])
def test_render_and_eval_refuse_it_before_the_model_loads(tiny_run, tmp_path, monkeypatch, program):
    wav = _float_wav(tmp_path / "speech.wav", np.nan)
    output = tmp_path / "out.mp4"
    cmd = [str(VENV_BIN / program), "--load-config", str(tiny_run), "--audio", str(wav)]
    if program == "aenerf-render":
        cmd += ["--output-path", str(output)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert f"{program}: error: {wav} has a non-finite sample (nan) at {BAD_TIME} s" in run.stderr
    assert "Traceback" not in run.stderr and not output.exists()

    # in-process: the audio is refused before any checkpoint is read
    import aenerf_ns.inference.checkpoints as checkpoints

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the audio was checked")

    monkeypatch.setattr(checkpoints, "load_trained_pipeline", no_model)
    if program == "aenerf-render":
        from aenerf_ns.scripts.render import RenderArgs, main

        args = RenderArgs(load_config=tiny_run, audio=wav, output_path=output)
    else:
        from aenerf_ns.scripts.eval import EvalArgs, main

        args = EvalArgs(load_config=tiny_run, audio=wav)
    with pytest.raises(AudioError, match="non-finite sample"):
        main(args)


def test_the_dataparser_refuses_a_dataset_whose_audio_has_nan(dataset_copy):
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    audio, rate = soundfile.read(dataset_copy / "audio.wav", dtype="float32")
    audio[round(BAD_TIME * rate)] = np.nan
    soundfile.write(dataset_copy / "audio.wav", audio, rate, subtype="FLOAT")
    parser = TalkingHeadDataParserConfig(data=dataset_copy).setup()
    with pytest.raises(AudioError, match=rf"audio.wav has a non-finite sample \(nan\) at {BAD_TIME} s"):
        parser.get_dataparser_outputs(split="train")


def _viewer_audio():
    """The viewer's audio controls on a stand-in model (they only read its audio table's size)."""
    from aenerf_ns.viewer.viewer_audio import ViewerAudio

    return ViewerAudio(types.SimpleNamespace(audio_table=torch.zeros(10, 16 * 80)))


def test_the_viewer_refuses_a_loaded_file_with_nan(tmp_path):
    viewer = _viewer_audio()
    wav = _float_wav(tmp_path / "speech.wav", np.nan)
    assert not viewer.load_file(wav)
    assert f"speech.wav has a non-finite sample (nan) at {BAD_TIME} s" in viewer.status.value
    assert viewer.file_table is None and viewer.source.value == "training audio"


def test_a_float_wav_stream_stops_at_its_first_bad_sample(tmp_path):
    """A clean 32-bit float wav streams like the file; one with an infinite sample stops there, with the time."""
    from aenerf_ns.audio.audio_features import AudioFeatureConfig
    from aenerf_ns.audio.audio_sources import GrowingWav
    from aenerf_ns.audio.audio_stream import StreamingFeatures
    from aenerf_ns.audio.live_audio import LiveAudio

    clean = tmp_path / "clean.wav"
    soundfile.write(clean, _speech(), 16000, subtype="FLOAT")
    streamed = np.concatenate(list(GrowingWav(clean, idle_seconds=0.1)))
    np.testing.assert_array_equal(streamed, load_audio(clean).samples)

    wav = _float_wav(tmp_path / "stream.wav", np.inf)
    live = LiveAudio(GrowingWav(wav, idle_seconds=0.2), StreamingFeatures(AudioFeatureConfig(normalize=False)))
    live.start().join(timeout=20)
    assert live.done and f"stream wav {wav} has a non-finite sample (inf) at {BAD_TIME} s" in live.error
    assert len(live) < BAD_TIME * 25, "no frame after the bad sample is emitted"

    viewer = _viewer_audio()
    assert viewer.start_stream(str(wav))
    viewer.live.join(timeout=20)
    assert viewer.live.done and "stream stopped" in viewer.status.value
    assert f"non-finite sample (inf) at {BAD_TIME} s" in viewer.status.value


def test_chunks_with_nan_are_refused_with_their_time_in_the_stream():
    from aenerf_ns.audio.audio_stream import StreamingFeatures

    features = StreamingFeatures()
    features.push(np.zeros(16000, np.float32))
    with pytest.raises(AudioError, match=r"the audio stream has a non-finite sample \(nan\) at 1.500 s"):
        features.push(np.where(np.arange(16000) == 8000, np.nan, 0.0).astype(np.float32))
