"""The mouth opening as a number the fields are told: its predictor from audio, the landmark track it is fitted
to, and the model option that passes it to the fields (`opening_condition`)."""

import shutil

import numpy as np
import pytest
import torch


def _linear_data(n: int, d: int, noise: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    y = x @ w / d**0.5 + noise * torch.randn(n, generator=g)
    return x, (y - y.mean()) / y.std()


@pytest.mark.parametrize("dim", [20, 400])  # more frames than features, and fewer (the dual system)
def test_opening_predictor_predicts_unseen_frames_at_unit_spread(dim):
    """Fitted on half the rows of a noisy linear relation, the predictor's track follows the other half, and each
    clip of the track is centred and scaled so that its unseen rows have unit spread whatever the predictor's
    shrinkage; a clip without unseen rows is scaled by the cross-validation predictions' spread."""
    from aenerf_ns.audio.opening_predictor import OpeningPredictor

    x, y = _linear_data(300, dim, noise=0.3)
    seen = torch.arange(300) < 150
    predictor = OpeningPredictor(dim)
    predictor.fit(x[seen], y[seen], x, seen)
    assert 0.1 < predictor.cv_spread < 1.0  # shrunk towards the mean
    segments = torch.cat([torch.zeros(100), torch.ones(200)]).long()
    track = predictor.track(x, segments, seen)
    assert np.corrcoef(track[150:], y[150:])[0, 1] > (0.9 if dim == 20 else 0.5)
    assert track[segments == 0].mean().abs() < 1e-4 and track[segments == 1].mean().abs() < 1e-4
    assert track[150:].std(unbiased=False) == pytest.approx(1.0, abs=1e-4)
    raw = predictor.raw(x[:100])
    assert track[:100].std(unbiased=False) == pytest.approx(
        float(raw.std(unbiased=False)) / predictor.cv_spread, rel=1e-4
    )
    new_track = predictor.track(x[150:], torch.zeros(150, dtype=torch.long))  # a new track: every row unseen
    assert new_track.std(unbiased=False) == pytest.approx(1.0, abs=1e-4)
    whole = predictor.track(x, torch.zeros(300, dtype=torch.long), seen)  # the scaling loose rows get
    assert torch.allclose(predictor.rows_from_windows(x[:7]), whole[:7], atol=1e-4)


def test_kernel_is_chosen_by_held_out_blocks():
    """Without noise the smoothest kernel and the weakest ridge predict a linear relation's held-out blocks best
    (nearly at unit spread); with noise a stronger ridge wins; too few frames to hold any out: the fallback kernel."""
    from aenerf_ns.audio.opening_predictor import FALLBACK, KERNEL_WIDTHS, RIDGE_STRENGTHS, Kernel, choose_kernel

    for seed in range(3):
        x, y = _linear_data(200, 20, noise=0.0, seed=seed)
        kernel, spread = choose_kernel(x.double(), y.double())
        assert kernel == Kernel(KERNEL_WIDTHS[0], RIDGE_STRENGTHS[0]) and spread == pytest.approx(1.0, abs=0.15)
        x, y = _linear_data(200, 20, noise=1.0, seed=seed)
        kernel, spread = choose_kernel(x.double(), y.double())
        assert kernel.strength > RIDGE_STRENGTHS[0] and spread < 0.5
    x, y = _linear_data(6, 20, noise=0.0)
    kernel, spread = choose_kernel(x.double(), y.double())
    assert kernel == FALLBACK and spread != spread  # nan: nothing held out


def test_opening_predictor_follows_a_relation_no_linear_fit_can():
    """An opening that grows with the square of a feature direction (open for either sign): a linear fit's
    predictions are uncorrelated with it; the predictor's follow it on unseen rows."""
    from aenerf_ns.audio.opening_predictor import OpeningPredictor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = x[:, 0] ** 2 + 0.1 * torch.randn(400, generator=g)
    y = (y - y.mean()) / y.std()
    seen = torch.arange(400) < 250
    predictor = OpeningPredictor(8)
    predictor.fit(x[seen], y[seen], x, seen)
    track = predictor.track(x, torch.zeros(400, dtype=torch.long), seen)
    linear = torch.linalg.lstsq(torch.cat([x[seen], torch.ones(250, 1)], 1), y[seen, None]).solution
    linear_track = torch.cat([x[~seen], torch.ones(150, 1)], 1) @ linear
    assert abs(np.corrcoef(linear_track[:, 0], y[~seen])[0, 1]) < 0.3
    assert np.corrcoef(track[~seen], y[~seen])[0, 1] > 0.8


def test_landmark_mouth_track_reads_the_lip_gap_and_fills_lost_frames():
    from aenerf_ns.data.mouth_track import landmark_mouth_track
    from aenerf_ns.faces.face_tracking import LEFT_EYE_OUTER, LOWER_LIP_INNER, RIGHT_EYE_OUTER

    lm = np.zeros((3, 468, 3))
    lm[:, RIGHT_EYE_OUTER, 0], lm[:, LEFT_EYE_OUTER, 0] = 10.0, 30.0  # 20 px between the eye corners
    lm[0, LOWER_LIP_INNER, 1], lm[2, LOWER_LIP_INNER, 1] = 2.0, 6.0
    lm[1] = np.nan  # no face found in the middle frame
    assert np.allclose(landmark_mouth_track(lm), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no frame"):
        landmark_mouth_track(np.full((2, 468, 3), np.nan))


def test_dataparser_reads_the_mouth_from_landmarks_when_the_clip_has_them(sample_dataset, tmp_path):
    from aenerf_ns.data.dataset_format import DatasetFormatError
    from aenerf_ns.data.mouth_track import landmark_mouth_track
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.data.talking_head_metadata import talking_head_metadata

    data = tmp_path / "clip"
    shutil.copytree(sample_dataset, data)

    def opening(source: str = "auto") -> torch.Tensor:
        parser = TalkingHeadDataParserConfig(data=data, mouth_track=source).setup()
        return talking_head_metadata(parser.get_dataparser_outputs("train").metadata).identities[0].train_mouth_opening

    from_parsing = opening()  # no landmarks.npy: the parsing maps
    with pytest.raises(DatasetFormatError, match="landmarks.npy does not exist"):
        opening("landmarks")
    frames = len(list((data / "images").glob("*.png")))
    landmarks = np.random.default_rng(0).normal(size=(frames, 468, 3))
    np.save(data / "landmarks.npy", landmarks)
    from_landmarks = opening()
    assert torch.allclose(from_landmarks, torch.from_numpy(landmark_mouth_track(landmarks)[: len(from_landmarks)]))
    assert torch.allclose(opening("parsing"), from_parsing)
    np.save(data / "landmarks.npy", landmarks[:-1])
    with pytest.raises(DatasetFormatError, match="one face mesh per frame"):
        opening()


def test_opening_condition_tells_the_fields_the_true_opening_in_training_and_the_predicted_one_after(
    sample_dataset, make_pipeline
):
    """With `opening_condition`, the codes the fields see carry one more number: a training frame's true
    (standardised) opening in training, the audio's predicted opening in evaluation, which follows the truth on
    the training frames and has unit spread on the held-out ones; a new audio track gets its own predictions, again
    at unit spread."""
    pipeline = make_pipeline(sample_dataset, opening_condition=True)
    model = pipeline.model
    code_dim = model.config.audio_code_dim
    rows = torch.nonzero(torch.isfinite(model.mouth_row_target))[:, 0]
    metadata = {"audio_index": rows.float()[:, None]}
    codes = model.audio_codes(metadata, len(rows))
    assert codes.shape == (len(rows), code_dim + 1) and model.audio_dim == code_dim + 1
    assert torch.allclose(codes[:, -1], model.mouth_row_target[rows])
    _, losses, _ = pipeline.get_train_loss_dict(0)
    sum(losses.values()).backward()
    assert torch.isfinite(sum(losses.values()))

    model.eval()
    predicted = model.audio_codes(metadata, len(rows))[:, -1]
    assert torch.allclose(predicted, model.opening_track[rows])
    assert np.corrcoef(predicted.detach(), model.mouth_row_target[rows])[0, 1] > 0.5
    held_out = ~torch.isfinite(model.mouth_row_target)
    assert model.opening_track[held_out].std(unbiased=False) == pytest.approx(1.0, abs=1e-3)
    assert model.audio_codes(None, 3).shape == (3, code_dim + 1)  # a viewer camera: the clip-average audio

    new = model.audio_table[:40].reshape(40, *model.kwargs["metadata"]["talking_head"].audio_feature_shape)
    model.set_audio_track(torch.flip(new, [0]))
    assert model.opening_track.shape == (40,)
    assert model.opening_track.std(unbiased=False) == pytest.approx(1.0, abs=1e-3)

    plain = make_pipeline(sample_dataset, opening_condition=False).model
    assert plain.opening_predictor is None and plain.audio_dim == code_dim


def test_calibration_picks_frames_across_the_range_of_true_openings():
    from aenerf_ns.engine.opening_calibration import calibration_picks

    openings = torch.tensor([0.5, float("nan"), -2.0, 3.0, 0.0, 1.0, float("nan"), -1.0])
    picks = calibration_picks(openings, count=3)
    assert sorted(openings[picks].tolist()) == [-2.0, 0.0, 3.0]  # most closed, middle, most open
    assert sorted(calibration_picks(openings, count=20).tolist()) == [0, 2, 3, 4, 5, 7]  # every known frame once
    assert len(calibration_picks(torch.full((4,), float("nan")))) == 0


def test_gain_is_the_truths_spread_over_the_renders_clipped():
    from aenerf_ns.engine.opening_calibration import GAIN_RANGE, MIN_TRACKED_FRAMES, gain_from_openings

    truth = np.linspace(0.02, 0.12, 16)
    assert gain_from_openings(0.05 + 0.5 * (truth - 0.07), truth) == pytest.approx(2.0)
    assert gain_from_openings(0.05 + 1.25 * (truth - 0.07), truth) == pytest.approx(0.8)
    assert gain_from_openings(0.05 + 0.01 * (truth - 0.07), truth) == GAIN_RANGE[1]  # a mouth that barely moves
    lost = np.full(16, np.nan)
    lost[: MIN_TRACKED_FRAMES - 1] = truth[: MIN_TRACKED_FRAMES - 1]
    assert gain_from_openings(lost, truth) is None  # too few frames read
    assert gain_from_openings(np.full(16, 0.05), truth) is None  # a render that does not move


def test_calibration_tells_training_frames_their_truth_and_sets_the_gain_on_predictions(
    sample_dataset, make_pipeline, monkeypatch
):
    """The calibration renders training frames told their true openings (not the predictions), reads both with the
    tracker, and sets the gain; rendering then tells predicted openings times the gain, training the truth alone."""
    import aenerf_ns.engine.opening_calibration as calibration

    pipeline = make_pipeline(sample_dataset, opening_condition=True)
    model = pipeline.model
    told = []
    encode = model.audio_codes

    def recording(metadata, count):
        codes = encode(metadata, count)
        told.append((metadata["audio_index"].reshape(-1)[0].round().long(), codes[0, -1].item()))
        return codes

    monkeypatch.setattr(model, "audio_codes", recording)
    monkeypatch.setattr(model, "ray_audio_codes", lambda bundle: recording(bundle.metadata, bundle.shape[0]))

    def tracked(renders, truths, device):  # a render that opens half as far as the truth
        truth = np.linspace(0.02, 0.12, len(truths))
        return 0.07 + 0.5 * (truth - 0.07), truth

    monkeypatch.setattr(calibration, "mouth_openings", tracked)
    gain = calibration.calibrate_opening_gain(pipeline, count=8)
    assert gain == pytest.approx(2.0) and float(model.opening_gain) == pytest.approx(2.0)
    assert len(told) >= 8 and not model.telling_true_openings and model.training
    for row, value in told:
        assert value == pytest.approx(float(model.mouth_row_target[row]), abs=1e-5)

    rows = torch.nonzero(torch.isfinite(model.mouth_row_target))[:, 0]
    metadata = {"audio_index": rows.float()[:, None]}
    assert torch.allclose(encode(metadata, len(rows))[:, -1], model.mouth_row_target[rows])  # training: the truth
    model.eval()
    assert torch.allclose(encode(metadata, len(rows))[:, -1], 2.0 * model.opening_track[rows])
    assert "opening_gain" in model.state_dict()  # saved with the weights


@pytest.mark.parametrize("preset", ["aenerf-tiny", "aenerf-gs-tiny"])
def test_ns_train_saves_the_opening_gain_it_measured_on_training_frames(method_run, preset):
    """The trainer measures the gain before its last checkpoint (a 2-step run draws far too small a mouth change,
    so it is not the initial 1) and the checkpoint carries it."""
    from aenerf_ns.engine.opening_calibration import GAIN_RANGE

    config = method_run(preset)
    (checkpoint,) = (config.parent / "nerfstudio_models").glob("step-*.ckpt")
    gain = float(torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]["_model.opening_gain"])
    assert gain != 1.0 and GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]
