"""The contract every talking-head method meets (`aenerf_ns.models.method_contract`), checked on each installed one.

The methods come from the entry points (`talking_head_methods()`), so a newly registered method is tested here with
no edit. Each is checked on its CPU preset as registered: in-process, a training step and the viewer's camera path;
end to end (slow), a 2-step `ns-train` run shared through conftest's `method_run` that `aenerf-render`, `aenerf-eval`
and the checkpoint loader use.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aenerf_ns.models.method_contract import CAMERA_OUTPUTS, FOREGROUND_OUTPUTS, TalkingHeadMethod, talking_head_methods

VENV_BIN = Path(sys.executable).parent
METHODS = talking_head_methods()
SPEECH_SECONDS = 2.0
"""Length of the speech track rendered (frames at the sample's 25 fps)."""


@pytest.fixture(params=METHODS, ids=[m.name for m in METHODS])
def method(request) -> TalkingHeadMethod:
    return request.param


@pytest.fixture
def pipeline(method, sample_dataset):
    """A seeded CPU pipeline of the method's CPU preset as registered (64 rays per batch where it draws rays)."""
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[method.tiny])
    config.pipeline.datamanager.data = sample_dataset
    if method.trains_on_rays:
        config.pipeline.datamanager.train_num_rays_per_batch = 64
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory) -> Path:
    """A few seconds of synthetic speech no dataset was made from (16 kHz mono wav)."""
    from media_files import write_speech_wav

    return write_speech_wav(tmp_path_factory.mktemp("speech") / "speech.wav", SPEECH_SECONDS, seed=4321)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=cwd)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_registry_holds_the_packaged_methods():
    """Each method is a subclass of AudioDrivenModel registered with its -tiny preset (the registry's own checks)."""
    from aenerf_ns.models.audio_driven_model import AudioDrivenModel

    assert {"aenerf", "ssp-nerf", "aenerf-gs"} <= {m.name for m in METHODS}
    for m in METHODS:
        assert issubclass(m.model_class, AudioDrivenModel) and m.tiny == m.name + "-tiny"
        assert m.preset(small=True) == m.tiny and m.preset(small=False) == m.name


def test_a_training_step_gives_finite_losses_and_gradients(method, pipeline):
    outputs, losses, metrics = pipeline.get_train_loss_dict(0)
    assert set(FOREGROUND_OUTPUTS) <= set(outputs), set(FOREGROUND_OUTPUTS) - set(outputs)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    assert torch.isfinite(metrics["psnr"])
    sum(losses.values()).backward()
    grads = [p.grad for p in pipeline.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0, "no parameter learns from the step"


def test_the_viewer_camera_gives_every_camera_output_and_follows_the_viewer_audio(method, pipeline):
    """A camera with metadata None (what the viewer sends) renders `CAMERA_OUTPUTS`, in the clip's average audio
    until the viewer's controls choose a frame, whose audio then changes the render."""
    model = pipeline.model.eval()
    with torch.no_grad():  # as after training: zero-initialised layers (identity at the start) have moved
        for weight in model.parameters():
            if weight.ndim >= 2 and not weight.any():
                weight.normal_(0, 0.5)
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    camera.rescale_output_resolution(0.25)
    camera.metadata = None
    h, w = int(camera.height), int(camera.width)

    def render() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return model.get_outputs_for_camera(camera)

    outputs = render()
    assert set(CAMERA_OUTPUTS) <= set(outputs), set(CAMERA_OUTPUTS) - set(outputs)
    for key in CAMERA_OUTPUTS:
        assert outputs[key].shape[:2] == (h, w) and torch.isfinite(outputs[key]).all(), key
    assert torch.allclose(outputs["parsing_probs"].sum(-1), torch.ones(h, w), atol=1e-4)
    assert not any(k.endswith("_coarse") for k in outputs), "training-only outputs are removed"

    model._viewer_audio.drives_render = True  # as in the live viewer, where its controls choose the audio
    model.viewer_audio_source.value = "clip average"
    assert torch.allclose(render()["rgb"], outputs["rgb"])
    model.viewer_audio_source.value = "training audio"
    table = model.audio_table.float()
    model.viewer_audio_frame.value = int(torch.cdist(table.mean(0, keepdim=True), table).argmax())
    assert (render()["rgb"] - outputs["rgb"]).abs().max() > 1e-4, "the viewer's audio does not reach the render"


@pytest.mark.slow
def test_render_with_new_speech_writes_h264_video_with_aac_audio(method, method_run, short_speech, tmp_path):
    from aenerf_ns.inference.video_io import probe_media

    out = tmp_path / "talk.mp4"
    cmd = [str(VENV_BIN / "aenerf-render"), "--load-config", str(method_run(method.tiny)), "--audio", str(short_speech)]
    _run(cmd + ["--output-path", str(out), "--downscale-factor", "4"], tmp_path)
    info = probe_media(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.num_frames == round(SPEECH_SECONDS * 25) and (info.width, info.height) == (12, 12)


@pytest.mark.slow
def test_eval_writes_metrics(method, method_run, tmp_path):
    cmd = [str(VENV_BIN / "aenerf-eval"), "--load-config", str(method_run(method.tiny))]
    _run(cmd + ["--output-dir", str(tmp_path / "eval"), "--max-frames", "2"], tmp_path)
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["num_frames"] == 2
    for key in ("psnr", "ssim", "lower_face_psnr", "parsing_accuracy"):
        assert isinstance(report[key], float) and np.isfinite(report[key]), key


@pytest.mark.slow
def test_a_checkpoint_of_another_method_is_refused(method, method_run, tmp_path):
    """A run folder holding a checkpoint that another method wrote is reported with the file and the method."""
    from aenerf_ns.inference.checkpoints import CheckpointError, load_trained_pipeline

    others = [m for m in METHODS if m.model_class is not method.model_class]
    if not others:
        pytest.skip("one method is installed: there is no other method's checkpoint")
    other = others[METHODS.index(method) % len(others)]
    run = tmp_path / "run"
    shutil.copytree(method_run(method.tiny).parent, run)
    for ckpt in (run / "nerfstudio_models").glob("*.ckpt"):
        ckpt.unlink()
    (foreign,) = method_run(other.tiny).parent.glob("nerfstudio_models/step-*.ckpt")
    shutil.copy(foreign, run / "nerfstudio_models" / foreign.name)
    with pytest.raises(CheckpointError, match=rf"{foreign.name} does not fit the run's model \({method.tiny}\)"):
        load_trained_pipeline(run / "config.yml")
