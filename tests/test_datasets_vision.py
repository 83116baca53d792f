"""EMMS classification datasets built from tiny fake roots in the torchvision layouts."""
import json
import pickle

import numpy as np
import pytest
from PIL import Image

import data
from data import get_classnames, get_dataset, list_datasets
from data.vision import align_classes

EMMS_SIZES = {"aircraft": 100, "caltech101": 102, "cars": 196, "cifar10": 10, "cifar100": 100, "dtd": 47,
              "flowers": 102, "food": 101, "pets": 37, "sun397": 397, "voc2007": 20}


def _jpg(path, value=128, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)


def test_the_eleven_emms_datasets_are_registered_with_reference_classnames():
    assert sorted(EMMS_SIZES) == list_datasets("classification")
    reference = json.load(open(data.registry._CLASSNAMES_DIR / "emms_classification.json"))["datasets"]
    for name, n in EMMS_SIZES.items():
        assert get_classnames(name) == reference[name]
        assert len(get_classnames(name)) == n


@pytest.mark.parametrize("name", sorted(EMMS_SIZES))
def test_missing_root_error_names_the_path(name, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path))
    spec = data.get_dataset_spec(name)
    with pytest.raises(data.DatasetNotFoundError) as err:
        get_dataset(name)
    assert str(tmp_path / spec.subdir) in str(err.value)
    assert "download" in str(err.value).lower() or "obtain" in str(err.value).lower()


def test_no_root_at_all_mentions_the_environment_variable(monkeypatch):
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="MODEL_SELECTOR_DATA"):
        get_dataset("food")


def test_align_classes_by_normalised_name():
    perm = align_classes(["B c", "a-1"], ["A_1", "b_c"])
    assert perm.tolist() == [1, 0]
    assert align_classes(["aquarium_fish", "x"], ["aquarium_fih", "x"], {"aquarium_fih": "aquarium_fish"}).tolist() == [0, 1]
    with pytest.raises(ValueError, match="do not match"):
        align_classes(["a", "b"], ["a", "c"])


def test_cifar10_from_fake_pickles(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files cannot match the md5s
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = get_classnames("cifar10")
    batches = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = [(i + j) % 10 for j in range(4)]
        raw = rng.integers(0, 256, size=(4, 3 * 32 * 32), dtype=np.uint8)
        batches[fname] = (raw, labels)
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": raw, "labels": labels}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names}, fh)
    train = get_dataset("cifar10", "train", root=tmp_path)
    test = get_dataset("cifar10", "test", root=tmp_path)
    assert len(train) == 20 and len(test) == 4
    assert test.targets.tolist() == batches["test_batch"][1]
    image, label = test[2]
    assert image.size == (32, 32) and image.mode == "RGB" and label == batches["test_batch"][1][2]
    expected = batches["test_batch"][0][2].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(image), expected)


def _make_dtd(tmp_path, classes):
    base = tmp_path / "dtd" / "dtd"
    lines = {"train": [], "val": [], "test": []}
    for c in classes:
        for k, split in enumerate(["train", "val", "test", "test"]):
            rel = f"{c}/{c}_{k:04d}.jpg"
            _jpg(base / "images" / rel)
            lines[split].append(rel)
    (base / "labels").mkdir(parents=True)
    for split, rows in lines.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
    return base


def test_dtd_from_fake_root_train_is_train_plus_val(tmp_path):
    classes = get_classnames("dtd")
    _make_dtd(tmp_path, classes)
    train = get_dataset("dtd", "train", root=tmp_path)
    only = get_dataset("dtd", "train_only", root=tmp_path)
    test = get_dataset("dtd", "test", root=tmp_path)
    assert (len(train), len(only), len(test)) == (2 * 47, 47, 2 * 47)
    assert np.bincount(train.targets).tolist() == [2] * 47
    # label c is the folder of class name c
    for i in (0, 33, len(test) - 1):
        assert test.paths[i].parent.name == test.classes[test.targets[i]]
    assert train[5][0].mode == "RGB"


def test_food101_labels_follow_emms_order(tmp_path):
    classes = get_classnames("food")
    base = tmp_path / "food-101"
    meta = {"train": {}, "test": {}}
    for c in reversed(classes):  # JSON key order must not matter
        for split in meta:
            meta[split][c] = [f"{c}/{split}1"]
            _jpg(base / "images" / c / f"{split}1.jpg")
    (base / "meta").mkdir(parents=True)
    for split, content in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(content))
    ds = get_dataset("food", "test", root=tmp_path)
    assert len(ds) == 101
    for i in range(0, 101, 10):
        assert ds.paths[i].parent.name == classes[ds.targets[i]]


def test_caltech101_keeps_background_and_splits_30_per_class(tmp_path):
    classes = get_classnames("caltech101")
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    for c in classes:
        for k in range(32):
            (base / c).mkdir(parents=True, exist_ok=True)
            (base / c / f"image_{k:04d}.jpg").write_bytes(b"")  # listing only; not opened
    train = get_dataset("caltech101", "train", root=tmp_path)
    test = get_dataset("caltech101", "test", root=tmp_path)
    assert len(train) == 102 * 30 and len(test) == 102 * 2
    assert train.classes[0] == "BACKGROUND_Google"
    assert not set(map(str, train.paths)) & set(map(str, test.paths))
    again = get_dataset("caltech101", "test", root=tmp_path)
    assert again.paths == test.paths
    smaller = get_dataset("caltech101", "train", root=tmp_path, n_train_per_class=5)
    assert len(smaller) == 102 * 5


def test_sun397_uses_the_official_partition(tmp_path):
    classes = get_classnames("sun397")
    base = tmp_path / "SUN397"
    base.mkdir()
    (base / "ClassName.txt").write_text("".join(f"/{c[0]}/{c}\n" for c in classes))
    (base / "Partitions").mkdir()
    picks = [0, 5, 396]
    train_rows = [f"/{classes[i][0]}/{classes[i]}/sun_a{i}.jpg" for i in picks]
    (base / "Partitions" / "Training_01.txt").write_text("\n".join(train_rows) + "\n")
    (base / "Partitions" / "Testing_01.txt").write_text(train_rows[0].replace("sun_a", "sun_b") + "\n")
    ds = get_dataset("sun397", "train", root=tmp_path)
    assert ds.targets.tolist() == picks
    assert ds.paths[2] == base / classes[396][0] / classes[396] / "sun_a396.jpg"
    (base / "Partitions" / "Testing_01.txt").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="Testing_01.txt"):
        get_dataset("sun397", "test", root=tmp_path)


def _voc_xml(objects):
    body = "".join(f"<object><name>{n}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                   f"<ymax>{y1}</ymax></bndbox></object>" for n, (x0, y0, x1, y1) in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def test_voc2007_single_label_rules_and_multi_hot(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2007"
    anns = {"000001": [("dog", (1, 1, 10, 10)), ("person", (1, 1, 100, 100))],
            "000002": [("cat", (5, 5, 50, 50))]}
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    for stem, objs in anns.items():
        (base / "Annotations" / f"{stem}.xml").write_text(_voc_xml(objs))
        _jpg(base / "JPEGImages" / f"{stem}.jpg")
    for split in ("train", "val", "trainval", "test"):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("000001\n000002\n")
    largest = get_dataset("voc2007", "train", root=tmp_path)
    first = get_dataset("voc2007", "train", root=tmp_path, voc_label="first")
    names = largest.classes
    assert [names[t] for t in largest.targets] == ["person", "cat"]
    assert [names[t] for t in first.targets] == ["dog", "cat"]
    assert largest.multi_hot.shape == (2, 20)
    assert {names[j] for j in np.flatnonzero(largest.multi_hot[0])} == {"dog", "person"}
    with pytest.raises(ValueError, match="voc_label"):
        get_dataset("voc2007", "train", root=tmp_path, voc_label="random")
