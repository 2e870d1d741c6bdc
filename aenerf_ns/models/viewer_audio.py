"""Viewer controls that choose which audio drives the live render: a source dropdown, a frame slider, a file.

The viewer's cameras carry no audio, so the model asks `ViewerAudio.windows()` for the feature windows of
the frame the user picked: a row of the training clip's table, a row of a loaded audio file, or the clip
average. nerfstudio's viewer finds the `ViewerElement`s among the model's attributes (the model exposes
`elements()` under public names) and re-renders when any of them changes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerDropdown, ViewerSlider, ViewerText
from torch import Tensor

from aenerf_ns.audio.audio_smoothing import clip_bounds, neighbour_rows

SOURCES = ("training audio", "loaded file", "clip average")


class ViewerAudio:
    """State behind the audio controls; `windows()` gives the feature windows the viewer render uses."""

    def __init__(self, model, feature_config=None, fps: float = 25.0) -> None:
        self._model = model
        self.feature_config = feature_config
        self.fps = fps
        self.file_table: Tensor | None = None
        num_rows = int(model.audio_table.shape[0])
        self.source = ViewerDropdown("Audio source", SOURCES[0], list(SOURCES), cb_hook=self._on_source)
        self.frame = ViewerSlider("Audio frame", 0, 0, max(num_rows - 1, 1), step=1, hint="frame whose audio drives")
        self.path = ViewerText("Audio file", "", hint="wav/mp3/m4a path on the training machine")
        self.load = ViewerButton("Load audio file", cb_hook=lambda _: self.load_file(self.path.value))
        self.status = ViewerText("Audio status", f"training audio: {num_rows} frames", disabled=True)

    def elements(self) -> dict[str, object]:
        """The viewer elements, by the attribute names the model exposes them under."""
        return {
            "viewer_audio_source": self.source,
            "viewer_audio_frame": self.frame,
            "viewer_audio_file": self.path,
            "viewer_audio_load": self.load,
            "viewer_audio_status": self.status,
        }

    def _rows(self) -> int:
        table = self.file_table if self.source.value == "loaded file" else self._model.audio_table
        return int(table.shape[0]) if table is not None else 0

    def _on_source(self, _element=None) -> None:
        rows = self._rows()
        if self.frame.gui_handle is not None and rows:
            self.frame.gui_handle.max = max(rows - 1, 1)
        if self.source.value == "loaded file" and self.file_table is None:
            self.status.value = "no audio file loaded yet: enter a path and press 'Load audio file'"

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

    def windows(self, radius: int) -> Tensor | None:
        """(1, 2*radius+1, flat) feature windows around the chosen frame; None means the clip average."""
        source = self.source.value
        table = self._model.audio_table
        if source == "clip average" or (source == "loaded file" and self.file_table is None):
            return None
        if source == "loaded file":
            table = self.file_table
            first, last = clip_bounds(torch.zeros(len(table), dtype=torch.long, device=table.device))
        else:
            first, last = self._model.audio_first, self._model.audio_last
        row = torch.tensor([min(max(int(self.frame.value), 0), len(table) - 1)], device=table.device)
        return table[neighbour_rows(row, radius, first, last)]
