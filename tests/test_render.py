"""`aenerf-render`: a trained run speaking new audio as an mp4 with sound, resumable, with clear errors."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

VENV_BIN = Path(sys.executable).parent


def _render_args(config, audio, output, **kwargs):
    from aenerf_ns.scripts.render import RenderArgs

    return RenderArgs(load_config=config, audio=audio, output_path=output, downscale_factor=4.0, **kwargs)


@pytest.mark.slow
def test_render_13_s_of_new_speech_is_a_13_s_mp4_with_audio(tiny_run, speech_wav, tmp_path):
    out = tmp_path / "renders" / "talk.mp4"
    cmd = [
        str(VENV_BIN / "aenerf-render"),
        "--load-config",
        str(tiny_run),
        "--audio",
        str(speech_wav),
        "--output-path",
        str(out),
        "--downscale-factor",
        "4",
        "--watermark",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    from aenerf_ns.video_io import PROVENANCE_KEY, probe_media

    info = probe_media(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames == 13 * 25
    assert info.video_duration_s == pytest.approx(13.0, abs=1 / 25)
    assert abs(info.video_duration_s - info.audio_duration_s) <= 1 / 25
    assert info.metadata.get(PROVENANCE_KEY) == "true"
    assert "AI-generated" in info.metadata.get("comment", "")
    assert (info.width, info.height) == (12, 12)  # 48 px sample / 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.mp4"], "frames and partial files are cleaned up"


def test_pose_schedules():
    from aenerf_ns.audio_render import pose_schedule

    assert pose_schedule(7, 3, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert pose_schedule(7, 3, "pingpong").tolist() == [0, 1, 2, 1, 0, 1, 2]
    assert pose_schedule(4, 3, "fixed", 2).tolist() == [2, 2, 2, 2]
    assert pose_schedule(3, 1, "pingpong").tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="outside"):
        pose_schedule(4, 3, "fixed", 3)


def test_background_option():
    from aenerf_ns.audio_render import parse_background

    assert parse_background("training") is None
    assert parse_background("white") == (1.0, 1.0, 1.0)
    assert parse_background("#ff0080") == pytest.approx((1.0, 0.0, 128 / 255))
    with pytest.raises(ValueError, match="#rrggbb"):
        parse_background("purple-ish")


def test_render_keeps_finished_frames_and_honours_background(sample_dataset, small_model, tmp_path):
    """A rerun after an interruption keeps frames already on disk; a colour background replaces the plate."""
    import torch

    from aenerf_ns.aenerf_model import AENeRFModelConfig
    from aenerf_ns.audio_render import pose_schedule, render_cameras, render_frames
    from aenerf_ns.dataparsers.talking_head_dataparser import TalkingHeadDataParserConfig

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    model = AENeRFModelConfig(**small_model).setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    )
    model.eval()
    cameras = render_cameras(outputs.cameras, pose_schedule(3, len(outputs.cameras), "pingpong"), 0, scale=0.25)
    frames = tmp_path / "frames"
    frames.mkdir()
    marker = np.full((12, 12, 3), 7, np.uint8)
    Image.fromarray(marker).save(frames / "000001.png")
    render_frames(model, cameras, frames, background=(1.0, 0.0, 0.0))
    assert sorted(p.name for p in frames.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert np.array_equal(np.array(Image.open(frames / "000001.png")), marker), "finished frames are not redone"

    with torch.no_grad():
        out = model.get_outputs_for_camera(cameras[0])
    expected = out["rgb_foreground"] + (1 - out["accumulation"]) * torch.tensor([1.0, 0.0, 0.0])
    rendered = np.array(Image.open(frames / "000000.png")).astype(np.float32) / 255
    assert np.abs(rendered - expected.numpy()).max() <= 1 / 255 + 1e-6


def test_failed_encode_leaves_nothing_under_the_output_name(tmp_path):
    from aenerf_ns.video_io import VideoEncodeError, encode_frames_with_audio

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / f"{t:06d}.png")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(VideoEncodeError, match="ffmpeg failed"):
        encode_frames_with_audio(str(frames / "%06d.png"), 25.0, 3, not_audio, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "notes.wav"]


def test_watermark_marks_the_corner_only():
    from aenerf_ns.audio_render import add_watermark

    image = np.full((96, 96, 3), 128, np.uint8)
    marked = add_watermark(image)
    changed = np.any(marked != image, axis=-1)
    assert changed[60:].any() and not changed[:40].any()


class TestBadInput:
    def test_unreadable_audio(self, tiny_run, tmp_path):
        from aenerf_ns.audio_io import AudioError
        from aenerf_ns.scripts.render import main

        bad = tmp_path / "broken.mp3"
        bad.write_bytes(b"\x00\x01garbage" * 100)
        with pytest.raises(AudioError, match="could not decode"):
            main(_render_args(tiny_run, bad, tmp_path / "o.mp4"))

    def test_silent_audio(self, tiny_run, tmp_path):
        from aenerf_ns.audio_io import AudioError, write_wav
        from aenerf_ns.scripts.render import main

        silent = tmp_path / "silence.wav"
        write_wav(silent, np.zeros(16000 * 2, np.float32), 16000)
        with pytest.raises(AudioError, match="silent"):
            main(_render_args(tiny_run, silent, tmp_path / "o.mp4"))

    def test_audio_over_the_length_limit(self, tiny_run, speech_wav, tmp_path):
        from aenerf_ns.scripts.render import RenderInputError, main

        with pytest.raises(RenderInputError, match="over the 5 s limit"):
            main(_render_args(tiny_run, speech_wav, tmp_path / "o.mp4", max_seconds=5.0))

    def test_config_of_another_method(self, speech_wav, tmp_path):
        from nerfstudio.configs.method_configs import all_methods

        from aenerf_ns.checkpoints import CheckpointError
        from aenerf_ns.scripts.render import main

        config = copy.deepcopy(all_methods["nerfacto"])
        config.output_dir = tmp_path / "runs"
        config.set_timestamp()
        config.save_config()
        (path,) = tmp_path.glob("runs/**/config.yml")
        with pytest.raises(CheckpointError, match="'nerfacto', which has no audio input"):
            main(_render_args(path, speech_wav, tmp_path / "o.mp4"))

    def test_missing_checkpoint_and_missing_config(self, tiny_run, speech_wav, tmp_path):
        from aenerf_ns.checkpoints import CheckpointError
        from aenerf_ns.scripts.render import main

        moved = tmp_path / "run_without_checkpoints"
        moved.mkdir()
        (moved / "config.yml").write_text(tiny_run.read_text())
        (moved / "nerfstudio_models").mkdir()
        with pytest.raises(CheckpointError, match="no checkpoint"):
            main(_render_args(moved / "config.yml", speech_wav, tmp_path / "o.mp4"))
        with pytest.raises(CheckpointError, match="does not exist"):
            main(_render_args(tmp_path / "nowhere.yml", speech_wav, tmp_path / "o.mp4"))

    def test_cli_prints_one_clear_line(self, tiny_run, tmp_path):
        run = subprocess.run(
            [str(VENV_BIN / "aenerf-render"), "--load-config", str(tiny_run), "--audio", str(tmp_path / "nope.wav")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode != 0
        assert "aenerf-render: error: audio file" in run.stderr and "does not exist" in run.stderr
        assert "Traceback" not in run.stderr
