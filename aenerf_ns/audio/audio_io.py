"""Reading speech audio from any common file into 16 kHz mono float samples, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

TARGET_SAMPLE_RATE = 16000
"""Sample rate every audio encoder in this package works at."""


class AudioError(ValueError):
    """The audio cannot be used; the message names the file and the problem."""


@dataclass
class LoadedAudio:
    """Mono audio resampled to the working rate, and what the file held originally."""

    samples: Float[np.ndarray, "samples"]
    """Mono float32 waveform at `sample_rate`."""
    sample_rate: int
    """Samples per second of `samples`."""
    source_sample_rate: int
    """Sample rate stored in the file."""
    source_channels: int
    """Channel count stored in the file (downmixed to mono on load)."""
    path: Path
    """File the audio came from."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)


def _read_av(path: Path) -> tuple[np.ndarray, int]:
    """Decode with PyAV (mp3, m4a, aac, the audio track of a video...), keeping rate and channels."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        out_channels = 2 if (stream.codec_context.channels or 1) > 1 else 1
        rate = stream.codec_context.sample_rate
        layout = "stereo" if out_channels == 2 else "mono"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        chunks = []
        for frame in [*container.decode(stream), None]:  # None flushes the resampler
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, out_channels))
    if not chunks:
        return np.zeros((0, 1), np.float32), rate
    return np.concatenate(chunks, 0), int(rate)


def check_finite(
    samples: Float[np.ndarray, "samples *channels"], sample_rate: int, name: str, start_sample: int = 0
) -> None:
    """Raise AudioError naming `name` and the time of the first NaN or infinite sample.

    Such a sample is no sound at all: every feature window that touches it turns into NaN (or, after a resample
    or a clip, into plausible numbers that hide it), so it is refused where the audio is read. `start_sample` is
    the index of `samples[0]` in the whole stream, for audio that arrives in chunks.
    """
    samples = np.asarray(samples)
    bad = ~np.isfinite(samples.reshape(len(samples), -1))
    if not bad.any():
        return
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    value = float(samples.reshape(len(samples), -1)[row][bad[row]][0])
    kind = "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    raise AudioError(
        f"{name} has a non-finite sample ({kind}) at {(start_sample + row) / sample_rate:.3f} s: "
        "audio samples must be finite numbers"
    )


def load_audio(path: Path | str, target_sample_rate: int = TARGET_SAMPLE_RATE) -> LoadedAudio:
    """Load any wav/flac/ogg/mp3/m4a (or a video's audio track) as mono float32 at `target_sample_rate`.

    Stereo is averaged to mono and other sample rates are resampled; the original layout is kept in the
    result so callers can report it. Missing, unreadable, empty and non-finite audio raise AudioError.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    errors = []
    data = None
    for reader in (_read_soundfile, _read_av):
        try:
            data, rate = reader(path)
            break
        except AudioError:
            raise
        except Exception as exc:  # each backend has its own exception types
            errors.append(f"{reader.__name__.strip('_')}: {exc}")
    if data is None:
        raise AudioError(f"could not decode audio file {path} (corrupt or unsupported format): {'; '.join(errors)}")
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} contains no samples")
    check_finite(data, rate, str(path))  # before downmixing and resampling spread a bad sample to its neighbours
    mono = data.mean(axis=1).astype(np.float32)
    if rate != target_sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=target_sample_rate).astype(np.float32)
    return LoadedAudio(mono, target_sample_rate, rate, int(data.shape[1]), path)


SILENCE_PEAK = 1e-4
"""Audio whose peak amplitude stays below this holds no speech to follow."""


def check_not_silent(audio: LoadedAudio) -> None:
    """Raise AudioError when the audio is silence only."""
    if np.max(np.abs(audio.samples)) < SILENCE_PEAK:
        raise AudioError(
            f"audio {audio.path} is silent (peak amplitude below {SILENCE_PEAK:g}): there is no speech to follow"
        )


def write_wav(path: Path | str, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM wav atomically; non-finite samples are refused (PCM would turn them into valid numbers)."""
    import io

    import soundfile

    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    check_finite(np.asarray(samples), sample_rate, f"audio for {path}")
    buf = io.BytesIO()
    soundfile.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(Path(path), buf.getvalue())
