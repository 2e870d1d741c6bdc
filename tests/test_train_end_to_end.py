"""A 2-iteration `ns-train aenerf-tiny` run, then loading it back, evaluating and checking the outputs."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_ns_train_tiny_saves_loads_and_evaluates(sample_dataset, ns_train, tmp_path):
    out = tmp_path / "runs"
    cmd = ns_train(sample_dataset, out, iterations=2)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    configs = list(out.glob("*/aenerf-tiny/*/config.yml"))
    assert len(configs) == 1
    ckpts = list(configs[0].parent.glob("nerfstudio_models/step-*.ckpt"))
    assert ckpts, "training must leave a checkpoint"

    from aenerf_ns.evaluation.evaluate import evaluate_heldout
    from aenerf_ns.inference.checkpoints import load_trained_pipeline

    _, pipeline, ckpt, step = load_trained_pipeline(configs[0])
    assert step == 1
    metrics = evaluate_heldout(pipeline, tmp_path / "eval", max_frames=2, strip_frames=2)
    for key in ("psnr", "ssim", "lower_face_psnr", "parsing_accuracy"):
        assert np.isfinite(metrics[key]), key
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["num_frames"] == 2
    strip = np.array(Image.open(tmp_path / "eval" / "heldout_strip.png"))
    assert strip.shape == (2 * 48, 3 * 48, 3)

    # the documented fine-tune command: a new run that starts from this run's checkpoint
    tuned = tmp_path / "tuned"
    cmd[cmd.index("--output-dir") + 1] = str(tuned)
    run = subprocess.run(
        cmd + ["--pipeline.model.load-base", str(ckpts[0].parent)], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert list(tuned.glob("*/aenerf-tiny/*/nerfstudio_models/step-*.ckpt"))
    missing = subprocess.run(
        cmd + ["--pipeline.model.load-base", str(tmp_path / "nowhere.ckpt")], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "nowhere.ckpt does not exist" in missing.stdout + missing.stderr


def test_model_outputs_for_a_viewer_camera_without_audio(sample_dataset, small_model):
    """The viewer's cameras carry no audio metadata; rendering must still work and give every output."""
    import torch

    from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    model = AENeRFModelConfig(**small_model).setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    )
    camera = outputs.cameras[0:1]
    camera.metadata = None
    with torch.no_grad():
        result = model.get_outputs_for_camera(camera)
    for key in ("rgb", "depth", "accumulation", "parsing", "audio_region", "mask_aa", "mask_ai"):
        assert result[key].shape[:2] == (48, 48), key
        assert torch.isfinite(result[key]).all(), key
    # with audio, different frames' audio gives different renders (the field is audio-conditioned)
    cams = outputs.cameras
    a = model.get_outputs_for_camera(cams[0:1])["rgb"]
    b_cam = cams[0:1]
    b_cam.metadata = {"audio_index": cams.metadata["audio_index"][20:21], "identity": cams.metadata["identity"][0:1]}
    b = model.get_outputs_for_camera(b_cam)["rgb"]
    assert (a - b).abs().max() > 1e-6
