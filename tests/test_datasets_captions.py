"""Captioning datasets from tiny fake roots (Karpathy JSON, RSICD JSON, FlickrStyle10k text files)."""
import json
import pickle

import pytest
from PIL import Image

import data
from data import get_dataset, list_datasets
from data.captioning import read_image_list


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (9, 7), (10, 200, 30)).save(path)


def _karpathy(folder, images_dir, json_name):
    entries = []
    for i, split in enumerate(["train", "restval", "val", "test", "train"]):
        name = f"img{i}.jpg"
        _jpg(folder / images_dir / name)
        entries.append({"filename": name, "split": split,
                        "sentences": [{"raw": f"caption {i} a ", "tokens": []}, {"raw": f"second {i}", "tokens": []}]})
    (folder / json_name).write_text(json.dumps({"images": entries, "dataset": folder.name}))


def test_caption_datasets_registered():
    assert list_datasets("caption") == ["flickr10k_humor", "flickr10k_romantic", "flickr30k", "flickr8k", "rsicd"]
    with pytest.raises(ValueError, match="has no class names"):
        data.get_classnames("flickr8k")


@pytest.mark.parametrize("name,images_dir,json_name", [("flickr8k", "Images", "dataset_flickr8k.json"),
                                                       ("flickr30k", "flickr30k-images", "dataset_flickr30k.json"),
                                                       ("rsicd", "RSICD_images", "dataset_rsicd.json")])
def test_karpathy_json_splits(tmp_path, name, images_dir, json_name):
    _karpathy(tmp_path / name, images_dir, json_name)
    train = get_dataset(name, "train", root=tmp_path)
    test = get_dataset(name, "test", root=tmp_path)
    assert train.captions == ["caption 0 a", "caption 1 a", "caption 4 a"]  # train + restval, stripped
    assert test.captions == ["caption 3 a"]
    image, caption = train[1]
    assert image.mode == "RGB" and caption == "caption 1 a"
    assert train.all_captions[2] == ["caption 4 a", "second 4"]
    second = get_dataset(name, "val", root=tmp_path, caption_index=1)
    assert second.captions == ["second 2"]
    assert len(train.targets) == len(train) and train.classes == []
    with pytest.raises(ValueError, match="caption_index=2"):
        get_dataset(name, "val", root=tmp_path, caption_index=2)


def test_missing_annotation_file_names_it(tmp_path):
    (tmp_path / "flickr8k" / "Images").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="dataset_flickr8k.json"):
        get_dataset("flickr8k", root=tmp_path)


@pytest.mark.parametrize("name,sub,fname", [("flickr10k_humor", "humor", "funny_train.txt"),
                                            ("flickr10k_romantic", "romantic", "romantic_train.txt")])
def test_flickrstyle_text_files(tmp_path, name, sub, fname):
    folder = tmp_path / "flickrstyle10k"
    for i in range(3):
        _jpg(folder / "images" / f"{i}_x.jpg")
    (folder / sub).mkdir(parents=True)
    (folder / sub / fname).write_text("a dog ready to party\nthe sky longs for love\nthird one\n")
    (folder / "train_images.txt").write_text("0_x.jpg\n1_x.jpg\n2_x.jpg\n")
    ds = get_dataset(name, root=tmp_path)
    assert len(ds) == 3 and ds.captions[1] == "the sky longs for love"
    assert ds.paths[2].name == "2_x.jpg"
    (folder / "train_images.txt").write_text("0_x.jpg\n1_x.jpg\n")
    with pytest.raises(ValueError, match="3 captions but"):
        get_dataset(name, root=tmp_path)


def test_image_list_pickle_is_restricted(tmp_path):
    good = tmp_path / "train.p"
    good.write_bytes(pickle.dumps(["a.jpg", "b.jpg"], protocol=2))
    assert read_image_list(good) == ["a.jpg", "b.jpg"]
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps(pytest.raises))  # a global: must be refused
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_image_list(evil)
