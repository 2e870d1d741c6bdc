"""The live viewer: audio controls drive the render, every output displays, localhost by default, a real browser."""

import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from aenerf_ns.audio.audio_smoothing import neighbour_rows


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
    model._viewer_audio.drives_render = True  # as once a viewer shows the controls (here no viser server runs)
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


def test_the_viewer_opens_on_the_first_training_camera(viewer_model, sample_dataset):
    """Every method's model carries the control that moves each new viewer client to the first training camera."""
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl

    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.viewer.viewer_camera import FaceCamera

    model, _ = viewer_model
    (control,) = [c for _, c in parse_object(model, ViewerControl, "Custom Elements") if isinstance(c, FaceCamera)]
    first = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train").cameras[0:1]

    class Client:  # records what the hook sets, as viser's camera handle would receive it
        class camera:
            pass

        def atomic(self):
            import contextlib

            return contextlib.nullcontext()

    control.camera = first
    client = Client()
    control.face_client(client)
    c2w = first.camera_to_worlds[0].double().numpy()
    np.testing.assert_allclose(client.camera.position, c2w[:, 3] * 10.0, atol=1e-6)
    view = client.camera.look_at - client.camera.position
    np.testing.assert_allclose(view / np.linalg.norm(view), -c2w[:, 2], atol=1e-6)  # looks where the camera looks
    np.testing.assert_allclose(client.camera.up_direction, c2w[:, 1], atol=1e-6)
    assert abs(client.camera.fov - 2 * np.arctan(float(first.height) / (2 * float(first.fy)))) < 1e-6
    # the look-at point is the point of the view axis nearest the head at the origin
    assert np.linalg.norm(client.camera.look_at) < np.linalg.norm(client.camera.position)


def test_play_advances_the_audio_frame_with_the_clock_and_skips_frames_when_slow(viewer_model):
    """Pressing Play moves the audio frame at the clip's 25 fps; a render slower than that (10 fps here) sees
    every other frame or so, never a late one, and the achieved rate is shown."""
    model, _ = viewer_model
    found = {n for n in dir(model) if n.startswith("viewer_audio_")}
    assert {"viewer_audio_play", "viewer_audio_pause", "viewer_audio_loop", "viewer_audio_playback"} <= found
    audio = model._viewer_audio
    model.viewer_audio_frame.value = 0
    model.viewer_audio_play.cb_hook(model.viewer_audio_play)  # what pressing Play runs
    start, seen = time.monotonic(), []
    while time.monotonic() - start < 0.7:
        seen.append(int(model.viewer_audio_frame.value))
        windows = audio.windows(2)  # what each render asks for (the audio of the frame now due) ...
        time.sleep(0.1)  # ... and a render that takes 0.1 s
    elapsed = time.monotonic() - start
    status = model.viewer_audio_playback.value
    model.viewer_audio_pause.cb_hook(model.viewer_audio_pause)
    stopped = int(model.viewer_audio_frame.value)
    time.sleep(0.1)
    assert int(model.viewer_audio_frame.value) == stopped, "pause stops the clock"
    assert seen == sorted(seen) and max(np.diff(seen)) >= 2, seen  # frames skipped to keep time
    assert abs(stopped - 25 * elapsed) <= 2, (stopped, elapsed)
    assert "fps rendered" in status and "skipping frames" in status, status
    assert 2 <= audio.player.rate.fps(start + elapsed) * audio.player.rate.span / min(elapsed, 2.0) <= 12
    rows = neighbour_rows(torch.tensor([seen[-1]]), 2, model.audio_first, model.audio_last)
    assert torch.equal(windows, model.audio_table[rows]), "the render uses the audio of the frame played"


def test_playback_hooks_do_not_wait_for_the_training_lock(viewer_model):
    """nerfstudio wraps each element's hook in the training lock; with the viewer set up, Play, Pause, the frame
    slider and the status lines run while a training step or a render holds the lock (they would otherwise fill
    viser's thread pool and freeze the viewer), and a slider change asks for a re-render."""
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    model, _ = viewer_model
    lock, rerenders = threading.Lock(), []

    class Viewer:  # what nerfstudio's viewer does to the elements before it sets up the controls
        train_lock, viser_server = lock, None

        def _trigger_rerender(self):
            rerenders.append(time.monotonic())

    viewer = Viewer()
    for _, element in parse_object(model, ViewerElement, "Custom Elements"):
        hook = element.cb_hook
        element.cb_hook = lambda e, hook=hook: [lock.acquire(), hook(e), lock.release(), viewer._trigger_rerender()]
    for _, control in parse_object(model, ViewerControl, "Custom Elements"):
        if not hasattr(control, "face_client"):
            control._setup(viewer)
    player = model._viewer_audio.player
    with lock:  # a long render
        done = threading.Event()

        def press():
            for name in ("viewer_audio_frame", "viewer_audio_playback", "viewer_audio_status", "viewer_audio_play"):
                getattr(model, name).cb_hook(getattr(model, name))
            done.set()

        threading.Thread(target=press, daemon=True).start()
        assert done.wait(2), "a playback hook waited for the training lock"
        assert player.playing and len(rerenders) == 1, "only the slider asks for a re-render"
        time.sleep(0.2)
        assert int(model.viewer_audio_frame.value) >= 2, "playback runs while the lock is held"
        model.viewer_audio_pause.cb_hook(model.viewer_audio_pause)
        assert not player.playing
    assert player.request_render == viewer._trigger_rerender


def test_the_viewer_hides_the_training_cameras_that_would_cover_the_face(viewer_model):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl

    from aenerf_ns.viewer.viewer_camera import FaceCamera

    model, _ = viewer_model
    (control,) = [c for _, c in parse_object(model, ViewerControl, "Custom Elements") if isinstance(c, FaceCamera)]
    shown = []

    class Viewer:  # the parts of nerfstudio's viewer the control uses
        class pipeline:
            datamanager = None

        class viser_server:
            on_client_connect = staticmethod(lambda cb: None)

        class hide_images:
            visible = True

        def init_scene(self, *args):
            self.camera_handles = {0: "frustum"}

        def set_camera_visibility(self, visible):
            shown.append(visible)

        def toggle_cameravis_button(self):
            self.hide_images.visible = not self.hide_images.visible

    viewer = Viewer()
    control._setup(viewer)
    assert shown == [], "nothing is drawn before init_scene"
    viewer.init_scene("dataset", "training")
    assert shown == [False] and not viewer.hide_images.visible
    control.hide_training_cameras()
    assert shown == [False], "cameras the user shows again stay shown"


def test_play_loops_or_stops_at_the_end(viewer_model):
    model, _ = viewer_model
    last = int(model.audio_table.shape[0]) - 1
    model.viewer_audio_frame.value = last - 2
    model.viewer_audio_loop.value = True
    assert model._viewer_audio.player.play()
    time.sleep(0.3)
    looped = int(model.viewer_audio_frame.value)
    model._viewer_audio.player.pause()
    assert looped < last - 2, "looping wraps to the start"
    model.viewer_audio_loop.value = False
    model.viewer_audio_frame.value = last - 2
    assert model._viewer_audio.player.play()
    time.sleep(0.3)
    assert int(model.viewer_audio_frame.value) == last and not model._viewer_audio.player.playing
    assert "finished" in model.viewer_audio_playback.value


def test_a_socket_stream_drives_the_render_in_order(viewer_model, speech_wav, capsys):
    """Chunks sent in real time on 127.0.0.1: the newest complete frame drives each render; latency is measured
    from the arrival of the chunk that completed a frame to the end of that frame's render."""
    from aenerf_ns.audio.audio_io import load_audio

    model, camera = viewer_model
    samples = load_audio(speech_wav).samples[: 16000 * 2]  # 2 s
    pcm = (samples * 32767).astype("<i2").tobytes()
    assert not model._viewer_audio.start_stream("tcp://0.0.0.0:0")
    assert "refusing" in model.viewer_audio_status.value
    port = _free_port()
    assert model._viewer_audio.start_stream(f"tcp://127.0.0.1:{port}")
    assert model.viewer_audio_source.value == "audio stream"

    def send():
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for start in range(0, len(pcm), 1280):  # 40 ms chunks, in real time
                conn.sendall(pcm[start : start + 1280])
                time.sleep(0.04)

    sender = threading.Thread(target=send)
    sender.start()
    live = model._viewer_audio.live
    rendered, waits, latencies, images = [], [], [], {}
    deadline = time.monotonic() + 60
    while not (live.done and rendered and rendered[-1] == len(live) - 1) and time.monotonic() < deadline:
        frame = int(model.viewer_audio_frame.value)
        if len(live) == 0 or (rendered and frame == rendered[-1]):
            time.sleep(0.002)
            continue
        waits.append(time.monotonic() - live.arrival[frame])
        images[frame] = _render(model, camera)["rgb"]
        latencies.append(time.monotonic() - live.arrival[frame])
        rendered.append(frame)
    sender.join()
    assert live.error is None and live.done and len(live) == 50
    assert rendered == sorted(set(rendered)), "frames follow the chunks in order"
    assert rendered[-1] == 49 and len(rendered) >= 2
    # the stream's audio drives the picture (neighbouring frames can share nearly the same audio window)
    assert not torch.allclose(images[rendered[0]], images[rendered[-1]])
    wait, total = np.array(waits) * 1000, np.array(latencies) * 1000
    with capsys.disabled():
        print(
            f"\nstream latency, {method(model)}, {len(total)} of 50 frames rendered at "
            f"{int(camera.width)}x{int(camera.height)} px: chunk arrival -> render start median "
            f"{np.median(wait):.0f} ms (max {wait.max():.0f}); -> frame rendered median "
            f"{np.median(total):.0f} ms (max {total.max():.0f})"
        )
    # the newest frame is always the one rendered: a frame waits for at most the render before it (no backlog;
    # the margin absorbs scheduling jitter on a loaded machine)
    assert np.median(wait) <= np.max(total - wait) + 250


def method(model) -> str:
    return type(model).__name__


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


def _start_viewer(data, ns_train, tmp_path, port: int, **train) -> subprocess.Popen:
    """`ns-train` with the live viewer on `port`, returned once the viewer accepts connections; `train` overrides
    `ns_train`'s arguments (by default aenerf-tiny with small fields, training on and on)."""
    cmd = ns_train(data, tmp_path / "runs", vis="viewer", **{"iterations": 100000, "small": True, **train})
    cmd += ["--viewer.websocket-port", str(port)]
    with open(tmp_path / "train.log", "w") as log:  # the child keeps its own descriptor
        train = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.time() + 300
    while True:
        if train.poll() is not None:
            raise AssertionError((tmp_path / "train.log").read_text()[-3000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return train
        except OSError:
            if time.time() > deadline:
                train.kill()
                raise AssertionError("the viewer never started listening") from None
            time.sleep(1)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_live_viewer_shows_a_rendered_frame_in_a_real_browser(sample_dataset, ns_train, tmp_path):
    port = _free_port()
    train = _start_viewer(sample_dataset, ns_train, tmp_path, port)
    try:
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
        # an empty viewport is neutral grey (channels within a few levels); a rendered frame is tinted by the
        # sample's green plate or, seen from the face camera, by the face (measured 15-50 levels apart)
        assert max(r, g, b) - min(r, g, b) > 8, (r, g, b)
        assert train.poll() is None, "training must survive the browser session"
    finally:
        train.terminate()
        try:
            train.wait(timeout=30)
        except subprocess.TimeoutExpired:
            train.kill()


class _DevTools:
    """The smallest Chrome DevTools Protocol client: evaluate JavaScript and take screenshots in a headless tab."""

    def __init__(self, port: int, deadline: float) -> None:
        import json
        import urllib.request

        from websockets.sync.client import connect

        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                    pages = [t for t in json.load(reply) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "Chromium's DevTools endpoint never came up"
            time.sleep(0.5)
        self._json = json
        self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        self._ws.send(self._json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = self._json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self) -> np.ndarray:
        import base64
        import io

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)

    def click(self, label: str) -> bool:
        """A real mouse click (press and release) on the button showing `label`; False when there is none."""
        centre = self.js(BUTTON_CENTRE.format(label=label))
        if not centre:
            return False
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=centre[0], y=centre[1], button="left", clickCount=1)
        return True

    def close(self) -> None:
        self._ws.close()


BUTTON_CENTRE = """(() => {{
  const b = [...document.querySelectorAll('button')].find(e => e.textContent.trim() === {label!r});
  if (!b) return null; b.scrollIntoView(); const r = b.getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2]; }})()"""
INPUT = """(() => {{
  const label = [...document.querySelectorAll('label')].find(e => e.textContent.trim() === {label!r});
  const row = label && label.closest('.mantine-Flex-root');
  return row ? row.querySelector('input') : null; }})()"""
INPUT_VALUE = "(() => {{ const input = {input}; return input ? input.value : null; }})()"
FOCUS_INPUT = "(() => {{ const input = {input}; if (!input) return false; input.focus(); return true; }})()"
FACE_STEPS = 300
"""aenerf-gs-tiny steps after which the sample's face, mouth and green plate are clearly drawn (about 20 s on two
CPU cores, and the Gaussian method renders the viewer's frames in well under a second)."""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_viewer_opens_on_the_face_and_plays_speech_in_a_real_browser(sample_dataset, ns_train, speech_wav, tmp_path):
    """Headless Chromium on the viewer of a finished short run (so it draws a face, and nothing but the audio moves
    it): the first picture is the face (not the default camera's view); a speech file loaded through the GUI plays
    with Play, the audio frame advances and the mouth region changes between screenshots."""
    port, debug_port = _free_port(), _free_port()
    train = _start_viewer(
        sample_dataset, ns_train, tmp_path, port, method="aenerf-gs-tiny", iterations=FACE_STEPS, small=False
    )
    browser = None
    try:
        deadline = time.time() + 300
        # the run keeps serving the viewer once training is done; the final checkpoint marks the end of training
        while not list(tmp_path.glob(f"runs/*/*/*/nerfstudio_models/step-{FACE_STEPS - 1:09d}.ckpt")):
            assert train.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            assert time.time() < deadline, "training did not finish"
            time.sleep(1)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        flags += ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--window-size=1000,700"]
        flags += [f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={debug_port}"]
        browser = subprocess.Popen(
            [CHROMIUM, *flags, f"http://127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        tab = _DevTools(debug_port, deadline)
        while tab.js(BUTTON_CENTRE.format(label="Play audio")) is None:
            assert time.time() < deadline, "the viewer's audio controls never appeared"
            time.sleep(0.5)
        # the first picture the viewer settles on, the camera untouched
        shots = [tab.screenshot()[80:680, 20:640]]
        while not (_tinted(shots[-1]) and len(shots) > 1 and np.abs(shots[-1] - shots[-2]).mean() < 0.5):
            assert time.time() < deadline, "the viewer never settled on a rendered frame"
            time.sleep(1)
            shots.append(tab.screenshot()[80:680, 20:640])
        first = shots[-1]
        Image.fromarray(first.astype(np.uint8)).save(tmp_path / "first.png")  # the pictures, to look at a failure
        h, w = first.shape[:2]
        centre = _middle(first, 1 / 3, 2 / 3).reshape(-1, 3)
        sides = np.concatenate([first[: h // 2, :40].reshape(-1, 3), first[: h // 2, -40:].reshape(-1, 3)])
        # the face fills the middle of the first picture and the plate shows beside the head: the middle differs
        # from the green plate at the sides, where the default camera shows one brown-green blur
        r, g, b = sides.mean(0)
        assert g - max(r, b) > 8, ("the plate is not beside the head", (r, g, b))
        assert np.abs(centre.mean(0) - sides.mean(0)).max() > 15, (centre.mean(0), sides.mean(0))

        audio_file = INPUT.format(label="Audio file")
        assert tab.js(FOCUS_INPUT.format(input=audio_file)), "no audio file field"
        tab.call("Input.insertText", text=str(speech_wav))
        assert tab.click("Load audio file"), "no Load button"
        status = INPUT_VALUE.format(input=INPUT.format(label="Audio status"))
        while not str(tab.js(status)).startswith("loaded new_speech.wav: 325 frames"):
            assert time.time() < deadline, tab.js(status)
            if str(tab.js(status)).startswith("could not load :"):  # viser handles each message on a thread of its
                tab.click("Load audio file")  # own: the click overtook the path, press again as a person would
            time.sleep(0.5)

        assert tab.click("Play audio"), "no Play button"
        frame, playback = (INPUT_VALUE.format(input=INPUT.format(label=name)) for name in ("Audio frame", "Playback"))
        shots, frames, states = [], [], []
        for _ in range(6):
            time.sleep(1)
            frames.append(tab.js(frame))
            states.append(tab.js(playback))
            shots.append(tab.screenshot()[80:680, 20:640])
        for i, shot in enumerate(shots):
            Image.fromarray(shot.astype(np.uint8)).save(tmp_path / f"playing{i}.png")
        assert None not in frames and frames == sorted(frames, key=float) and len(set(frames)) >= 4, (frames, states)
        assert all(state.startswith("playing frame") and "/325:" in state for state in states), states
        assert float(frames[-1]) > 74, ("the slider stops at the training clip's last frame", frames)
        # the audio moves the mouth and nothing else: between some two screenshots the mouth region changes while
        # the eyes and forehead stay (a change of the render's resolution during playback changes both)
        mouth = [_middle(s, 1 / 2, 3 / 4) for s in shots]
        upper = [_middle(s, 1 / 6, 1 / 3) for s in shots]
        changes = [
            (np.abs(a - b).mean(), np.abs(c - d).mean()) for a, b, c, d in zip(mouth, mouth[1:], upper, upper[1:])
        ]
        assert any(m > 0.5 + 2 * u for m, u in changes), changes
        assert train.poll() is None, "the viewer must survive the browser session"
        tab.close()
    finally:
        for process in (browser, train):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _middle(viewport: np.ndarray, top: float, bottom: float) -> np.ndarray:
    """The middle third of the viewport's columns, between fractions `top` and `bottom` of its height."""
    h, w = viewport.shape[:2]
    return viewport[int(h * top) : int(h * bottom), w // 3 : 2 * w // 3]


def _tinted(viewport: np.ndarray) -> bool:
    """Not the empty viewport, which is neutral grey (channels within a few levels of each other)."""
    r, g, b = viewport.reshape(-1, 3).mean(0)
    return viewport.std() > 1.0 and max(r, g, b) - min(r, g, b) > 8
