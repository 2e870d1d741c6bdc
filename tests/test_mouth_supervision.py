"""The mouth's own supervision: its opening read from the parsing maps, the audio code trained to predict it,
and rays drawn from the open mouth and its lips."""

import numpy as np
import pytest
import torch


def test_mouth_track_follows_the_synthetic_mouth(sample_dataset, tmp_path):
    """The opening read from the parsing maps moves with the renderer's own mouth opening, and is cached."""
    import json

    from aenerf_ns.data.mouth_track import mouth_track, opening_from_labels

    meta = json.loads((sample_dataset / "transforms.json").read_text())
    paths = [sample_dataset / f["parsing_path"] for f in meta["frames"]]
    truth = np.array([f["mouth_open"] for f in meta["frames"]])
    track = mouth_track(paths, cache_dir=tmp_path)
    assert track.shape == (len(paths),) and track.min() >= 0.0
    assert np.corrcoef(track, truth)[0, 1] > 0.8
    assert track[truth < 0.02].max(initial=0.0) < np.percentile(track[truth > 0.5], 50)
    (cached,) = tmp_path.glob("mouth_track_*.json")
    assert np.allclose(mouth_track(paths, cache_dir=tmp_path), track, atol=1e-6)
    cached.write_text(json.dumps([9.0] * len(paths)))  # the cache is what is read back
    assert mouth_track(paths, cache_dir=tmp_path)[0] == 9.0
    labels = np.zeros((10, 10), np.uint8)
    assert opening_from_labels(labels) == 0.0
    labels[:, :] = 4
    labels[:2, :2] = 5  # 4 mouth pixels in a 100-pixel face
    assert opening_from_labels(labels) == pytest.approx(0.2)


def test_mouth_target_trains_the_audio_code(sample_dataset, make_pipeline):
    """With the mouth-shape loss on, the forward pass predicts the batch's frames' openings and the loss's gradient
    reaches the audio encoder; a few steps on that loss alone make the codes predict the frames' openings; with it
    off, or outside training, there is no such output or loss."""
    pipeline = make_pipeline(sample_dataset, mouth_target_loss_mult=1.0)
    model = pipeline.model
    _, losses, _ = pipeline.get_train_loss_dict(0)
    assert "mouth_target_loss" in losses and torch.isfinite(losses["mouth_target_loss"])
    losses["mouth_target_loss"].backward()
    assert model.audio_encoder.head.weight.grad.abs().sum() > 0
    assert model.mouth_shape_head.readout.weight.grad.abs().sum() > 0

    rows = torch.nonzero(torch.isfinite(model.mouth_row_target))[:, 0]  # every training frame's audio row
    held_out = torch.nonzero(~torch.isfinite(model.mouth_row_target))[:, 0]
    assert len(rows) == len(pipeline.datamanager.train_dataset) and len(held_out) > 0
    metadata = {"audio_index": torch.cat([rows, held_out]).float()[:, None]}
    assert len(model.mouth_shape_outputs(metadata)["mouth_shape_target"]) == len(rows)  # held-out rows have none
    params = list(model.audio_encoder.parameters()) + list(model.mouth_shape_head.parameters())
    if model.audio_smoother is not None:
        params += list(model.audio_smoother.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)

    def loss() -> torch.Tensor:
        return model.mouth_target_losses(model.mouth_shape_outputs(metadata))["mouth_target_loss"]

    before = float(loss().detach())
    for _ in range(60):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert float(loss().detach()) < 0.5 * before
    outputs = model.mouth_shape_outputs(metadata)
    predicted, truth = outputs["mouth_shape_pred"].detach().numpy(), outputs["mouth_shape_target"].numpy()
    assert np.corrcoef(predicted, truth)[0, 1] > 0.8
    model.eval()
    assert model.mouth_shape_outputs(metadata) == {}

    off = make_pipeline(sample_dataset, mouth_target_loss_mult=0.0)
    assert off.model.mouth_shape_head is None
    assert "mouth_target_loss" not in off.get_train_loss_dict(0)[1]


def test_region_sampler_draws_the_open_mouth(sample_dataset):
    """`mouth_fraction` of the rays land in the open mouth and its lips, inside the audio region; frames with a
    shut mouth give their share to the rest of the audio region."""
    from aenerf_ns.aenerf.region_sampler import RegionPixelSampler, RegionPixelSamplerConfig

    n, h, w = 4, 32, 32
    region = torch.zeros(n, h, w, dtype=torch.bool)
    region[:, 16:28, 8:24] = True
    mouth = torch.zeros_like(region)
    mouth[1, 18:22, 12:20] = True  # only frame 1 has an open mouth
    sampler = RegionPixelSampler(RegionPixelSamplerConfig(audio_region_fraction=0.3, mouth_fraction=0.15))
    sampler.generator = torch.Generator().manual_seed(0)
    idx, _ = sampler.sample_regions(region, 2000, mouth)
    in_mouth = mouth[idx[:, 0], idx[:, 1], idx[:, 2]].float().mean()
    in_region = region[idx[:, 0], idx[:, 1], idx[:, 2]].float().mean()
    uniform_share = mouth.sum() / region.sum()  # what the region draw alone would give the mouth
    assert in_mouth.item() == pytest.approx(0.15 + 0.15 * uniform_share.item(), abs=0.03)
    assert in_region.item() == pytest.approx(0.3, abs=0.01)
    shut, _ = sampler.sample_regions(region, 2000, torch.zeros_like(mouth))
    assert region[shut[:, 0], shut[:, 1], shut[:, 2]].float().mean().item() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="mouth_fraction"):
        RegionPixelSampler(RegionPixelSamplerConfig(audio_region_fraction=0.2, mouth_fraction=0.3))


def test_dataset_mouth_area_is_the_open_mouth_and_its_lips(sample_dataset):
    from aenerf_ns.data.parsing_labels import MOUTH_INTERIOR
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset

    dataset = TalkingHeadDataset(TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs())
    areas = [dataset[i] for i in range(len(dataset))]
    open_frames = [a for a in areas if (a["parsing"] == MOUTH_INTERIOR).any()]
    shut_frames = [a for a in areas if not (a["parsing"] == MOUTH_INTERIOR).any()]
    assert open_frames and shut_frames
    for a in open_frames:
        interior = a["parsing"][..., 0] == MOUTH_INTERIOR
        area = a["mouth_area"][..., 0]
        assert area[interior].all() and area.sum() > interior.sum()  # the lips around it too
        assert not (area & ~a["audio_region"][..., 0]).any()
    assert all(not a["mouth_area"].any() for a in shut_frames)


@pytest.mark.parametrize("preset", ["aenerf-tiny", "aenerf-gs-tiny"])
def test_presets_tell_the_fields_the_mouth_opening(preset, sample_dataset):
    """The aenerf and aenerf-gs presets, as registered, condition on the mouth opening: a training step's loss
    reaches the audio path through the method's own forward pass (rays or whole frames), and the codes
    the fields see end with the frame's true opening; the audio code carries no opening target of its own."""
    import copy

    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[preset])
    config.pipeline.datamanager.data = sample_dataset
    if hasattr(config.pipeline.datamanager, "train_num_rays_per_batch"):
        config.pipeline.datamanager.train_num_rays_per_batch = 64
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    model = pipeline.model
    assert model.opening_predictor is not None and model.mouth_shape_head is None
    _, losses, _ = pipeline.get_train_loss_dict(0)
    assert "mouth_target_loss" not in losses
    sum(losses.values()).backward()
    # the audio path gets gradient at once (aenerf's fields), or through the deformation's zero-initialised
    # output layer, which passes gradient on to the code from the next step (aenerf-gs)
    reader = model.audio_encoder.head if preset == "aenerf-tiny" else model.audio_deformation.net[-1]
    assert reader.weight.grad.abs().sum() > 0
    rows = torch.nonzero(torch.isfinite(model.mouth_row_target))[:, 0][:5]
    codes = model.audio_codes({"audio_index": rows.float()[:, None]}, len(rows))
    assert torch.equal(codes[:, -1], model.mouth_row_target[rows])
