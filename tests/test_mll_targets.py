"""Full-scale target loaders on tiny fake roots: every image gets its own class name.

Each fake image is a solid colour whose red channel is the index, in ``mll_datasets.json``, of the
class it was written for; a loader is right when ``label == red`` for every image. The fake files
are written in an order unrelated to the class list (reversed), and the folder targets use
normalised folder names (case, underscores), so a positional or alphabetical assumption fails.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from mll import targets as T
from mll.tasks import TargetTask

NAMES = T.mll_datasets()["classnames"]


def _png(path, idx, size=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (idx, 17, 99)).save(path, format="PNG")   # PNG bytes whatever the suffix


def _check_every_label(name, root, n_expected=None):
    task = T.full_target(name, root=root)
    assert isinstance(task, TargetTask) and task.classnames == tuple(NAMES[name])
    labels = task.labels()
    images = task.images()
    assert len(images) == len(labels) == (n_expected or len(NAMES[name]))
    for im, y in zip(images, labels):
        assert im.mode == "RGB"
        assert task.classnames[y] == NAMES[name][im.getpixel((0, 0))[0]]
    assert sorted(set(labels.tolist())) == list(range(len(NAMES[name])))
    return task


# -- class-named folders -----------------------------------------------------------------------------
def _folder_variant(name: str, i: int) -> str:
    """A normalised spelling of a class name as a folder name (varied per class)."""
    return [name, name.lower().replace(" ", "_"), name.replace("_", "").replace(" ", ""), name.upper()][i % 4]


@pytest.mark.parametrize("target", ["FER2013", "Flowers102", "GTSRB", "clevr_closest_object_distance", "dmlab"])
def test_test_folder_targets_map_labels_by_folder_name(tmp_path, target):
    classes = NAMES[target]
    for i in reversed(range(len(classes))):
        _png(tmp_path / target / "test" / _folder_variant(classes[i], i) / f"{i}.png", i)
    _check_every_label(target, tmp_path)


def test_fer2013_common_release_folders(tmp_path):
    # the common image-folder release of FER2013; torchvision's order (angry, disgust, fear, happy, sad,
    # surprise, neutral) differs from the list: labels must follow the folder names
    for folder in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        _png(tmp_path / "FER2013" / "test" / folder / "a.png", NAMES["FER2013"].index(folder))
    task = _check_every_label("FER2013", tmp_path)
    assert task.classnames[:7] == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.mark.parametrize("target", ["UCF101", "resisc45"])
def test_whole_dataset_targets_read_every_class_folder(tmp_path, target):
    classes = NAMES[target]
    for i in reversed(range(len(classes))):
        folder = classes[i].replace("_", "") if target == "UCF101" else classes[i]     # UCF101's CamelCase
        _png(tmp_path / target / folder / f"{i}_a.png", i)
        _png(tmp_path / target / folder / f"{i}_b.png", i)
    _check_every_label(target, tmp_path, n_expected=2 * len(classes))


def test_folder_mismatch_names_unmatched_folders_and_classes(tmp_path):
    classes = NAMES["FER2013"]
    for i, c in enumerate(classes[:-1]):
        _png(tmp_path / "FER2013" / "test" / c / "a.png", i)
    _png(tmp_path / "FER2013" / "test" / "contempt" / "a.png", 0)
    with pytest.raises(ValueError, match=r"folders without a class: \['contempt'\].*classes without a folder: \['surprise'\]"):
        T.full_target("FER2013", root=tmp_path)


def test_class_key_matching():
    assert T.class_key("Apply_Eye_Makeup") == T.class_key("ApplyEyeMakeup") == T.class_key("apply eye makeup")
    assert T.class_key("Right-of-way at the next intersection") == T.class_key("right_of_way_at_the_next_intersection")
    for name, classes in NAMES.items():            # every list can be matched by folder name
        assert len({T.class_key(c) for c in classes}) == len(classes), name
    with pytest.raises(ValueError, match="cannot be told apart"):
        T.match_class_folders(["a"], ["Stop", "stop"], "x")
    with pytest.raises(ValueError, match="both match"):
        T.match_class_folders(["Stop", "stop"], ["stop"], "x")


def test_old_positional_reading_would_mislabel_flowers():
    # the bug: torchvision's Flowers102 label 0 is "pink primrose"; the list is alphabetical
    assert NAMES["Flowers102"][0] != "pink primrose" and "pink primrose" in NAMES["Flowers102"]
    assert isinstance(T.TARGET_LOADERS["Flowers102"], T.FolderLoader)
    assert isinstance(T.TARGET_LOADERS["GTSRB"], T.FolderLoader)
    assert isinstance(T.TARGET_LOADERS["FER2013"], T.FolderLoader)


# -- torchvision layouts -----------------------------------------------------------------------------
@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks the md5 of the real CIFAR / STL10 files; fake files only need to exist."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(tvd.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)


def _cifar(root, names):
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    idx = list(reversed(range(100)))
    data = np.stack([np.concatenate([np.full(1024, i, np.uint8), np.full(2048, 5, np.uint8)]) for i in idx])
    for split in ("test", "train"):
        with open(base / split, "wb") as fh:
            pickle.dump({"data": data, "fine_labels": idx}, fh)
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": names}, fh)


def test_cifar100(tmp_path, no_md5):
    _cifar(tmp_path, NAMES["CIFAR100"])
    _check_every_label("CIFAR100", tmp_path)


def test_torchvision_order_mismatch_is_an_error(tmp_path, no_md5):
    names = list(NAMES["CIFAR100"])
    names[0], names[1] = names[1], names[0]
    _cifar(tmp_path, names)
    with pytest.raises(ValueError, match="label order differs .* at 2 of 100 positions, first at 0"):
        T.full_target("CIFAR100", root=tmp_path)


def test_country211_reads_the_valid_split_by_iso_code(tmp_path):
    codes = json.loads((T.RESOURCES / "country211_codes.json").read_text())["codes"]
    assert list(codes) == NAMES["Country211"] and list(codes.values()) == sorted(codes.values())
    for i in reversed(range(211)):
        _png(tmp_path / "country211" / "valid" / codes[NAMES["Country211"][i]] / "x.png", i)
    _check_every_label("Country211", tmp_path)
    assert T.TARGET_LOADERS["Country211"].kwargs == {"split": "valid"}


def test_dtd_reads_the_val_split(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    lines = []
    for i in reversed(range(47)):
        c = NAMES["DTD"][i]
        _png(base / "images" / c / f"{c}_0001.jpg", i)
        lines.append(f"{c}/{c}_0001.jpg")
    (base / "labels").mkdir(parents=True)
    (base / "labels" / "val1.txt").write_text("\n".join(lines) + "\n")
    _check_every_label("DTD", tmp_path)


def test_food101(tmp_path):
    base = tmp_path / "food-101"
    meta = {}
    for i in reversed(range(101)):
        c = NAMES["Food101"][i]
        _png(base / "images" / c / "1.jpg", i)
        meta[c] = [f"{c}/1"]
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "test.json").write_text(json.dumps(meta))
    _check_every_label("Food101", tmp_path)


def _idx(path, array, magic):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist(tmp_path):
    labels = np.array(list(reversed(range(10))))
    images = np.stack([np.full((28, 28), y, np.uint8) for y in labels])
    raw = tmp_path / "MNIST" / "raw"
    for prefix in ("t10k", "train"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", images, 0x803)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 0x801)
    _check_every_label("MNIST", tmp_path)


def test_oxford_pets(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    lines = []
    for i in reversed(range(37)):
        raw = NAMES["OxfordIIITPet"][i].replace(" ", "_")
        _png(base / "images" / f"{raw}_1.jpg", i)
        lines.append(f"{raw}_1 {i + 1} 1 1")
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    _check_every_label("OxfordIIITPet", tmp_path)


def test_rendered_sst2(tmp_path):
    for i, c in reversed(list(enumerate(NAMES["RenderedSST2"]))):
        _png(tmp_path / "rendered-sst2" / "test" / c / f"{i}.png", i)
    _check_every_label("RenderedSST2", tmp_path)


def test_stl10(tmp_path, no_md5):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    idx = np.array(list(reversed(range(10))))
    x = np.stack([np.stack([np.full((96, 96), i, np.uint8), np.zeros((96, 96), np.uint8), np.zeros((96, 96), np.uint8)])
                  for i in idx])
    (base / "test_X.bin").write_bytes(x.tobytes())
    (base / "test_y.bin").write_bytes((idx + 1).astype(np.uint8).tobytes())
    (base / "class_names.txt").write_text("\n".join(NAMES["STL10"]) + "\n")
    _check_every_label("STL10", tmp_path)


def test_stanford_cars(tmp_path):
    sio = pytest.importorskip("scipy.io")
    base = tmp_path / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(NAMES["StanfordCars"], dtype=object)})
    annos = np.zeros(196, dtype=[("fname", "O"), ("class", "O")])
    for j, i in enumerate(reversed(range(196))):
        _png(base / "cars_test" / f"{j:05d}.jpg", i)
        annos[j] = (f"{j:05d}.jpg", i + 1)
    sio.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": annos})
    _check_every_label("StanfordCars", tmp_path)


def test_pcam(tmp_path):
    h5py = pytest.importorskip("h5py")
    base = tmp_path / "pcam"
    base.mkdir()
    y = np.array([1, 0, 1], dtype=np.uint8)
    x = np.stack([np.full((96, 96, 3), v, np.uint8) for v in y])
    with h5py.File(base / "camelyonpatch_level_2_split_test_x.h5", "w") as fh:
        fh["x"] = x
    with h5py.File(base / "camelyonpatch_level_2_split_test_y.h5", "w") as fh:
        fh["y"] = y.reshape(-1, 1, 1, 1)
    _check_every_label("PCAM", tmp_path, n_expected=3)


def test_pcam_order_is_the_documented_one_and_h5py_is_reported():
    assert tuple(NAMES["PCAM"]) == T.PCAM_CLASS_ORDER
    import importlib.util
    missing = T.missing_target_paths(["PCAM"], "/nonexistent")
    assert any("camelyonpatch_level_2_split_test_y.h5" in m for m in missing)
    assert any("'h5py'" in m for m in missing) == (importlib.util.find_spec("h5py") is None)


def test_every_target_has_a_loader_and_missing_paths_are_listed(tmp_path):
    assert sorted(T.TARGET_LOADERS) == sorted(T.FULL_TARGETS) == sorted(NAMES)
    missing = T.missing_target_paths(T.FULL_TARGETS, tmp_path)
    for expected in ("country211/valid", "dtd/dtd/labels/val1.txt", "FER2013/test", "UCF101", "resisc45",
                     "stl10_binary/test_X.bin", "stanford_cars/devkit/cars_meta.mat"):
        assert any(m.endswith(str(tmp_path / expected)) for m in missing), expected
    with pytest.raises(FileNotFoundError, match="FER2013/test"):
        T.full_target("FER2013", root=tmp_path)
    with pytest.raises(KeyError, match="unknown target"):
        T.full_target("ImageNet", root=tmp_path)


def test_per_class_subsampling_is_seeded(tmp_path):
    for i, c in enumerate(NAMES["dmlab"]):
        for j in range(4):
            _png(tmp_path / "dmlab" / "test" / c / f"{j}.png", i)
    a = T.full_target("dmlab", root=tmp_path, per_class=2, random_state=1)
    b = T.full_target("dmlab", root=tmp_path, per_class=2, random_state=1)
    assert a.indices == b.indices and len(a.indices) == 12
    assert np.bincount(a.labels()).tolist() == [2] * 6


# -- full-scale preflight, caption files, text encoder -----------------------------------------------
def _full_argv(tmp_path, *extra):
    for d in ("s", "t", "w", "c"):
        (tmp_path / d).mkdir(exist_ok=True)
    return ["--scale", "full", "--sample-root", str(tmp_path / "s"), "--target-root", str(tmp_path / "t"),
            "--weights-dir", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path / "out"), "--no-progress", *extra]


def test_preflight_lists_every_missing_path_at_once(tmp_path):
    import mll_benchmark
    from mll.vlm import openclip_hub
    with pytest.raises(FileNotFoundError) as err:
        mll_benchmark.main(_full_argv(tmp_path, "--captions-dir", str(tmp_path / "c")))
    msg = str(err.value)
    assert "nothing was started" in msg
    for sub in ("imagenet/val", "imagenetv2-matched-frequency-format-val", "imagenet-sketch/sketch", "imagenet-a",
                "imagenet-r"):
        assert str(tmp_path / "s" / sub) in msg, sub
    for line in T.missing_target_paths(T.FULL_TARGETS, tmp_path / "t"):
        assert line in msg
    rows = openclip_hub()
    assert len(rows) == 49
    for r in rows:
        assert str(tmp_path / "w" / r["name"] / r["pretrained"]) in msg
    for t in T.FULL_TARGETS:
        assert str(tmp_path / "c" / f"{t}.json") in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()      # no work was done


def test_preflight_rejects_unknown_names_first(tmp_path):
    import mll_benchmark
    with pytest.raises(ValueError, match="unknown text encoder 'nope'.*minilm"):
        mll_benchmark.main(_full_argv(tmp_path, "--text-encoder", "nope"))
    with pytest.raises(ValueError, match=r"unknown targets \['ImageNet'\]"):
        mll_benchmark.main(_full_argv(tmp_path, "--targets", "ImageNet"))
    with pytest.raises(ValueError, match=r"unknown open_clip models \['conse-lite0-names'\]"):
        mll_benchmark.main(_full_argv(tmp_path, "--models", "conse-lite0-names"))
    with pytest.raises(ValueError, match="unknown text encoder 'nope'"):       # offline too, before any work
        mll_benchmark.main(["--text-encoder", "nope", "--out-dir", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "k")])
    assert not (tmp_path / "o").exists() and not (tmp_path / "k").exists()


def test_caption_dir_keys_must_equal_the_class_list(tmp_path):
    from mll.tasks import load_caption_dir
    fer = NAMES["FER2013"]
    (tmp_path / "FER2013.json").write_text(json.dumps({c: [f"a photo of a {c} face."] for c in fer}))
    dmlab = {c: ["x"] for c in NAMES["dmlab"][1:]} | {"far away": ["y"]}
    (tmp_path / "dmlab.json").write_text(json.dumps(dmlab))
    out = load_caption_dir(tmp_path, {"FER2013": fer})
    assert list(out["FER2013"]) == fer and out["FER2013"]["sad"] == ["a photo of a sad face."]
    with pytest.raises(ValueError, match=r"missing classes \['near and distant shapes'\], keys that are no class \['far away'\]"):
        load_caption_dir(tmp_path, {"dmlab": NAMES["dmlab"]})
    with pytest.raises(FileNotFoundError, match="GTSRB.json"):
        load_caption_dir(tmp_path, {"FER2013": fer, "GTSRB": NAMES["GTSRB"]})
    (tmp_path / "dmlab.json").write_text(json.dumps({c: [] for c in NAMES["dmlab"]}))
    with pytest.raises(ValueError, match="without a non-empty list"):
        load_caption_dir(tmp_path, {"dmlab": NAMES["dmlab"]})


def test_build_full_benchmark_runs_the_preflight_first(tmp_path):
    from mll.benchmark import build_full_benchmark
    with pytest.raises(FileNotFoundError, match="missing paths") as err:
        build_full_benchmark(sample_root=tmp_path, target_root=tmp_path, weights_dir=tmp_path,
                             models=["ViT-B-32@openai"], targets=["GTSRB"], cache_dir=tmp_path / "cache")
    assert str(tmp_path / "ViT-B-32" / "openai") in str(err.value) and str(tmp_path / "GTSRB" / "test") in str(err.value)
    assert not (tmp_path / "cache").exists()
