"""Viewer controls that choose which audio drives the live render: a source dropdown, a frame slider, a file, a
stream, and playback (`audio_player`).

The viewer's cameras carry no audio, so the model asks `ViewerAudio.windows()` for the feature windows of
the frame the user picked: a row of the training clip's table, a row of a loaded audio file, a row of a live
stream (the newest one while the stream runs), or the clip average. Cameras of nerfstudio's other tools
(`ns-render`, `ns-eval`, `ns-export`) carry no audio either, and no viewer shows these controls there: they get the
clip average (`drives_render`). nerfstudio's viewer finds the
`ViewerElement`s among the model's attributes (the model exposes `elements()` under public names) and re-renders
when any of them changes, including when playback or a stream moves the frame slider.
"""

from __future__ import annotations

from pathlib import Path

import torch
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerDropdown, ViewerSlider, ViewerText
from torch import Tensor

from aenerf_ns.audio.audio_smoothing import clip_bounds, neighbour_rows
from aenerf_ns.viewer.audio_player import AudioPlayer, PlaybackControl

SOURCES = ("training audio", "loaded file", "audio stream", "clip average")


def set_slider_max(slider: ViewerSlider, maximum: int) -> None:
    """Give a viewer slider a new upper end, in every browser showing it.

    viser 0.2.7 (the version nerfstudio 1.1.5 pins) has no `max` on its slider handles: assigning `handle.max` only
    sets a Python attribute, so every browser kept the slider's first range (the training clip's frames) and showed
    a loaded file's or a stream's later frames as the clip's last frame, though the render used the right one.
    Where the handle has a `max` property it is used; otherwise every browser is sent the update message such a
    property sends (viser keeps it for browsers that connect later).
    """
    slider.max = maximum  # what a handle created later starts with
    handle = slider.gui_handle
    if handle is None:
        return
    if isinstance(getattr(type(handle), "max", None), property):
        handle.max = maximum
        return
    from viser._messages import GuiUpdateMessage

    handle._impl.gui_api._websock_interface.queue_message(GuiUpdateMessage(handle._impl.id, {"max": maximum}))


class ViewerAudio:
    """State behind the audio controls; `windows()` gives the feature windows the viewer render uses."""

    def __init__(self, model, feature_config=None, fps: float = 25.0) -> None:
        self._model = model
        self.feature_config = feature_config
        self.fps = fps
        self.file_table: Tensor | None = None
        self.live = None
        num_rows = int(model.audio_table.shape[0])
        self.source = ViewerDropdown("Audio source", SOURCES[0], list(SOURCES), cb_hook=self._on_source)
        self.frame = ViewerSlider("Audio frame", 0, 0, max(num_rows - 1, 1), step=1, hint="frame whose audio drives")
        self.path = ViewerText("Audio file", "", hint="wav/mp3/m4a path on the training machine")
        self.load = ViewerButton("Load audio file", cb_hook=lambda _: self.load_file(self.path.value))
        self.stream = ViewerText("Audio stream", "", hint="a wav being written, or tcp://127.0.0.1:PORT")
        self.start = ViewerButton("Start audio stream", cb_hook=lambda _: self.start_stream(self.stream.value))
        self.status = ViewerText("Audio status", f"training audio: {num_rows} frames", disabled=True)
        self.player = AudioPlayer(lambda: int(self.frame.value), self._set_frame, self._rows, fps)
        self.control = PlaybackControl(self.player, self.frame, displays=(self.status,))
        self.drives_render: bool | None = None
        """Whether these controls choose the audio of cameras that carry none (None: while a viewer shows them)."""

    def shown(self) -> bool:
        """Whether the controls drive the render: set by `drives_render`, else whether a viewer has installed them
        (outside the viewer, e.g. under `ns-render`, the clip average drives the render)."""
        if self.drives_render is not None:
            return self.drives_render
        return any(getattr(element, "gui_handle", None) is not None for element in (self.source, self.frame))

    def elements(self) -> dict[str, object]:
        """The viewer elements (and the playback control), by the attribute names the model exposes them under."""
        return {
            "viewer_audio_source": self.source,
            "viewer_audio_frame": self.frame,
            "viewer_audio_file": self.path,
            "viewer_audio_load": self.load,
            "viewer_audio_stream": self.stream,
            "viewer_audio_stream_start": self.start,
            "viewer_audio_status": self.status,
            **self.player.elements(),
            "viewer_audio_control": self.control,
        }

    def _rows(self) -> int:
        if self.source.value == "audio stream":
            return len(self.live) if self.live is not None else 0
        table = self.file_table if self.source.value == "loaded file" else self._model.audio_table
        return int(table.shape[0]) if table is not None else 0

    def _set_frame(self, frame: int) -> None:
        self.frame.value = frame

    def _on_source(self, _element=None) -> None:
        rows = self._rows()
        if rows:
            set_slider_max(self.frame, max(rows - 1, 1))
        if self.source.value == "loaded file" and self.file_table is None:
            self.status.value = "no audio file loaded yet: enter a path and press 'Load audio file'"
        if self.source.value == "audio stream" and self.live is None:
            self.status.value = "no stream yet: enter a wav path or tcp://127.0.0.1:PORT and press 'Start audio stream'"

    def load_file(self, path: str | Path) -> bool:
        """Compute features for an audio file with the training settings; errors go to the status line."""
        from aenerf_ns.audio.audio_features import compute_audio_features

        try:
            feats = compute_audio_features(Path(str(path).strip()), self.fps, None, self.feature_config)
        except Exception as exc:  # any unusable file is reported in the GUI, never crashes training
            self.status.value = f"could not load {path}: {exc}"
            return False
        table = torch.from_numpy(feats).reshape(len(feats), -1).to(self._model.audio_table)
        if table.shape[1] != self._model.audio_table.shape[1]:
            self.status.value = f"{path}: features do not match the training audio settings"
            return False
        self.file_table = table
        self.source.value = "loaded file"
        self._on_source()
        self.status.value = f"loaded {Path(str(path)).name}: {len(table)} frames"
        return True

    def start_stream(self, address: str, allow_remote: bool = False) -> bool:
        """Follow a live stream (a growing wav or tcp://127.0.0.1:PORT); the newest frame drives the render."""
        from aenerf_ns.audio.audio_sources import open_source
        from aenerf_ns.audio.audio_stream import StreamingFeatures
        from aenerf_ns.audio.live_audio import LiveAudio

        try:
            features = StreamingFeatures(self.feature_config, self.fps)
            source = open_source(address, allow_remote)
        except Exception as exc:  # reported in the GUI, never crashes training
            self.status.value = f"could not start stream {address}: {exc}"
            return False
        self.stop_stream()
        self.player.pause()
        self.live = LiveAudio(source, features, on_frames=self._on_stream_frames)
        self.source.value = "audio stream"
        port = f" (listening on port {source.port})" if hasattr(source, "port") else ""
        self.status.value = f"waiting for audio from {address}{port}"
        self.live.start()  # after the status line: a stream that fails at once must not have its error overwritten
        return True

    def stop_stream(self) -> None:
        if self.live is not None:
            self.live.stop()

    def _on_stream_frames(self, count: int) -> None:
        """A chunk completed frames: show the newest (moving the slider re-renders)."""
        live = self.live
        if live is None:
            return
        if live.error is not None:
            self.status.value = f"stream stopped: {live.error}"
        else:
            ended = " (stream ended)" if live.done else ""
            self.status.value = f"audio stream: {count} frames{ended}"
        if count and self.source.value == "audio stream":
            set_slider_max(self.frame, max(count - 1, 1))
            self.frame.value = count - 1
            self.player.request_render()

    def windows(self, radius: int) -> Tensor | None:
        """(1, 2*radius+1, flat) feature windows around the chosen frame; None means the clip average (also whenever
        no viewer shows the controls)."""
        if not self.shown():
            return None
        source = self.source.value
        table = self._model.audio_table
        frame = int(self.frame.value)
        if source == "audio stream":
            if self.live is None or len(self.live) == 0:
                return None
            self.player.rendered(frame)
            rows = self.live.rows(range(frame - radius, frame + radius + 1))  # clamped to the frames so far
            return torch.from_numpy(rows).reshape(1, len(rows), -1).to(table)
        if source == "clip average" or (source == "loaded file" and self.file_table is None):
            return None
        self.player.rendered(frame)
        if source == "loaded file":
            table = self.file_table
            first, last = clip_bounds(torch.zeros(len(table), dtype=torch.long, device=table.device))
        else:
            first, last = self._model.audio_first, self._model.audio_last
        row = torch.tensor([min(max(frame, 0), len(table) - 1)], device=table.device)
        return table[neighbour_rows(row, radius, first, last)]
