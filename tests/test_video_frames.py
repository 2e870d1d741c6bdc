"""Decoding user videos: real frame timing, resampling by timestamp, and clear errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from aenerf_ns.preprocess.video_frames import VideoInputError, probe_video, resampled_frames


def _write_vfr(path, times_s: list[float], size: int = 64) -> None:
    """An h264 mp4 whose frame i is uniformly grey at level 4*i and shown at times_s[i]."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for i, t in enumerate(times_s):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_variable_frame_rate_is_resampled_by_time(tmp_path):
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.07, 50))  # 14-50 fps, irregular
    times -= times[0]
    path = tmp_path / "vfr.mp4"
    _write_vfr(path, times.tolist())
    info = probe_video(path)
    assert info.variable_frame_rate and info.num_source_frames == 50
    np.testing.assert_allclose(info.duration_s - (times[-1] + np.median(np.diff(times))), 0, atol=0.01)
    n = int(times[-1] * 25)
    out = list(resampled_frames(path, 25.0, n))
    assert [k for k, _ in out] == list(range(n))
    for k, image in out:
        source = int(round(image.mean() / 4))
        nearest = int(np.argmin(np.abs(times - k / 25)))
        assert abs(times[source] - k / 25) <= abs(times[nearest] - k / 25) + 1e-3, (k, source, nearest)


def test_constant_rate_is_not_reported_variable(tmp_path):
    path = tmp_path / "cfr.mp4"
    _write_vfr(path, [i / 30 for i in range(40)])
    info = probe_video(path)
    assert not info.variable_frame_rate and info.average_fps == pytest.approx(30, abs=0.01)
    assert not info.has_audio


def test_unreadable_videos_are_refused(tmp_path):
    with pytest.raises(VideoInputError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoInputError, match="could not open|no video stream|not a usable video"):
        probe_video(junk)
    audio_only = tmp_path / "speech.wav"
    from aenerf_ns.audio.audio_io import write_wav

    write_wav(audio_only, np.zeros(16000, np.float32), 16000)
    with pytest.raises(VideoInputError, match="no video stream"):
        probe_video(audio_only)


@pytest.mark.parametrize("degrees", [90, 270])
def test_phone_rotation_metadata_turns_frames_upright_like_ffmpeg(tmp_path, degrees):
    """Frames come out as ffmpeg's own auto-rotating decoder shows them."""
    import subprocess

    import cv2

    from aenerf_ns.inference.video_io import ffmpeg_executable

    ff = ffmpeg_executable()
    image = np.zeros((32, 64, 3), np.uint8)
    image[:8, :8] = (255, 0, 0)
    image[-8:, -16:] = (0, 255, 0)
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), image[..., ::-1])
    plain, rotated, shown = tmp_path / "plain.mp4", tmp_path / "rotated.mp4", tmp_path / "shown.png"
    run = lambda *a: subprocess.run([ff, "-y", "-loglevel", "error", *map(str, a)], check=True)  # noqa: E731
    run("-framerate", 25, "-i", tmp_path / "f%02d.png", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", 0, plain)
    run("-display_rotation:v:0", degrees, "-i", plain, "-c", "copy", rotated)
    run("-i", rotated, "-frames:v", 1, shown)
    expected = cv2.cvtColor(cv2.imread(str(shown)), cv2.COLOR_BGR2RGB)
    info = probe_video(rotated)
    assert info.rotation % 360 in (90, 270) and (info.width, info.height) == (32, 64)
    _, frame = next(iter(resampled_frames(rotated, 25.0, 1)))
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 2
