"""The lip measures every evaluation shares: LMD, mouth opening, weight-free sync and SyncNet, from pictures."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aenerf_ns.evaluation.landmark_distance import MOUTH_LANDMARKS, landmark_distance
from aenerf_ns.faces.face_tracking import LEFT_EYE_OUTER, RIGHT_EYE_OUTER


def _face(eye_distance: float) -> np.ndarray:
    lm = np.zeros((468, 3))
    lm[RIGHT_EYE_OUTER, :2] = (0.0, 0.0)
    lm[LEFT_EYE_OUTER, :2] = (eye_distance, 0.0)
    return lm


def test_landmark_distance_is_the_mean_mouth_landmark_distance():
    truth = np.stack([_face(40.0), _face(40.0), _face(40.0)])
    render = truth.copy()
    render[0, MOUTH_LANDMARKS, 0] += 3.0  # frame 0: every lip point 3 px to the right
    render[1, MOUTH_LANDMARKS[:20], 1] += 8.0  # frame 1: the outer contour 8 px down, inner one exact
    render[1, :, 2] += 100.0  # depth is not compared
    truth[2] = np.nan  # no face in the reference frame: not counted
    report = landmark_distance(render, truth, frame_height=128)
    assert report["frames"] == 2
    per_frame = (3.0 + 8.0 * 20 / len(MOUTH_LANDMARKS)) / 2  # pixels of a 128 px frame
    assert report["lmd"] == pytest.approx(per_frame * 512 / 128)
    assert report["lmd_eye_units"] == pytest.approx(per_frame / 40.0)
    assert landmark_distance(truth, truth, 128)["lmd"] == 0.0
    assert landmark_distance(render, np.full_like(truth, np.nan), 128)["frames"] == 0
    with pytest.raises(ValueError, match="differ in shape"):
        landmark_distance(render[:2], truth, 128)


def _synthetic_clip(n: int, size: int = 64):
    """Rendered synthetic frames speaking, the same poses with the mouth held shut, and their speech."""
    from aenerf_ns.audio.audio_io import LoadedAudio
    from aenerf_ns.synthetic.synthetic_dataset import opening_per_frame
    from aenerf_ns.synthetic.synthetic_head import (
        StaticCamera,
        head_pose_track,
        make_identity,
        render_background,
        render_frame,
    )
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    person, camera = make_identity(0), StaticCamera.square(size)
    speech = synthesize_speech(n / 25, f0=person.f0, seed=person.seed)
    opening = opening_per_frame(speech.opening, speech.sample_rate, 25, n)
    poses, plate = head_pose_track(n, 25, person.seed), render_background(person, size, size)
    truth = [render_frame(person, camera, poses[i], float(opening[i]), plate)[0] for i in range(n)]
    closed = [render_frame(person, camera, poses[i], float(opening.min()), plate)[0] for i in range(n)]
    audio = LoadedAudio(speech.audio.astype(np.float32), speech.sample_rate, speech.sample_rate, 1, Path("s.wav"))
    return truth, closed, audio


def test_lip_scores_on_rendered_frames(tmp_path, monkeypatch):
    """Through the shared entry point: the truth against itself has LMD 0 and a perfect opening match, a
    shut mouth a larger LMD; sync reports come for the render and the truth; SyncNet is skipped with the
    weights' location when absent and gives numbers with (random) weights on disk."""
    from aenerf_ns.evaluation.lip_scores import lip_scores
    from aenerf_ns.evaluation.syncnet_network import SyncNet
    from aenerf_ns.evaluation.syncnet_score import syncnet_metric

    n, fps = 40, 25.0
    truth, closed, audio = _synthetic_clip(n)
    times = (np.arange(n) + 0.5) / fps
    missing = tmp_path / "absent" / "syncnet_v2.model"
    monkeypatch.setenv("AENERF_SYNCNET_WEIGHTS", str(missing))
    syncnet, skip = syncnet_metric()
    assert syncnet is None and skip.startswith("skipped:") and str(missing) in skip

    same = lip_scores(truth, truth, audio, times, fps, syncnet=None, syncnet_skip=skip)
    assert same["lmd"] == 0.0 and same["lmd_frames"] == n
    assert same["mouth_opening"]["correlation"] == pytest.approx(1.0)
    assert same["lse_c"] == skip and same["lse_d"] == skip and same["lse_c_ground_truth"] == skip
    assert same["av_sync"]["correlation"] == pytest.approx(same["av_sync_ground_truth"]["correlation"])
    truth_sync = same["av_sync_ground_truth"]  # the measure finds the true mouth in sync with its speech
    assert truth_sync["best_offset_frames"] in (-1, 0) and truth_sync["correlation"] > 0.6, truth_sync
    shut = lip_scores(closed, truth, audio, times, fps, syncnet=None, syncnet_skip=skip)
    assert shut["lmd"] > 1.0 and shut["lmd_eye_units"] > 0.01

    torch.manual_seed(0)
    weights = tmp_path / "random_syncnet.model"
    torch.save(SyncNet().state_dict(), weights)
    syncnet, skip = syncnet_metric(weights)
    assert skip is None
    scored = lip_scores(closed, truth, audio, times, fps, syncnet=syncnet)
    for key in ("lse_c", "lse_d", "lse_c_ground_truth", "lse_d_ground_truth"):
        assert isinstance(scored[key], float) and np.isfinite(scored[key]), key
    assert scored["lse_d"] >= 0 and scored["lse_c"] >= 0

    cross = lip_scores(truth, truth, audio, times, fps, ground_truth=False, syncnet=None, syncnet_skip="skipped: x")
    assert cross["lmd"].startswith("skipped: cross-driven") and "av_sync_ground_truth" not in cross
    assert isinstance(cross["av_sync"], dict)
    silent = lip_scores(truth, truth, None, times, fps, audio_skip="skipped: no audio here")
    assert silent["av_sync"] == silent["lse_c_ground_truth"] == "skipped: no audio here"


def test_lip_gap_is_in_pixels_at_512_px_and_pictures_show_the_widest_openings(tmp_path):
    """The mouth pictures' units and picks: the lip gap in pixels of a 512 px frame whatever the frame size,
    truth and a shut render compared in those units, and close-ups cut at the truth's widest openings with
    the truth above the render."""
    from PIL import Image

    from aenerf_ns.evaluation.lip_scores import lip_scores
    from aenerf_ns.evaluation.mouth_pictures import (
        CLOSEUP_SIZE,
        lip_gap_px,
        mouth_closeup_strip,
        plot_lip_gap,
        widest_frames,
    )
    from aenerf_ns.faces.face_tracking import LOWER_LIP_INNER, UPPER_LIP_INNER

    lm = np.zeros((2, 468, 3))
    lm[:, LOWER_LIP_INNER, 1] = (3.0, 6.0)  # a 3 px and a 6 px gap in 128 px frames
    assert lip_gap_px(lm, frame_height=128) == pytest.approx([12.0, 24.0])
    assert lip_gap_px(lm, frame_height=512) == pytest.approx([3.0, 6.0])
    assert lm[0, UPPER_LIP_INNER, 1] == 0.0
    assert widest_frames(np.array([0.0, 5.0, 9.0, 1.0, 8.0, np.nan, 7.0]), 2, min_spacing=2) == [2, 4]

    n, fps = 40, 25.0
    truth, closed, audio = _synthetic_clip(n)
    times = (np.arange(n) + 0.5) / fps
    shut = lip_scores(closed, truth, None, times, fps)
    opening = shut["mouth_opening"]
    assert opening["truth_gap_p90_px"] > 2.0 * max(opening["rendered_gap_p90_px"], 1.0), opening
    truth_lm = shut["_reference_landmarks"]
    strip = mouth_closeup_strip(closed, truth, truth_lm, count=3)
    assert strip.shape == (2 * CLOSEUP_SIZE + 4, 3 * CLOSEUP_SIZE + 2 * 4, 3)
    # the truth row shows open mouths (dark interiors), the shut render's row does not
    top, bottom = strip[:CLOSEUP_SIZE].astype(float), strip[-CLOSEUP_SIZE:].astype(float)
    assert (top.sum(-1) < 150).mean() > (bottom.sum(-1) < 150).mean()
    gap = lip_gap_px(truth_lm, truth[0].shape[0])
    assert min(gap[widest_frames(gap, 3)]) >= np.nanpercentile(gap, 75)

    plot_lip_gap(tmp_path / "gap.png", times, {"ground truth": gap, "rendered": gap / 3}, None)
    assert Image.open(tmp_path / "gap.png").size[0] > 500
