"""The weight-free lip-sync measure and `aenerf-sync-check`, on synthetic speech with its known mouth opening."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media_files import encode_mp4

FPS = 25.0
SECONDS = 6.0
SIZE = 64
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def speech():
    """Synthetic speech, its true mouth opening per frame, and the frame times."""
    from aenerf_ns.audio.audio_io import LoadedAudio
    from aenerf_ns.synthetic.synthetic_head import make_identity
    from aenerf_ns.synthetic.synthetic_speech import opening_per_frame, synthesize_speech

    person = make_identity(0)
    n = int(SECONDS * FPS)
    track = synthesize_speech(SECONDS, f0=person.f0, seed=person.seed)
    audio = LoadedAudio(track.audio, track.sample_rate, track.sample_rate, 1, Path("speech.wav"))
    opening = opening_per_frame(track.opening, track.sample_rate, FPS, n).astype(np.float64)
    return {"audio": audio, "opening": opening, "times": (np.arange(n) + 0.5) / FPS, "person": person}


@pytest.fixture(scope="module")
def talking_mp4(speech, tmp_path_factory):
    """The synthetic head speaking (64 px), as an mp4 with its speech, the speech as a wav, and a silent mp4."""
    from aenerf_ns.audio.audio_io import write_wav
    from aenerf_ns.synthetic.synthetic_head import StaticCamera, head_pose_track, render_background, render_frame

    root = tmp_path_factory.mktemp("sync_check")
    person, camera = speech["person"], StaticCamera.square(SIZE)
    n = len(speech["opening"])
    poses, plate = head_pose_track(n, FPS, person.seed), render_background(person, SIZE, SIZE)
    frames = [render_frame(person, camera, poses[i], float(speech["opening"][i]), plate)[0] for i in range(n)]
    wav = root / "speech.wav"
    write_wav(wav, speech["audio"].samples, speech["audio"].sample_rate)
    return {
        "video": encode_mp4(frames, FPS, root / "talking.mp4", wav),
        "silent": encode_mp4(frames[:30], FPS, root / "silent.mp4", None),
        "empty": encode_mp4([plate] * n, FPS, root / "empty.mp4", wav),
        "wav": wav,
    }


def test_own_audio_beats_shifted_video_and_unrelated_audio(speech):
    from aenerf_ns.evaluation.sync_metrics import lip_sync_report, sync_validation

    opening, audio, times = speech["opening"], speech["audio"], speech["times"]
    check = sync_validation(opening, audio, times, FPS, shifts=(3, 4, 5), shuffles=10, seed=0)
    assert set(check["shifted"]) == {"-3", "+3", "-4", "+4", "-5", "+5"}
    assert check["correlation"] > 0.7, check
    assert check["correlation"] > check["max_shifted"] + 0.3, check
    assert len(check["shuffled"]) == 10 and abs(check["shuffled_mean"]) < 0.15, check
    assert check["passes"] and check["best_offset_frames"] in (-1, 0) and check["frames"] == len(opening)

    report = lip_sync_report(opening, audio, times, FPS)
    assert set(report) >= {"correlation", "best_offset_frames", "best_correlation", "frames"}
    assert report["correlation"] == pytest.approx(check["correlation"])
    # a mouth moving 4 frames after its sound: found at +4, and offset 0 no longer passes
    late = np.concatenate([np.full(4, opening[0]), opening[:-4]])
    assert lip_sync_report(late, audio, times, FPS)["best_offset_frames"] == 4
    assert not sync_validation(late, audio, times, FPS)["passes"]
    # another stretch of speech: no agreement
    other = sync_validation(np.roll(opening, 60), audio, times, FPS)
    assert abs(other["correlation"]) < 0.3 and not other["passes"]


def test_missing_faces_and_short_clips(speech):
    from aenerf_ns.evaluation.sync_metrics import lip_sync_report, min_sync_frames, syllable_band, sync_validation

    opening, audio, times = speech["opening"].copy(), speech["audio"], speech["times"]
    full = lip_sync_report(opening, audio, times, FPS)
    opening[40:43] = np.nan  # a short gap is interpolated
    opening[80:100] = np.nan  # a long one is left out
    opening[:2] = np.nan  # as are frames before the first face
    report = lip_sync_report(opening, audio, times, FPS)
    assert report["frames"] == len(opening) - 20 - 2
    assert np.isfinite(report["correlation"]) and report["correlation"] > 0.6
    assert abs(report["correlation"] - full["correlation"]) < 0.15
    assert np.isnan(syllable_band(opening, FPS)[80:100]).all() and np.isfinite(syllable_band(opening, FPS)[40:43]).all()

    none = lip_sync_report(np.full(len(times), np.nan), audio, times, FPS)
    assert none["frames"] == 0 and none["best_offset_frames"] is None and np.isnan(none["correlation"])
    few = min_sync_frames(FPS) - 1
    short = lip_sync_report(speech["opening"][:few], audio, times[:few], FPS)
    assert short["best_offset_frames"] is None and np.isnan(short["best_correlation"]) and short["frames"] == few
    check = sync_validation(speech["opening"][:few], audio, times[:few], FPS)
    assert not check["passes"] and np.isnan(check["correlation"]) and check["shuffled"] == []
    beyond = lip_sync_report(speech["opening"], audio, times + SECONDS - 2.0, FPS)  # the audio ends 2 s early
    assert beyond["frames"] <= 2 * FPS
    with pytest.raises(ValueError, match="frame times"):
        lip_sync_report(speech["opening"], audio, times[:-1], FPS)


def test_command_end_to_end(talking_mp4, tmp_path):
    out = tmp_path / "report" / "check.json"
    cmd = [str(VENV_BIN / "aenerf-sync-check"), "--video", str(talking_mp4["video"]), "--output", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "own audio, offset 0" in run.stdout and "passes" in run.stdout
    result = json.loads(out.read_text())
    check = result["validation"]
    assert result["frames"] == result["face_frames"] == len(result["mouth_opening"]) == int(SECONDS * FPS)
    assert check["passes"] and check["correlation"] > check["max_shifted"] + 0.2, check
    assert check["correlation"] > 0.5 and abs(check["shuffled_mean"]) < 0.2 and check["best_offset_frames"] in (-1, 0)


def test_segment_with_separate_audio(talking_mp4, tmp_path):
    from aenerf_ns.scripts.sync_check import SyncCheckArgs, main

    out = tmp_path / "segment.json"
    args = SyncCheckArgs(video=talking_mp4["video"], audio=talking_mp4["wav"], start=1.0, seconds=4.0, output=out)
    result = main(args)
    assert result["start_s"] == pytest.approx(1.0) and result["frames"] == 100 and out.is_file()
    assert result["validation"]["correlation"] > result["validation"]["max_shifted"] + 0.2
    assert "syncnet_v2.model" in result["lse_c"], "no weights on disk: the skip says where to put them"


def test_syncnet_scores_when_weights_are_given(talking_mp4, tmp_path):
    """With a weights file (random weights here), the check adds LSE-C, LSE-D and SyncNet's offset."""
    import torch

    from aenerf_ns.evaluation.syncnet_network import SyncNet

    torch.manual_seed(0)
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), weights)
    out = tmp_path / "lse.json"
    cmd = [str(VENV_BIN / "aenerf-sync-check"), "--video", str(talking_mp4["video"]), "--seconds", "2"]
    run = subprocess.run(
        [*cmd, "--syncnet-weights", str(weights), "--output", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["lse_d"] > 0 and result["lse_c"] >= 0 and abs(result["syncnet_offset_frames"]) <= 15
    assert f"LSE-C {result['lse_c']:.3f}" in run.stdout


def test_clear_errors(talking_mp4, tmp_path):
    from aenerf_ns.scripts.sync_check import SyncCheckArgs, SyncCheckError, main

    def command(*extra: str) -> subprocess.CompletedProcess:
        cmd = [str(VENV_BIN / "aenerf-sync-check"), "--output", str(tmp_path / "x.json"), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    run = command("--video", str(talking_mp4["silent"]))
    assert run.returncode == 1 and "aenerf-sync-check: error:" in run.stderr and "has no audio track" in run.stderr
    assert "Traceback" not in run.stderr
    run = command("--video", str(tmp_path / "nope.mp4"))
    assert run.returncode == 1 and "does not exist" in run.stderr
    with pytest.raises(SyncCheckError, match="no face found"):
        main(SyncCheckArgs(video=talking_mp4["empty"], output=tmp_path / "empty.json"))
    with pytest.raises(SyncCheckError, match="past the end"):
        main(SyncCheckArgs(video=talking_mp4["video"], start=60.0, output=tmp_path / "late.json"))


def test_pre_cropped_frames_go_to_syncnet_as_they_are(tmp_path, monkeypatch):
    """--pre-cropped scores the decoded frames with `syncnet_scores_from_crops` (no face mesh); it needs weights."""
    import torch
    from media_files import face_crop_clip

    import aenerf_ns.evaluation.video_sync_check as sync_check
    from aenerf_ns.audio.audio_io import load_audio
    from aenerf_ns.evaluation.syncnet_network import SyncNet, load_syncnet
    from aenerf_ns.evaluation.syncnet_score import syncnet_scores_from_crops
    from aenerf_ns.preprocess.video_frames import resampled_frames

    video = face_crop_clip(tmp_path / "crops.mp4", seconds=1.2)
    torch.manual_seed(0)
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), weights)

    def no_face_mesh(*args, **kwargs):
        raise AssertionError("--pre-cropped must not track faces")

    monkeypatch.setattr(sync_check, "track_landmarks", no_face_mesh)
    args = sync_check.SyncCheckArgs(video=video, pre_cropped=True, syncnet_weights=weights, output=tmp_path / "r.json")
    result = sync_check.run_sync_check(args)
    frames = np.stack([image for _, image in resampled_frames(video, 25.0, 30)])
    expected = syncnet_scores_from_crops(load_syncnet(weights), frames, load_audio(video))
    assert result["frames"] == 30 and result["syncnet_frames"] == expected["frames"]
    assert result["lse_c"] == pytest.approx(expected["lse_c"], abs=1e-5) and result["lse_c"] >= 0
    assert result["lse_d"] == pytest.approx(expected["lse_d"], abs=1e-5) and result["lse_d"] > 0
    assert result["syncnet_offset_frames"] == expected["offset_frames"]
    assert json.loads((tmp_path / "r.json").read_text())["lse_d"] == pytest.approx(result["lse_d"])

    # a segment: the audio starts with its first frame
    later = sync_check.run_sync_check(
        sync_check.SyncCheckArgs(video=video, pre_cropped=True, syncnet_weights=weights, start=0.4, output=args.output)
    )
    segment_audio = load_audio(video)
    segment_audio.samples = segment_audio.samples[int(0.4 * segment_audio.sample_rate) :]
    assert later["frames"] == 20
    assert later["lse_d"] == pytest.approx(
        syncnet_scores_from_crops(load_syncnet(weights), frames[10:], segment_audio)["lse_d"], abs=1e-5
    )

    missing = sync_check.SyncCheckArgs(video=video, pre_cropped=True, syncnet_weights=tmp_path / "none.model")
    with pytest.raises(sync_check.SyncCheckError, match="--pre-cropped scores with SyncNet only.*none.model"):
        sync_check.run_sync_check(missing)
