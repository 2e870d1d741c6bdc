"""Play / pause / loop for the viewer's audio: the audio frame follows the wall clock at the clip's frame rate.

A background thread moves the viewer's audio-frame slider to the frame the clock says and asks the viewer for a
re-render, so playback needs no user action. The render keeps the newest frame only: when rendering is slower
than the clip, frames in between are skipped and the talking head stays in time with the audio. Frames that
reached a render are counted to show the frames per second actually achieved.

nerfstudio runs every custom element's hook under the training lock, as one task per change on viser's shared
pool of 32 threads, the pool that also handles every incoming message. Playback changes the slider 25 times a
second; while a training step or a render holds the lock (a full-resolution AE-NeRF render on a CPU holds it for
minutes) those tasks fill the pool, and clicks (Pause, Play) and camera moves queue behind them: the viewer
freezes. `PlaybackControl` therefore gives the elements that playback and streams change lock-free hooks; none
of them touches the model.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerCheckbox, ViewerControl, ViewerElement, ViewerText


@dataclass
class PlaybackClock:
    """Which frame is due now: `start_frame` at `start_time`, then `fps` frames per second of wall time."""

    fps: float
    """Frames per second of the clip being played."""
    start_frame: int = 0
    """Frame shown when playback (re)started."""
    start_time: float = 0.0
    """`time.monotonic()` when playback (re)started."""

    def frame_at(self, now: float, num_frames: int, loop: bool) -> tuple[int, bool]:
        """(frame due at `now`, whether the clip has ended); looping wraps around instead of ending."""
        due = self.start_frame + int((now - self.start_time) * self.fps + 1e-9)
        if num_frames <= 0:
            return 0, True
        if loop:
            return due % num_frames, False
        return min(due, num_frames - 1), due >= num_frames


class RenderRate:
    """Frames per second that reached a render, over the last `span` seconds."""

    def __init__(self, span: float = 2.0) -> None:
        self.span = span
        self._times: deque[float] = deque()
        self._last_frame: int | None = None

    def rendered(self, frame: int, now: float | None = None) -> None:
        """Note a render of `frame` (a repeat render of the same frame does not count)."""
        now = time.monotonic() if now is None else now
        if frame != self._last_frame:
            self._times.append(now)
            self._last_frame = frame
        while self._times and self._times[0] < now - self.span:
            self._times.popleft()

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._times if t >= now - self.span]
        return len(recent) / self.span

    def reset(self) -> None:
        self._times.clear()
        self._last_frame = None


class AudioPlayer:
    """The Play / Pause buttons, the Loop checkbox and the playback status line, and the thread that plays.

    Args:
        get_frame: the audio frame now selected (the slider's value).
        set_frame: select an audio frame (moves the slider, which re-renders).
        num_frames: frames of the audio now selected (0: nothing to play).
        fps: frame rate of the audio tables.
        tick_seconds: how often the clock is looked at.
    """

    def __init__(
        self,
        get_frame: Callable[[], int],
        set_frame: Callable[[int], None],
        num_frames: Callable[[], int],
        fps: float,
        tick_seconds: float = 0.01,
    ) -> None:
        self._get_frame, self._set_frame, self._num_frames = get_frame, set_frame, num_frames
        self.clock = PlaybackClock(fps)
        self.rate = RenderRate()
        self.tick_seconds = tick_seconds
        self.playing = False
        self._thread: threading.Thread | None = None
        self._generation = 0
        self.request_render: Callable[[], None] = lambda: None
        """Ask the viewer for a re-render (set by `PlaybackControl` when the viewer starts)."""
        self.play_button = ViewerButton("Play audio", cb_hook=lambda _: self.play())
        self.pause_button = ViewerButton("Pause audio", cb_hook=lambda _: self.pause())
        self.loop = ViewerCheckbox("Loop audio", False, hint="start again at the first frame after the last")
        self.status = ViewerText("Playback", "paused", disabled=True, hint="frames per second actually rendered")

    def elements(self) -> dict[str, object]:
        """The viewer elements, by the attribute names the model exposes them under."""
        return {
            "viewer_audio_play": self.play_button,
            "viewer_audio_pause": self.pause_button,
            "viewer_audio_loop": self.loop,
            "viewer_audio_playback": self.status,
        }

    def play(self) -> bool:
        """Start playing from the selected frame (from the first when at the end); False if nothing to play."""
        count = self._num_frames()
        if count <= 0:
            self.status.value = "nothing to play: no audio frames"
            return False
        start = int(self._get_frame())
        if start >= count - 1 and not self.loop.value:
            start = 0
        self.clock.start_frame, self.clock.start_time = start, time.monotonic()
        self.rate.reset()
        self.playing = True
        self._generation += 1
        self._thread = threading.Thread(target=self._run, args=(self._generation,), name="aenerf-audio-player")
        self._thread.daemon = True
        self._thread.start()
        return True

    def pause(self) -> None:
        self.playing = False
        self._generation += 1
        self.status.value = f"paused at frame {int(self._get_frame())}"

    def rendered(self, frame: int) -> None:
        """Called by the render with the frame it uses; counts towards the achieved frame rate while playing."""
        if self.playing:
            self.rate.rendered(frame)

    def _run(self, generation: int) -> None:
        last_status = 0.0
        while self.playing and generation == self._generation:
            now = time.monotonic()
            count = self._num_frames()
            frame, ended = self.clock.frame_at(now, count, bool(self.loop.value))
            if frame != int(self._get_frame()):
                self._set_frame(frame)
                self.request_render()
            if now - last_status > 0.5 or ended:
                last_status = now
                achieved = self.rate.fps(now)
                skipping = " (skipping frames to keep time)" if achieved < 0.9 * self.clock.fps else ""
                self.status.value = (
                    f"playing frame {frame + 1}/{count}: {achieved:.1f} of {self.clock.fps:g} fps rendered{skipping}"
                )
            if ended:
                self.playing = False
                self.status.value = f"finished at frame {frame + 1}/{count}; " + self.status.value.split(": ", 1)[-1]
                return
            time.sleep(self.tick_seconds)


class PlaybackControl(ViewerControl):
    """Connects an `AudioPlayer` to the running viewer: re-render requests, and lock-free hooks for Play, Pause,
    the frame slider (a change re-renders) and the status lines (display only).

    The viewer installs the elements, wrapping each hook in the training lock, before it sets up controls; the
    installed callbacks look the hook up on every change, so replacing it here takes effect.
    """

    def __init__(self, player: AudioPlayer, frame: ViewerElement, displays: tuple[ViewerElement, ...] = ()) -> None:
        self.player = player
        self.frame = frame
        self.displays = displays

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self.player.request_render = viewer._trigger_rerender
        self.player.play_button.cb_hook = lambda _: self.player.play()
        self.player.pause_button.cb_hook = lambda _: self.player.pause()
        self.frame.cb_hook = lambda _: viewer._trigger_rerender()  # the render reads the slider's value
        for element in (self.player.status, *self.displays):
            element.cb_hook = lambda _: None
