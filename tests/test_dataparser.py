import json

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from aenerf_ns.audio.audio_features import compute_audio_features
from aenerf_ns.audio.audio_io import AudioError
from aenerf_ns.data.dataset_format import DatasetFormatError
from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS
from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset
from aenerf_ns.data.talking_head_metadata import METADATA_KEY, TalkingHeadMetadata, talking_head_metadata


def _outputs(data, split="train", **kw):
    return TalkingHeadDataParserConfig(data=data, **kw).setup().get_dataparser_outputs(split=split)


def test_splits_first_part_trains_last_part_evaluates(sample_dataset):
    train = _outputs(sample_dataset, "train")
    val = _outputs(sample_dataset, "val")
    assert talking_head_metadata(train.metadata).frame_indices.tolist() == list(range(37))
    assert talking_head_metadata(val.metadata).frame_indices.tolist() == list(range(37, 75))
    other = _outputs(sample_dataset, "train", train_fraction=0.8)
    assert len(other.image_filenames) == 60
    assert train.image_filenames[0].name == "00000.png" and val.image_filenames[0].name == "00037.png"


def test_cameras_carry_each_frames_audio_row_and_identity(sample_dataset):
    val = _outputs(sample_dataset, "val")
    feats = compute_audio_features(sample_dataset / "audio.wav", 25.0, 75)
    meta = talking_head_metadata(val.metadata)
    table = meta.audio_features
    assert table.shape == (75, 16 * 80) and meta.audio_feature_shape == (16, 80)
    np.testing.assert_allclose(table.numpy(), feats.reshape(75, -1), atol=1e-6)
    rows = val.cameras.metadata["audio_index"]
    assert rows.shape == (38, 1) and rows[5, 0] == 42
    # and the row reaches every ray of that camera
    rays = val.cameras.generate_rays(camera_indices=5, keep_shape=True)
    assert rays.metadata["audio_index"][10, 20, 0] == 42
    assert (rays.metadata["identity"] == 0).all()
    poses = json.loads((sample_dataset / "transforms.json").read_text())["frames"]
    np.testing.assert_allclose(
        val.cameras.camera_to_worlds[5].numpy(), np.array(poses[42]["transform_matrix"])[:3], atol=1e-6
    )


def test_metadata_describes_each_identitys_training_frames(sample_dataset):
    """What a model picks frames of its own from (AE-NeRF's references): paths, poses, intrinsics, audio rows."""
    val = talking_head_metadata(_outputs(sample_dataset, "val").metadata)
    (identity,) = val.identities  # the training part, whichever split the outputs are of
    assert identity.name == "synth00" and identity.audio_path == sample_dataset / "audio.wav"
    assert identity.train_frames.tolist() == list(range(37)) and identity.train_audio_rows.tolist() == list(range(37))
    assert [p.name for p in identity.train_image_paths] == [f"{i:05d}.png" for i in range(37)]
    doc = json.loads((sample_dataset / "transforms.json").read_text())
    np.testing.assert_allclose(
        identity.train_camera_to_worlds[20].numpy(), np.array(doc["frames"][20]["transform_matrix"])[:3], atol=1e-6
    )
    np.testing.assert_allclose(identity.intrinsics.numpy(), [doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"]], rtol=1e-6)
    assert val.fps == 25.0 and val.image_identity.eq(0).all() and len(val.parsing_filenames) == 38
    assert val.mouth_open is not None and val.mouth_open.shape == (38,)


def test_missing_metadata_is_reported_clearly(sample_dataset):
    outputs = _outputs(sample_dataset, "train")
    assert set(outputs.metadata) == {METADATA_KEY} and isinstance(outputs.metadata[METADATA_KEY], TalkingHeadMetadata)
    for metadata in (None, {}, {"fps": 25.0}):
        with pytest.raises(ValueError, match="built from the `talking-head` dataparser's outputs"):
            talking_head_metadata(metadata)
    outputs.metadata = {}
    with pytest.raises(ValueError, match="no talking-head metadata"):
        TalkingHeadDataset(outputs)


def test_folder_of_identities_trains_them_together(tmp_path):
    from aenerf_ns.aenerf.reference_frames import pick_reference_frames
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    write_synthetic_sample(tmp_path / "many", identities=2, seconds=1.2, resolution=24)
    train = _outputs(tmp_path / "many", "train")
    meta = talking_head_metadata(train.metadata)
    assert [identity.name for identity in meta.identities] == ["synth00", "synth01"]
    assert len(train.image_filenames) == 2 * 15
    ids = train.cameras.metadata["identity"][:, 0]
    assert ids[:15].eq(0).all() and ids[15:].eq(1).all()
    # audio rows index one joint table: identity 1 starts after identity 0's 30 frames
    assert train.cameras.metadata["audio_index"][15, 0] == 30
    assert meta.audio_features.shape[0] == 60 and meta.audio_segments.tolist() == [0] * 30 + [1] * 30
    assert meta.identities[1].train_audio_rows.tolist() == list(range(30, 45))
    refs = pick_reference_frames(meta, 2)
    assert refs.images.shape == (2, 2, 24, 24, 3)
    assert (refs.audio_rows[1] >= 30).all()
    ds = TalkingHeadDataset(train)
    plate1 = np.array(Image.open(tmp_path / "many" / "synth01" / "background.png").convert("RGB"))
    assert torch.equal(ds[20]["background"], torch.from_numpy(plate1))
    assert not torch.equal(ds[0]["background"], ds[20]["background"])


def test_identities_of_different_frame_sizes_are_refused(tmp_path):
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    write_synthetic_sample(tmp_path / "a", identities=1, seconds=1.0, resolution=24)
    write_synthetic_sample(tmp_path / "b", identities=1, seconds=1.0, resolution=32)
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "x").symlink_to(tmp_path / "a" / "synth00")
    (tmp_path / "both" / "y").symlink_to(tmp_path / "b" / "synth00")
    with pytest.raises(DatasetFormatError, match="need one frame size"):
        _outputs(tmp_path / "both")


def test_dataset_items_have_parsing_region_and_background(sample_dataset):
    ds = TalkingHeadDataset(_outputs(sample_dataset, "train"))
    item = ds[3]
    assert item["image"].shape == (48, 48, 3)
    assert item["parsing"].shape == (48, 48, 1) and item["parsing"].dtype == torch.uint8
    region = item["audio_region"][..., 0]
    expected = np.isin(np.array(Image.open(sample_dataset / "parsing/00003.png")), AUDIO_REGION_LABELS)
    assert torch.equal(region, torch.from_numpy(expected))
    assert 0 < region.float().mean() < 0.3
    assert item["background"].shape == (48, 48, 3)
    half = TalkingHeadDataset(_outputs(sample_dataset, "train"), scale_factor=0.5)[3]
    assert half["parsing"].shape == (24, 24, 1) and half["image"].shape == (24, 24, 3)


def _edit_transforms(root, fn):
    path = root / "transforms.json"
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("fps"), "missing the required key 'fps'"),
        (lambda d: d.update(fps=-25), "'fps' must be a positive number"),
        (lambda d: d["frames"][3].pop("transform_matrix"), "frame 3: no transform_matrix"),
        (
            lambda d: d["frames"][4].update(transform_matrix=[[1, 0, 0, 0]] * 3 + [[0, 0, 0, 1]]),
            "not a proper rotation",
        ),
        (lambda d: d["frames"][4].update(transform_matrix=[[1, 0, 0, 0]] * 4), "last row must be"),
        (lambda d: d["frames"][5].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]), "must be 4x4"),
        (lambda d: d["frames"][6].update(frame_index=9), "frame_index is 9, expected 6"),
        (lambda d: d["parsing_labels"].update(tattoo=9), r"unknown parsing labels \['tattoo'\]"),
        (lambda d: d["frames"][7].update(file_path="images/nope.png"), "image .*nope.png does not exist"),
        (lambda d: d.update(audio_path="nope.wav"), "audio file .*nope.wav does not exist"),
        (lambda d: d.update(frames=[]), "'frames' must be a non-empty list"),
    ],
)
def test_bad_transforms_are_reported(dataset_copy, damage, message):
    _edit_transforms(dataset_copy, damage)
    with pytest.raises(DatasetFormatError, match=message):
        _outputs(dataset_copy)


def test_missing_folder_and_file_and_corrupt_json(tmp_path, dataset_copy):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        _outputs(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="has no transforms.json"):
        _outputs(tmp_path / "empty")
    (dataset_copy / "transforms.json").write_text("{ not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        _outputs(dataset_copy)


def test_frame_count_must_match_image_folder(dataset_copy):
    Image.new("RGB", (48, 48)).save(dataset_copy / "images" / "99999.png")
    with pytest.raises(DatasetFormatError, match="images/ holds 76 image files but transforms.json lists 75 frames"):
        _outputs(dataset_copy)


def test_audio_shorter_than_video(dataset_copy):
    audio, sr = soundfile.read(dataset_copy / "audio.wav")
    soundfile.write(dataset_copy / "audio.wav", audio[: sr * 2], sr)
    with pytest.raises(AudioError, match=r"2.00 s long but the video has 75 frames \(3.00 s at 25 fps\)"):
        _outputs(dataset_copy)


def test_corrupt_audio(dataset_copy):
    (dataset_copy / "audio.wav").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AudioError, match="could not decode"):
        _outputs(dataset_copy)


def test_unknown_label_ids_in_a_parsing_map(dataset_copy):
    labels = np.array(Image.open(dataset_copy / "parsing/00002.png"))
    labels[0, 0] = 17
    Image.fromarray(labels).save(dataset_copy / "parsing/00002.png")
    ds = TalkingHeadDataset(_outputs(dataset_copy))
    with pytest.raises(DatasetFormatError, match=r"00002.png contains unknown label ids \[17\]"):
        ds[2]


def test_parsing_map_of_the_wrong_size(dataset_copy):
    Image.new("L", (40, 40)).save(dataset_copy / "parsing/00001.png")
    ds = TalkingHeadDataset(_outputs(dataset_copy))
    with pytest.raises(DatasetFormatError, match="00001.png is 40x40 but its frame"):
        ds[1]


def test_frame_of_the_wrong_size(dataset_copy):
    Image.new("RGB", (40, 40)).save(dataset_copy / "images/00004.png")
    ds = TalkingHeadDataset(_outputs(dataset_copy))
    with pytest.raises(DatasetFormatError, match="00004.png is 40x40 but transforms.json says 48x48"):
        ds[4]


def test_split_needs_frames_on_both_sides(dataset_copy):
    with pytest.raises(DatasetFormatError, match="cannot be split"):
        _outputs(dataset_copy, train_fraction=0.01)
    with pytest.raises(ValueError, match="between 0 and 1"):
        _outputs(dataset_copy, train_fraction=1.5)
