"""nerfstudio's own tools on runs of our methods: `ns-render`, `ns-eval`, `ns-viewer` (through `eval_setup`).

The commands are README's (with the run's config.yml for its placeholder and size knobs appended). The 2-step
training run of each installed method's CPU preset is the session's (conftest's `method_run`, which
test_method_contract shares). Renders are tiny (the sample's 48 px downscaled 4
times, a handful of frames). `ns-render` writes video through an `ffmpeg` on PATH; the tests put the
one bundled with imageio-ffmpeg there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from aenerf_ns.models.method_contract import talking_head_methods

PRESETS = [method.tiny for method in talking_head_methods()]
"""Every installed talking-head method's CPU preset."""
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tool_env(tmp_path_factory) -> dict[str, str]:
    """The environment for nerfstudio's tools: imageio-ffmpeg's ffmpeg on PATH."""
    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("ffmpeg_bin")
    (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return {**os.environ, "PATH": os.pathsep.join([str(folder), str(VENV_BIN), os.environ["PATH"]])}


@pytest.fixture(params=PRESETS)
def run_config(request, method_run) -> Path:
    """config.yml of the session's 2-step run of each method's CPU preset (conftest's `method_run`)."""
    return method_run(request.param)


def readme_command(program: str, config: Path, subcommand: str | None = None) -> list[str]:
    """README's command of `program` (and `subcommand`), on the run `config`."""
    from test_docs_commands import COMMANDS

    (command,) = [
        c for c in COMMANDS if c.file == "README.md" and c.program == program and subcommand in (None, c.argv[1])
    ]
    return [str(config) if word == "outputs/.../config.yml" else word for word in command.argv]


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert result.returncode == 0, f"{argv}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _video_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _two_keyframe_path(path: Path, dataset: Path) -> Path:
    """A camera-path JSON (ns-render's format) of 2 frames, from the first training pose a little sideways."""
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    cameras = TalkingHeadDataParserConfig(data=dataset).setup().get_dataparser_outputs("train").cameras
    poses = []
    for shift in (0.0, 0.05):
        c2w = torch.eye(4)
        c2w[:3] = cameras.camera_to_worlds[0]
        c2w[0, 3] += shift
        poses.append({"camera_to_world": c2w.flatten().tolist(), "fov": 30.0, "aspect": 1.0})
    camera_path = {"render_height": 12, "render_width": 12, "fps": 2, "seconds": 1, "camera_type": "perspective"}
    path.write_text(json.dumps({**camera_path, "smoothness_value": 0.0, "is_cycle": False, "camera_path": poses}))
    return path


def test_ns_render_writes_videos(run_config, sample_dataset, tool_env, tmp_path):
    """`ns-render interpolate` and `ns-render camera-path` on a tiny run of each method write playable videos."""
    tiny = ["--interpolation-steps", "1", "--frame-rate", "4", "--downscale-factor", "4"]
    _run(readme_command("ns-render", run_config, "interpolate") + tiny, tool_env, tmp_path)
    frames = _video_frames(tmp_path / "renders" / "orbit.mp4")
    assert len(frames) >= 10 and frames[0].shape[:2] == (12, 12)
    assert np.ptp(np.stack(frames)) > 0, "the video is blank"

    _two_keyframe_path(tmp_path / "path.json", sample_dataset)
    _run(readme_command("ns-render", run_config, "camera-path"), tool_env, tmp_path)
    frames = _video_frames(tmp_path / "renders" / "path.mp4")
    assert len(frames) == 2 and frames[0].shape[:2] == (12, 12)


def test_ns_eval_writes_metrics(run_config, tool_env, tmp_path):
    """`ns-eval` averages every metric, region metrics (mouth, torso) over the frames that show the region."""
    _run(readme_command("ns-eval", run_config), tool_env, tmp_path)
    results = json.loads((tmp_path / "renders" / "eval.json").read_text())["results"]
    assert 0 < results["psnr"] < 100 and "psnr_std" in results
    assert "mouth_psnr" in results and np.isfinite(results["mouth_psnr"])


def test_ns_export_writes_a_point_cloud(run_config, tool_env, tmp_path):
    """README's `ns-export pointcloud` on a NeRF run (aenerf-gs has no point-cloud export: not a NeRF)."""
    if "/ssp-nerf-tiny/" not in run_config.as_posix():
        pytest.skip("one NeRF method is enough for ns-export's loading and sampling path")
    probe = subprocess.run([sys.executable, "-c", "import open3d"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"open3d does not import here: {probe.stderr.strip().splitlines()[-1]}")
    _run(readme_command("ns-export", run_config) + ["--num-points", "200"], tool_env, tmp_path)
    cloud = tmp_path / "renders" / "cloud" / "point_cloud.ply"
    assert cloud.is_file() and b"element vertex" in cloud.read_bytes()[:400]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ns_viewer_serves_a_run(run_config, tool_env, tmp_path):
    """`ns-viewer --load-config` loads the run and serves it on 127.0.0.1."""
    if "aenerf-gs" not in run_config.as_posix():
        pytest.skip("one method is enough for the viewer's loading path (the same eval_setup as ns-render)")
    port = _free_port()
    argv = readme_command("ns-viewer", run_config) + ["--viewer.websocket-port", str(port)]
    server = subprocess.Popen(argv, env=tool_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, serving = time.monotonic() + 240, False
        while time.monotonic() < deadline and server.poll() is None and not serving:
            with socket.socket() as probe:
                serving = probe.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(1)
        assert serving, f"ns-viewer did not serve on port {port} (exit status {server.poll()})"
    finally:
        server.kill()
        output = server.communicate()[0].decode(errors="replace")
    assert "Done loading checkpoint" in output, output[-3000:]


def test_a_run_saved_with_numpy_scalars_still_loads(run_config, tool_env, tmp_path):
    """A checkpoint as the trainer wrote it before it saved plain numbers (numpy scalars in the optimizer and
    scheduler states) loads in nerfstudio's `eval_setup` (ns-render & co.) and in our loader."""
    if "/aenerf-tiny/" not in run_config.as_posix():
        pytest.skip("the checkpoint layout is the same for every method")
    from aenerf_ns.inference.checkpoints import load_trained_pipeline
    from aenerf_ns.utils.safe_checkpoint import load_checkpoint

    folder = run_config.parent / "nerfstudio_models"
    (saved,) = sorted(folder.glob("step-*.ckpt"))
    bare_load = "import sys, torch; torch.load(sys.argv[1], map_location='cpu')"  # torch alone, no plugin imported
    subprocess.run([sys.executable, "-c", bare_load, str(saved)], check=True, capture_output=True)

    state = load_checkpoint(saved)
    for optimizer in state["optimizers"].values():
        for group in optimizer["param_groups"]:
            group["lr"] = np.float64(group["lr"])
    for scheduler in state["schedulers"].values():
        scheduler["_last_lr"] = [np.float64(lr) for lr in scheduler["_last_lr"]]
    old_style = folder / "step-000000999.ckpt"  # the newest: what every loader picks
    torch.save(state, old_style)
    try:
        bare = subprocess.run([sys.executable, "-c", bare_load, str(old_style)], capture_output=True, text=True)
        assert bare.returncode != 0 and "numpy" in bare.stderr, "the file must hold numpy scalars to test anything"
        nerfstudio_load = (
            "import sys; from pathlib import Path; from nerfstudio.utils.eval_utils import eval_setup; "
            "print(eval_setup(Path(sys.argv[1]), test_mode='inference')[2])"
        )
        loaded = _run([sys.executable, "-c", nerfstudio_load, str(run_config)], tool_env, tmp_path)
        assert loaded.stdout.strip().endswith(old_style.name), loaded.stdout[-2000:]
        _, pipeline, path, step = load_trained_pipeline(run_config, test_mode="inference")
        assert path == old_style and step == 999 and not pipeline.training
    finally:
        old_style.unlink()
