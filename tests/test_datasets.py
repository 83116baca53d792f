"""Registry, offline datasets and deterministic index selection (real data, no network)."""
import numpy as np
import pytest
from PIL import Image

import data
from data import get_classnames, get_dataset, list_datasets, stratified_split, subsample_per_class
from data.offline import cut_patches, read_idx

OFFLINE_EXPECTED = {  # name: (n classes, train size, test size, native image side)
    "fashion_mnist": (10, 60000, 10000, 28),
    "mnist": (10, 3500, 1500, 28),
    "digits": (10, 1258, 539, 8),
    "textures": (3, 384, 384, 32),
    "lfw_faces": (2, 140, 60, 25),
}


def test_list_datasets_kinds():
    assert set(OFFLINE_EXPECTED) <= set(list_datasets("offline"))
    assert list_datasets() == sorted(list_datasets())
    for kind in data.KINDS:
        assert set(list_datasets(kind)) <= set(list_datasets())
    with pytest.raises(ValueError, match="unknown dataset kind"):
        list_datasets("video")


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet9'"):
        get_dataset("imagenet9")
    with pytest.raises(ValueError, match="no split 'val'"):
        get_dataset("digits", split="val")


@pytest.mark.parametrize("name", sorted(OFFLINE_EXPECTED))
def test_offline_dataset_real_data(name):
    n_classes, n_train, n_test, side = OFFLINE_EXPECTED[name]
    train, test = get_dataset(name, "train"), get_dataset(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    for ds in (train, test):
        assert ds.classes == get_classnames(name)
        assert len(ds.classes) == n_classes
        assert ds.targets.dtype == np.int64
        # every class present in both splits, roughly balanced
        counts = np.bincount(ds.targets, minlength=n_classes)
        assert counts.min() > 0 and counts.max() <= 1.1 * counts.min() + 1
        image, label = ds[len(ds) // 2]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (side, side)
        assert isinstance(label, int) and label == ds.targets[len(ds) // 2]
        pixels = np.asarray(image)
        assert pixels.std() > 0, "a real image is not constant"
        assert np.array_equal(pixels[..., 0], pixels[..., 1]), "grayscale sources are replicated to RGB"


def test_offline_images_are_not_shared_between_splits():
    """Stratified splits are disjoint: no image of the train split reappears in the test split."""
    for name in ("mnist", "digits", "lfw_faces", "textures"):
        train, test = get_dataset(name, "train"), get_dataset(name, "test")
        seen = {train.images[i].tobytes() for i in range(len(train))}
        dup = sum(test.images[i].tobytes() in seen for i in range(len(test)))
        # the 8x8 digits contain a few genuinely identical images in the source; the others none
        assert dup <= (5 if name == "digits" else 0), name


def test_transform_is_applied():
    ds = get_dataset("digits", "test", transform=lambda im: np.asarray(im, dtype=np.float32) / 255.0)
    x, y = ds[0]
    assert x.shape == (8, 8, 3) and x.dtype == np.float32 and 0.0 <= x.min() <= x.max() <= 1.0


def test_fashion_mnist_labels_match_known_values():
    """The first training images of Fashion-MNIST are an ankle boot (9) and a T-shirt (0)."""
    ds = get_dataset("fashion_mnist", "train")
    assert ds.targets[:4].tolist() == [9, 0, 0, 3]
    assert ds.classes[9] == "Ankle boot"


def test_lfw_faces_classes_follow_documented_order():
    ds = get_dataset("lfw_faces", "train")
    assert ds.classes == ["face", "non-face"]


def test_offline_dataset_ignores_the_data_root(tmp_path):
    """One data root can serve a mix of datasets: offline sets do not read it."""
    with_root = get_dataset("lfw_faces", root=tmp_path / "not-there")
    assert np.array_equal(with_root.targets, get_dataset("lfw_faces").targets)


def test_fashion_mnist_missing_idx_dir_names_path(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=str(tmp_path / "train-images-idx3-ubyte")):
        get_dataset("fashion_mnist", idx_dir=tmp_path)


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array(arr.shape, dtype=">u4").tobytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(header + arr.tobytes())
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_cut_patches_are_non_overlapping_tiles():
    image = np.arange(8 * 12, dtype=np.int64).reshape(8, 12)
    patches = cut_patches(image, 4, slice(0, 8))
    assert patches.shape == (6, 4, 4)
    assert np.array_equal(patches[1], image[0:4, 4:8]) and np.array_equal(patches[3], image[4:8, 0:4])
    assert np.unique(patches).size == image.size  # every pixel exactly once


def test_textures_train_test_come_from_disjoint_halves():
    a = get_dataset("textures", "train", patch_size=64)
    b = get_dataset("textures", "test", patch_size=64)
    assert len(a) == len(b) == 3 * 4 * 8


# ---------------------------------------------------------------------------------------------------
# subsample_per_class / stratified_split
# ---------------------------------------------------------------------------------------------------
def test_subsample_per_class_deterministic_sorted_capped():
    targets = np.repeat(np.arange(4), [10, 3, 7, 1])
    before = targets.copy()
    idx = subsample_per_class(targets, 5, random_state=3)
    assert np.array_equal(targets, before)  # caller array untouched
    assert np.array_equal(idx, np.sort(idx)) and idx.dtype == np.int64
    assert np.bincount(targets[idx]).tolist() == [5, 3, 5, 1]
    assert np.array_equal(idx, subsample_per_class(targets, 5, random_state=3))
    assert not np.array_equal(idx, subsample_per_class(targets, 5, random_state=4))
    assert len(set(idx.tolist())) == idx.size


def test_subsample_per_class_accepts_dataset():
    ds = get_dataset("lfw_faces", "train")
    idx = subsample_per_class(ds, 10)
    assert np.bincount(ds.targets[idx]).tolist() == [10, 10]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_subsample_per_class_rejects_bad_n(bad):
    with pytest.raises(ValueError, match="n_per_class"):
        subsample_per_class([0, 1, 1], bad)


def test_stratified_split_partitions_and_keeps_proportions():
    targets = np.repeat(np.arange(3), [100, 50, 10])
    train, test = stratified_split(targets, 0.2, random_state=0)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(targets.size))
    assert np.bincount(targets[test]).tolist() == [20, 10, 2]
    again = stratified_split(targets, 0.2, random_state=0)
    assert np.array_equal(again[1], test)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(targets, 1.0)
