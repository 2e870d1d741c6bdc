"""`aenerf-render`: a trained run speaking new audio as an mp4 with sound, resumable, with clear errors."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media_files import write_speech_wav
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

    from aenerf_ns.inference.video_io import PROVENANCE_KEY, probe_media

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
    from aenerf_ns.inference.audio_render import pose_schedule

    assert pose_schedule(7, 3, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert pose_schedule(7, 3, "pingpong").tolist() == [0, 1, 2, 1, 0, 1, 2]
    assert pose_schedule(4, 3, "fixed", 2).tolist() == [2, 2, 2, 2]
    assert pose_schedule(3, 1, "pingpong").tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="outside"):
        pose_schedule(4, 3, "fixed", 3)


def test_background_option():
    from aenerf_ns.inference.audio_render import parse_background

    assert parse_background("training") is None
    assert parse_background("white") == (1.0, 1.0, 1.0)
    assert parse_background("#ff0080") == pytest.approx((1.0, 0.0, 128 / 255))
    with pytest.raises(ValueError, match="#rrggbb"):
        parse_background("purple-ish")


def test_render_keeps_finished_frames_and_honours_background(sample_dataset, small_model, tmp_path):
    """A rerun after an interruption keeps frames already on disk; a colour background replaces the plate."""
    import torch

    from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.inference.audio_render import pose_schedule, render_cameras, render_frames

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
    from aenerf_ns.inference.video_io import VideoEncodeError, encode_frames_with_audio

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
    from aenerf_ns.inference.audio_render import add_watermark

    image = np.full((96, 96, 3), 128, np.uint8)
    marked = add_watermark(image)
    changed = np.any(marked != image, axis=-1)
    assert changed[60:].any() and not changed[:40].any()


class TestBadInput:
    def test_unreadable_audio(self, tiny_run, tmp_path):
        from aenerf_ns.audio.audio_io import AudioError
        from aenerf_ns.scripts.render import main

        bad = tmp_path / "broken.mp3"
        bad.write_bytes(b"\x00\x01garbage" * 100)
        with pytest.raises(AudioError, match="could not decode"):
            main(_render_args(tiny_run, bad, tmp_path / "o.mp4"))

    def test_silent_audio(self, tiny_run, tmp_path):
        from aenerf_ns.audio.audio_io import AudioError, write_wav
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

        from aenerf_ns.inference.checkpoints import CheckpointError
        from aenerf_ns.scripts.render import main

        config = copy.deepcopy(all_methods["nerfacto"])
        config.output_dir = tmp_path / "runs"
        config.set_timestamp()
        config.save_config()
        (path,) = tmp_path.glob("runs/**/config.yml")
        with pytest.raises(CheckpointError, match="'nerfacto', which has no audio input"):
            main(_render_args(path, speech_wav, tmp_path / "o.mp4"))

    def test_missing_checkpoint_and_missing_config(self, tiny_run, speech_wav, tmp_path):
        from aenerf_ns.inference.checkpoints import CheckpointError
        from aenerf_ns.scripts.render import main

        moved = tmp_path / "run_without_checkpoints"
        moved.mkdir()
        (moved / "config.yml").write_text(tiny_run.read_text())
        (moved / "nerfstudio_models").mkdir()
        with pytest.raises(CheckpointError, match="no checkpoint"):
            main(_render_args(moved / "config.yml", speech_wav, tmp_path / "o.mp4"))
        with pytest.raises(CheckpointError, match="does not exist"):
            main(_render_args(tmp_path / "nowhere.yml", speech_wav, tmp_path / "o.mp4"))

    @pytest.mark.parametrize(
        "options, message",
        [
            (dict(pose_source="spiral", radius=0.0), "--radius must be positive, got 0.0"),
            (dict(pose_source="interpolate", interpolation_steps=0), "--interpolation-steps must be at least 1, got 0"),
            (dict(pose_source="interpolate", seconds=-1.0), "--seconds must be positive"),
            (dict(pose_source="pingpong", seconds=2.0), "--seconds is the duration of an interpolate or spiral path"),
            (dict(pose_source="spiral", seconds=0.01), "--seconds 0.01 is shorter than one frame at 25 fps"),
            (dict(pose_source="spiral", fixed_frame=500), "--fixed-frame 500 is outside 0..36"),
        ],
    )
    def test_bad_path_settings(self, tiny_run, speech_wav, tmp_path, options, message):
        from aenerf_ns.scripts.render import RenderInputError, main

        with pytest.raises(RenderInputError, match=re.escape(message)):
            main(_render_args(tiny_run, speech_wav, tmp_path / "o.mp4", **options))
        assert not (tmp_path / "o.mp4").exists()

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


def test_m4a_and_mp3_speech_decode_like_the_wav(speech_wav, tmp_path):
    """Compressed speech (m4a decodes through PyAV) matches the wav it was made from."""
    from aenerf_ns.audio.audio_io import load_audio
    from aenerf_ns.inference.video_io import ffmpeg_executable

    reference = load_audio(speech_wav)
    for suffix, codec in ((".m4a", "aac"), (".mp3", "libmp3lame")):
        path = tmp_path / f"speech{suffix}"
        cmd = [ffmpeg_executable(), "-y", "-loglevel", "error", "-i", str(speech_wav), "-ac", "2", "-ar", "44100"]
        subprocess.run(cmd + ["-c:a", codec, "-b:a", "128k", str(path)], check=True)
        decoded = load_audio(path)
        assert (decoded.source_sample_rate, decoded.source_channels) == (44100, 2)
        assert decoded.duration_s == pytest.approx(reference.duration_s, abs=0.08)
        # encoders add a little leading delay: compare at the best alignment within 50 ms
        n = len(reference.samples) - 1600
        best = max(np.corrcoef(reference.samples[:n], decoded.samples[lag : lag + n])[0, 1] for lag in range(0, 800, 8))
        assert best > 0.95, (suffix, best)


@pytest.mark.slow
def test_render_along_a_viewer_camera_path(tiny_run, tmp_path):
    """--pose-source camera-path follows a nerfstudio camera-path JSON, looped to the audio's length."""
    import json

    from aenerf_ns.inference.video_io import probe_media
    from aenerf_ns.scripts.render import main

    audio = write_speech_wav(tmp_path / "one_second.wav", 1.0, seed=5)
    poses = []
    for angle in np.linspace(-0.3, 0.3, 4):
        c, s = np.cos(angle), np.sin(angle)
        c2w = np.array([[c, 0, s, 6 * s], [0, 1, 0, 0], [-s, 0, c, 6 * c], [0, 0, 0, 1]])
        poses.append({"camera_to_world": c2w.reshape(-1).tolist(), "fov": 25.0, "aspect": 1.0})
    path = tmp_path / "path.json"
    path.write_text(
        json.dumps({"camera_type": "perspective", "render_height": 32, "render_width": 32, "camera_path": poses})
    )
    args = _render_args(tiny_run, audio, tmp_path / "path.mp4", pose_source="camera-path", camera_path_filename=path)
    info = probe_media(main(args))
    assert info.num_frames == 25 and (info.width, info.height) == (8, 8)
    assert info.audio_codec == "aac"

    args.camera_path_filename = tmp_path / "missing.json"
    from aenerf_ns.scripts.render import RenderInputError

    with pytest.raises(RenderInputError, match="missing.json does not exist"):
        main(args)


def test_path_schedules():
    """A generated path spans each pass from its first pose to its last; passes repeat round or back and forth."""
    from aenerf_ns.inference.audio_render import path_schedule

    assert path_schedule(5, 5, 5, "loop").tolist() == [0, 1, 2, 3, 4]
    assert path_schedule(5, 9, 5, "pingpong").tolist() == [0, 2, 4, 6, 8]
    assert path_schedule(7, 3, 3, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert path_schedule(8, 3, 3, "pingpong").tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert path_schedule(4, 3, 7, "pingpong").tolist() == [0, 0, 1, 1]  # a pass longer than the audio is cut
    assert path_schedule(3, 4, 1, "loop").tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="at least one pose and one frame per pass"):
        path_schedule(3, 0, 3, "loop")


def test_interpolated_and_spiral_paths(sample_dataset):
    """nerfstudio's interpolation runs through the training poses; the spiral circles the start pose upright."""
    import torch

    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.inference.audio_render import identity_poses, interpolated_poses, spiral_poses

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    poses = identity_poses(outputs.cameras, 0)
    path = interpolated_poses(poses[:4], steps=5)
    assert len(path) == 3 * 5
    for i in range(4):  # each transition starts at a keyframe; the last one ends at the last keyframe
        assert torch.allclose(path.camera_to_worlds[min(5 * i, 14)], poses.camera_to_worlds[i], atol=1e-5)
    assert (int(path.width[0]), int(path.height[0])) == (int(poses.width[0]), int(poses.height[0]))

    start = poses[3:4]
    spiral = spiral_poses(start, steps=12, radius=0.25)
    assert len(spiral) == 12 and int(spiral.width[0]) == int(start.width[0])
    rotation, center = start.camera_to_worlds[0, :, :3], start.camera_to_worlds[0, :, 3]
    offsets = (spiral.camera_to_worlds[:, :, 3] - center) @ rotation  # in the start camera's frame
    assert torch.allclose(offsets[:, :2].norm(dim=-1), torch.full((12,), 0.25), atol=1e-4)
    assert offsets[:, 0].max() > 0.24 and offsets[:, 0].min() < -0.24, "the spiral goes round the start pose"
    relative = rotation.T @ spiral.camera_to_worlds[:, :, :3]
    assert torch.allclose(relative, torch.eye(3).expand(12, 3, 3), atol=0.01), "same view direction, no roll"

    with pytest.raises(ValueError, match="radius must be positive"):
        spiral_poses(start, steps=12, radius=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        interpolated_poses(poses, steps=0)
    with pytest.raises(ValueError, match="at least two poses"):
        interpolated_poses(start, steps=3)


@pytest.mark.slow
def test_render_interpolated_and_spiral_paths_with_sound(tiny_run, tmp_path):
    """--pose-source interpolate and spiral span the audio with one frame per audio frame, from moving viewpoints."""
    from aenerf_ns.inference.video_io import probe_media
    from aenerf_ns.scripts.render import main

    audio = write_speech_wav(tmp_path / "one_second.wav", 1.0, seed=7)

    def render(name, **kwargs):
        info = probe_media(main(_render_args(tiny_run, audio, tmp_path / f"{name}.mp4", keep_frames=True, **kwargs)))
        assert (info.num_frames, info.audio_codec) == (25, "aac"), name
        assert info.audio_duration_s == pytest.approx(1.0, abs=0.05), name
        (frames,) = tmp_path.glob(f".{name}.frames-*")
        return np.stack([np.array(Image.open(p)).astype(np.int16) for p in sorted(frames.glob("*.png"))])

    fixed = render("fixed", pose_source="fixed")
    interpolated = render("interpolate", pose_source="interpolate", interpolation_steps=3)
    spiral = render("spiral", pose_source="spiral", radius=1.0, seconds=0.4)
    assert len(fixed) == len(interpolated) == len(spiral) == 25
    # same audio frame, same head: the paths start at (interpolate) or beside (spiral) training frame 0's pose
    assert np.array_equal(interpolated[0], fixed[0])
    assert np.abs(interpolated[-1] - fixed[-1]).max() > 0, "interpolate ends at the last training pose"
    assert all(np.abs(spiral[t] - fixed[t]).max() > 0 for t in range(25)), "every spiral frame is off the start pose"


def test_rendered_output_names_sit_side_by_side(sample_dataset, small_model, tmp_path):
    """Each frame shows the chosen outputs left to right; an output the model lacks is named, nothing is written."""
    import torch
    from nerfstudio.utils import colormaps

    from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.inference.audio_render import pose_schedule, render_cameras, render_frames

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    model = AENeRFModelConfig(**small_model).setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    )
    model.eval()
    cameras = render_cameras(outputs.cameras, pose_schedule(1, len(outputs.cameras), "fixed"), 0, scale=0.25)
    render_frames(model, cameras, tmp_path / "rgb")
    render_frames(model, cameras, tmp_path / "three", output_names=["rgb", "depth", "audio_region"])
    rgb = np.array(Image.open(tmp_path / "rgb" / "000000.png")).astype(np.int16)
    three = np.array(Image.open(tmp_path / "three" / "000000.png")).astype(np.int16)
    assert three.shape == (12, 36, 3)
    assert np.abs(three[:, :12] - rgb).max() <= 1
    with torch.no_grad():
        region = colormaps.apply_colormap(model.get_outputs_for_camera(cameras[0])["audio_region"])
    assert np.abs(three[:, 24:] - region.numpy() * 255).max() <= 1
    assert np.abs(three[:, 12:24] - three[:, 24:]).max() > 0

    with pytest.raises(ValueError, match="no image output 'normals'; it renders accumulation, audio_region, depth"):
        render_frames(model, cameras, tmp_path / "bad", output_names=["rgb", "normals"])
    assert not (tmp_path / "bad").exists()


def test_render_with_audio_gives_the_same_frames_in_memory_and_as_pngs(sample_dataset, small_model, tmp_path):
    """One route for aenerf-render (PNG folder) and aenerf-eval (images): the same audio track, the same pixels,
    and plain rgb equals the model's own rgb output (what the evaluation scored before the routes were joined)."""
    import torch

    from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.inference.audio_render import pose_schedule, render_cameras, render_with_audio
    from aenerf_ns.utils.image_metrics import to_uint8

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    model = AENeRFModelConfig(**small_model).setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    )
    model.eval()
    cameras = render_cameras(outputs.cameras, pose_schedule(3, len(outputs.cameras), "pingpong"), 0, scale=0.25)
    features = np.random.default_rng(0).normal(size=(3, model.audio_table.shape[1])).astype(np.float32)
    images = render_with_audio(model, cameras, features, transient=True)
    assert model.audio_table.shape[0] == 3, "the features are the model's audio track"
    assert render_with_audio(model, cameras, features, tmp_path / "frames") == []
    for t, image in enumerate(images):
        assert np.array_equal(np.array(Image.open(tmp_path / "frames" / f"{t:06d}.png")), image)
        with torch.no_grad():
            assert np.array_equal(to_uint8(model.get_outputs_for_camera(cameras[t])["rgb"]), image)
