"""LSE-C / LSE-D: SyncNet's lip-sync confidence and distance, with the protocol of syncnet_python and Wav2Lip.

The figures talking-head papers quote come from one pipeline (syncnet_python's run_pipeline.py crop, then
SyncNetInstance.evaluate, as Wav2Lip's evaluation scripts run it), so each of its choices is kept here:

- video at 25 fps, a face crop per frame (box median-smoothed over 13 frames, crop_scale 0.4: room above the
  box centre of one box half-size, below it of 1.8, to the sides of 1.4), resized to 224 x 224 and fed as raw
  0-255 BGR values (the reference reads frames with cv2.imread and neither scales nor centres them);
- audio at 16 kHz as 16-bit PCM values (the reference reads an int16 wav), 13 MFCCs per 10 ms computed as
  python_speech_features.mfcc does with its defaults (no analysis window, log energy in c0);
- one embedding per 5-frame window and per the 20 MFCC frames starting at the same time; the last window the
  frames would allow is left out, as the reference's loop bound leaves it out;
- each video window against the audio windows up to `max_shift` (15) frames earlier and later, the missing ones
  being zero vectors; the distance per shift averaged over the windows; LSE-D = the smallest mean distance,
  LSE-C = the median of the mean distances minus that smallest one.

Offset convention (the reference's): `offset_frames = k` means video window i matches audio window i - k best,
i.e. a positive offset is a video that lags the audio by k frames (the lips move k frames after the sound).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8

from aenerf_ns.audio.audio_io import LoadedAudio
from aenerf_ns.evaluation.syncnet_network import (
    LIP_FRAMES,
    LIP_SIZE,
    MFCC_WINDOW,
    SyncNet,
    SyncNetWeightsError,
    load_syncnet,
)
from aenerf_ns.utils.offline_weights import syncnet_weights_path

SYNCNET_FPS = 25.0
"""Video rate the network was trained at: one 5-frame window is 0.2 s."""
SYNCNET_SAMPLE_RATE = 16000
"""Audio rate the MFCCs are computed at."""
SAMPLES_PER_FRAME = 640
"""16 kHz samples per 25 fps video frame."""
MFCC_PER_FRAME = 4
"""MFCC frames (10 ms step) per video frame (40 ms)."""
CROP_SCALE = 0.4
"""run_pipeline.py's --crop_scale: how much room the crop leaves around the face box."""
BOX_SMOOTHING = 13
"""Median-filter length (frames) for the face box centre and size, as crop_video smooths them."""
PAD_VALUE = 110
"""Grey the reference pads frames with where the crop leaves the image."""
MIN_FRAMES = BOX_SMOOTHING // 2 + 1
"""Fewest 25 fps frames scored: one window needs 6 (5 + the one the reference leaves out), and the box median
filter, which zero-pads like scipy's medfilt, collapses the box of a shorter clip to nothing."""


# ---------------------------------------------------------------------------------------------- audio (MFCC)


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int, nfft: int, sample_rate: int) -> Float[np.ndarray, "filters bins"]:
    """Triangular mel filters on FFT bins, with python_speech_features' integer bin edges (0 Hz to Nyquist)."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_filters + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):  # empty slopes (equal edges) are masked out below
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    return rising + falling


def speech_mfcc(
    signal: Float[np.ndarray, "samples"],
    sample_rate: int = SYNCNET_SAMPLE_RATE,
    n_cepstra: int = 13,
    window_s: float = 0.025,
    step_s: float = 0.01,
    n_filters: int = 26,
    nfft: int = 512,
    preemphasis: float = 0.97,
    lifter: int = 22,
) -> Float[np.ndarray, "frames cepstra"]:
    """MFCCs exactly as python_speech_features.mfcc(signal, sample_rate) computes them with its defaults.

    SyncNet was trained on these features, so every detail counts: rectangular 25 ms frames every 10 ms (the
    last one zero-padded), pre-emphasis, power spectrum |FFT|^2 / nfft, 26 mel filters, log, orthonormal
    DCT-II, sinusoidal lifter, and c0 replaced by the log of the frame's total power. The signal's scale
    matters (it shifts c0), so pass 16-bit PCM values, not floats in [-1, 1].
    """
    import scipy.fft

    x = np.asarray(signal, np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("cannot compute MFCCs of an empty signal")
    x = np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    frame_len = int(np.floor(window_s * sample_rate + 0.5))  # round half up
    step = int(np.floor(step_s * sample_rate + 0.5))
    n_frames = 1 if len(x) <= frame_len else 1 + int(np.ceil((len(x) - frame_len) / step))
    x = np.concatenate([x, np.zeros((n_frames - 1) * step + frame_len - len(x))])
    frames = x[np.arange(n_frames)[:, None] * step + np.arange(frame_len)[None, :]]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    tiny = np.finfo(np.float64).eps  # where python_speech_features guards log(0)
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, tiny, energy)
    mel_energy = power @ mel_filterbank(n_filters, nfft, sample_rate).T
    mel_energy = np.where(mel_energy == 0, tiny, mel_energy)
    cepstra = scipy.fft.dct(np.log(mel_energy), type=2, axis=1, norm="ortho")[:, :n_cepstra]
    if lifter > 0:
        cepstra = cepstra * (1.0 + lifter / 2.0 * np.sin(np.pi * np.arange(n_cepstra) / lifter))
    cepstra[:, 0] = np.log(energy)
    return cepstra


def syncnet_pcm(audio: LoadedAudio) -> Float[np.ndarray, "samples"]:
    """The audio as the reference reads it: mono, 16 kHz, 16-bit PCM values (as floats).

    The reference has ffmpeg write a pcm_s16le wav, i.e. round(x * 32768) clipped to int16; doing the same
    keeps c0 on the scale the network knows and digital silence at exactly zero.
    """
    from math import gcd

    samples = np.asarray(audio.samples, np.float64)
    if samples.ndim == 2:  # (samples, channels): LoadedAudio is mono, but be lenient with hand-made ones
        samples = samples.mean(axis=1)
    samples = samples.reshape(-1)
    rate = int(audio.sample_rate)
    if rate != SYNCNET_SAMPLE_RATE:
        import scipy.signal

        g = gcd(SYNCNET_SAMPLE_RATE, rate)
        samples = scipy.signal.resample_poly(samples, SYNCNET_SAMPLE_RATE // g, rate // g)
    return np.clip(np.round(samples * 32768.0), -32768, 32767)


# ---------------------------------------------------------------------------------------------- video (face crops)


def indices_at_25fps(n_frames: int, fps: float) -> Int[np.ndarray, "m"]:
    """Which frames make a 25 fps video: for each 25 fps time inside the clip, the frame nearest in time."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if abs(fps - SYNCNET_FPS) < 1e-6:
        return np.arange(n_frames)
    m = int(np.floor(n_frames * SYNCNET_FPS / fps + 1e-9))
    nearest = np.floor(np.arange(m) * fps / SYNCNET_FPS + 0.5).astype(np.int64)
    return np.clip(nearest, 0, n_frames - 1)


def smoothed_face_boxes(
    landmarks: Float[np.ndarray, "n points 3"],
) -> tuple[Float[np.ndarray, "n"], Float[np.ndarray, "n"], Float[np.ndarray, "n"]]:
    """Face box per frame from the landmarks' extent, as crop_video smooths it: (centre x, centre y, half size).

    The half size is half the box's larger side; all three are median-filtered over 13 frames with
    scipy.signal.medfilt, zero padding at the ends included, as the reference does it.
    """
    import warnings

    import scipy.signal

    xy = np.asarray(landmarks, np.float64)[..., :2]
    lo, hi = xy.min(axis=1), xy.max(axis=1)
    half = np.maximum(hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]) / 2
    centre = (lo + hi) / 2
    with warnings.catch_warnings():  # clips shorter than the kernel are zero-padded, as in the reference
        warnings.filterwarnings("ignore", "kernel_size exceeds volume extent")
        return tuple(scipy.signal.medfilt(v, kernel_size=BOX_SMOOTHING) for v in (centre[:, 0], centre[:, 1], half))


def _window_with_fill(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """image[top:bottom, left:right], with PAD_VALUE wherever the window leaves the image."""
    h, w = image.shape[:2]
    out = np.full((bottom - top, right - left, image.shape[2]), PAD_VALUE, dtype=image.dtype)
    r0, r1, c0, c1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    return out


def face_crops(
    frames: list[UInt8[np.ndarray, "h w 3"]],
    landmarks: Float[np.ndarray, "n points 3"],
    crop_scale: float = CROP_SCALE,
    count: int | None = None,
) -> UInt8[np.ndarray, "m 224 224 3"]:
    """224 x 224 face crops of 25 fps frames (channel order kept), the way run_pipeline.py's crop_video cuts them.

    The box of `smoothed_face_boxes` gives centre (x, y) and half size s; the crop spans y - s to y + s(1 + 2c)
    and x - s(1 + c) to x + s(1 + c) for c = crop_scale (the reference pads the frame by int(s(1 + 2c)) grey
    pixels first, hence the same integer truncation here), then is resized bilinearly with cv2. Only the first
    `count` frames are cut (the box smoothing still sees every frame).
    """
    import cv2

    cx, cy, half = smoothed_face_boxes(landmarks)
    count = len(frames) if count is None else count
    crops = np.empty((count, LIP_SIZE, LIP_SIZE, 3), np.uint8)
    for i in range(count):
        s = float(half[i])
        pad = int(s * (1 + 2 * crop_scale))
        y, x = cy[i] + pad, cx[i] + pad  # in the padded frame's coordinates, as the reference indexes
        top, bottom = int(y - s), int(y + s * (1 + 2 * crop_scale))
        left, right = int(x - s * (1 + crop_scale)), int(x + s * (1 + crop_scale))
        if bottom <= top or right <= left:
            raise ValueError(f"the face box of frame {i} is empty (landmarks span {2 * s:.1f} px)")
        face = _window_with_fill(np.asarray(frames[i]), top - pad, bottom - pad, left - pad, right - pad)
        crops[i] = cv2.resize(face, (LIP_SIZE, LIP_SIZE))
    return crops


# ---------------------------------------------------------------------------------------------- scoring


def sync_offset_report(
    video_features: Float[torch.Tensor, "n dim"], audio_features: Float[torch.Tensor, "n dim"], max_shift: int = 15
) -> dict:
    """LSE-D, LSE-C and the offset from per-window embeddings (the reference's calc_pdist and what follows).

    Video window i is compared with audio window i + j - max_shift for j = 0 .. 2 max_shift, the audio
    sequence being zero-padded at both ends; distances are torch's pairwise_distance (eps 1e-6 included).
    offset_frames = max_shift - best j: positive when the video lags the audio.
    """
    video = torch.as_tensor(video_features, dtype=torch.float32)
    audio = torch.as_tensor(audio_features, dtype=torch.float32)
    if video.ndim != 2 or video.shape != audio.shape or len(video) == 0:
        raise ValueError(
            f"need equally many video and audio features, (n, dim) each; got {tuple(video.shape)} and "
            f"{tuple(audio.shape)}"
        )
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    n = len(video)
    padded = torch.nn.functional.pad(audio, (0, 0, max_shift, max_shift))
    mean_distance = torch.stack(
        [torch.nn.functional.pairwise_distance(video, padded[j : j + n]).mean() for j in range(2 * max_shift + 1)]
    ).numpy()
    best = int(np.argmin(mean_distance))
    lse_d = float(mean_distance[best])
    return {
        "lse_c": float(np.median(mean_distance)) - lse_d,
        "lse_d": lse_d,
        "offset_frames": max_shift - best,
        "windows": n,
    }


def _device_of(network: torch.nn.Module) -> torch.device:
    return next(network.parameters()).device


def syncnet_features(
    network: SyncNet,
    crops: UInt8[np.ndarray, "n 224 224 3"],
    pcm: Float[np.ndarray, "samples"],
    windows: int,
    batch_size: int = 20,
) -> tuple[Float[torch.Tensor, "windows dim"], Float[torch.Tensor, "windows dim"]]:
    """Video and audio embeddings of the first `windows` windows: crops t..t+4 (RGB, fed as BGR) and MFCCs 4t..4t+19."""
    mfcc = torch.from_numpy(speech_mfcc(pcm, SYNCNET_SAMPLE_RATE).T.astype(np.float32))  # 13 x frames
    need_mfcc = MFCC_PER_FRAME * (windows - 1) + MFCC_WINDOW
    if mfcc.shape[1] < need_mfcc or len(crops) < windows + LIP_FRAMES - 1:
        raise ValueError(
            f"{windows} windows need {windows + LIP_FRAMES - 1} frames and {need_mfcc} MFCC frames, "
            f"got {len(crops)} and {mfcc.shape[1]}"
        )
    device = _device_of(network)
    video_out, audio_out = [], []
    network.eval()
    with torch.inference_mode():
        for start in range(0, windows, batch_size):
            starts = range(start, min(windows, start + batch_size))
            clips = np.stack([crops[t : t + LIP_FRAMES, :, :, ::-1] for t in starts])  # RGB -> BGR, b 5 h w 3
            clips = torch.from_numpy(np.ascontiguousarray(clips)).to(device).permute(0, 4, 1, 2, 3).float()
            cepstra = torch.stack([mfcc[:, MFCC_PER_FRAME * t : MFCC_PER_FRAME * t + MFCC_WINDOW] for t in starts])
            video_out.append(network.embed_lips(clips).cpu())
            audio_out.append(network.embed_audio(cepstra[:, None].to(device)).cpu())
    return torch.cat(video_out), torch.cat(audio_out)


def _usable_frames(n_video: int, pcm: np.ndarray) -> int:
    """Frames scored: the video's 25 fps frames, cut to the audio's (the reference's min_length)."""
    n_audio = len(pcm) // SAMPLES_PER_FRAME
    if n_video < MIN_FRAMES:
        raise ValueError(
            f"LSE-C/LSE-D need at least {MIN_FRAMES} frames at 25 fps (5-frame windows, 13-frame box smoothing), "
            f"got {n_video}"
        )
    if n_audio < n_video - 1:  # one frame of slack for rounding the audio length
        raise ValueError(
            f"the audio ({len(pcm) / SYNCNET_SAMPLE_RATE:.3f} s) is shorter than the video "
            f"({n_video / SYNCNET_FPS:.3f} s at 25 fps): every frame needs its 40 ms of speech"
        )
    return min(n_video, n_audio)


def syncnet_scores_from_crops(
    network: SyncNet,
    crops: UInt8[np.ndarray, "n h w 3"],
    audio: LoadedAudio,
    max_shift: int = 15,
    batch_size: int = 20,
) -> dict:
    """LSE-C / LSE-D of a 25 fps video that is already a face crop (RGB), e.g. syncnet_python's data/example.avi.

    Crops of another size are resized to 224 x 224 with cv2, as Wav2Lip's scoring script does.
    """
    import cv2

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (n, h, w, 3) RGB, got shape {crops.shape}")
    if crops.shape[1:3] != (LIP_SIZE, LIP_SIZE):
        crops = np.stack([cv2.resize(c, (LIP_SIZE, LIP_SIZE)) for c in crops])
    pcm = syncnet_pcm(audio)
    frames = _usable_frames(len(crops), pcm)
    windows = frames - LIP_FRAMES  # the reference's range(0, min_length - 5)
    video, sound = syncnet_features(network, crops.astype(np.uint8), pcm, windows, batch_size)
    return {**sync_offset_report(video, sound, max_shift), "frames": frames}


def syncnet_scores(
    network: SyncNet,
    frames: list[UInt8[np.ndarray, "h w 3"]],
    landmarks: Float[np.ndarray, "n 468 3"],
    audio: LoadedAudio,
    fps: float,
    max_shift: int = 15,
    batch_size: int = 20,
) -> dict:
    """LSE-C / LSE-D of a talking-head video: RGB frames, their face-mesh landmarks in pixels, the speech.

    Frames at another rate are picked at 25 fps by nearest time; the faces are cropped as run_pipeline.py
    crops them. Returns {"lse_c", "lse_d", "offset_frames", "frames" (25 fps frames scored), "windows"}.
    Raises ValueError for too few frames or audio shorter than the video.
    """
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 3 or landmarks.shape[-1] < 2:
        raise ValueError(f"landmarks must be (frames, points, 2 or 3) pixel coordinates, got {landmarks.shape}")
    if len(frames) != len(landmarks):
        raise ValueError(f"{len(frames)} frames but {len(landmarks)} landmark sets")
    picked = indices_at_25fps(len(frames), fps)
    pcm = syncnet_pcm(audio)
    n = _usable_frames(len(picked), pcm)
    windows = n - LIP_FRAMES
    crops = face_crops([frames[i] for i in picked], landmarks[picked], count=windows + LIP_FRAMES - 1)
    video, sound = syncnet_features(network, crops, pcm, windows, batch_size)
    return {**sync_offset_report(video, sound, max_shift), "frames": n}


def syncnet_metric(weights: Path | str | None = None, device: torch.device | str = "cpu"):
    """(SyncNet, None) when the weights file is on disk and fits, else (None, the reason it is skipped).

    Nothing is downloaded: without syncnet_v2.model, LSE-C/LSE-D are reported as skipped.
    """
    path = Path(weights).expanduser() if weights is not None else syncnet_weights_path()
    if not path.is_file():
        return None, (
            "skipped: LSE-C/LSE-D need the SyncNet weights syncnet_v2.model (about 52 MB, from "
            f"joonson/syncnet_python) at {path}, or a file named by --syncnet-weights / AENERF_SYNCNET_WEIGHTS; "
            "nothing is downloaded"
        )
    try:
        return load_syncnet(path, device), None
    except SyncNetWeightsError as exc:
        return None, f"skipped: LSE-C/LSE-D: {exc}"
