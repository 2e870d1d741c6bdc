"""The live viewer: audio controls drive the render, every output displays, localhost by default, a real browser."""

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(params=["aenerf", "aenerf-gs"])
def viewer_model(request, sample_dataset, small_model):
    """An untrained model of each method (aenerf-gs with a random audio deformation, as after training) and a
    viewer camera."""
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    outputs = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train")
    if request.param == "aenerf":
        from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig

        config = AENeRFModelConfig(**small_model)
    else:
        from aenerf_ns.gaussians.gaussian_model import GaussianTalkingHeadModelConfig

        config = GaussianTalkingHeadModelConfig(num_gaussians=800, audio_code_dim=8, audio_hidden_dim=16)
    torch.manual_seed(0)
    model = config.setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    )
    if request.param == "aenerf-gs":
        torch.nn.init.normal_(model.audio_deformation.net[-1].weight, std=0.5)
    model.eval()
    camera = outputs.cameras[0:1]
    camera.metadata = None  # the viewer's cameras carry no audio
    camera.rescale_output_resolution(0.5)
    return model, camera


def _render(model, camera):
    with torch.no_grad():
        return model.get_outputs_for_camera(camera)


def test_every_output_displays_in_the_viewer(viewer_model):
    """The viewer colour-maps whichever output the user picks; none may crash it."""
    from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap

    model, camera = viewer_model
    outputs = _render(model, camera)
    for name, value in outputs.items():
        shown = apply_colormap(value, ColormapOptions())
        assert shown.shape == (24, 24, 3), name


def test_audio_controls_are_viewer_elements_that_drive_the_render(viewer_model, speech_wav):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    model, camera = viewer_model
    found = {path.split("/")[-1] for path, _ in parse_object(model, ViewerElement, "Custom Elements")}
    assert {"viewer_audio_source", "viewer_audio_frame", "viewer_audio_file", "viewer_audio_load"} <= found

    # pick two training frames with clearly different audio
    table = model.audio_table
    far = int(torch.cdist(table[:1], table).argmax())
    model.viewer_audio_frame.value = 0
    first = _render(model, camera)["rgb"]
    model.viewer_audio_frame.value = far
    second = _render(model, camera)["rgb"]
    assert not torch.allclose(first, second), "the slider must change the audio that drives the render"
    model.viewer_audio_frame.value = 0
    assert torch.equal(_render(model, camera)["rgb"], first)

    model.viewer_audio_source.value = "clip average"
    average = _render(model, camera)["rgb"]
    assert not torch.allclose(average, first)

    assert not model._viewer_audio.load_file("/no/such/file.wav")
    assert "could not load" in model.viewer_audio_status.value and "does not exist" in model.viewer_audio_status.value
    assert model.viewer_audio_source.value == "clip average", "a failed load changes nothing"

    model.viewer_audio_file.value = str(speech_wav)
    assert model._viewer_audio.load_file(model.viewer_audio_file.value)
    assert model.viewer_audio_source.value == "loaded file"
    assert "325 frames" in model.viewer_audio_status.value
    model.viewer_audio_frame.value = 100
    from_file = _render(model, camera)["rgb"]
    # the same frame through the render path (a camera with audio row 100 of the loaded track) matches
    from aenerf_ns.audio.audio_features import compute_audio_features

    model.set_audio_track(torch.from_numpy(compute_audio_features(speech_wav, 25.0)))
    camera.metadata = {"audio_index": torch.full((1, 1), 100.0), "identity": torch.zeros(1, 1)}
    assert torch.allclose(_render(model, camera)["rgb"], from_file, atol=1e-5)


def test_viewer_serves_localhost_unless_asked():
    from nerfstudio.configs.method_configs import all_methods

    for name in ("aenerf", "aenerf-tiny"):
        assert all_methods[name].viewer.websocket_host == "127.0.0.1", name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _external_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_live_viewer_shows_a_rendered_frame_in_a_real_browser(sample_dataset, ns_train, tmp_path):
    port = _free_port()
    cmd = ns_train(sample_dataset, tmp_path / "runs", iterations=100000, vis="viewer", small=True)
    cmd += ["--viewer.websocket-port", str(port)]
    log = open(tmp_path / "train.log", "w")
    train = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 300
        while True:
            assert train.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the viewer never started listening"
                time.sleep(1)
        external = _external_address()
        if external is not None:
            with pytest.raises(OSError):
                socket.create_connection((external, port), timeout=2).close()

        shot = tmp_path / "viewer.png"
        browser = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader",
                "--window-size=1000,700",
                "--virtual-time-budget=30000",
                f"--screenshot={shot}",
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert shot.is_file(), browser.stderr[-2000:]
        image = np.asarray(Image.open(shot).convert("RGB")).astype(float)
        viewport = image[80:680, 20:640]  # the 3D view, left of the control panel
        assert viewport.std() > 1.0, "the viewport is blank"
        r, g, b = viewport.reshape(-1, 3).mean(0)
        # an empty viewport is neutral grey (channels within a few levels); the sample's green plate tints
        # a rendered frame (measured 15-25 levels greener than red and blue, depending on render progress)
        assert g - max(r, b) > 8, (r, g, b)
        assert train.poll() is None, "training must survive the browser session"
    finally:
        train.terminate()
        try:
            train.wait(timeout=30)
        except subprocess.TimeoutExpired:
            train.kill()
        log.close()
