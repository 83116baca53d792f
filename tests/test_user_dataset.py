"""data.user_dataset: CSV parsing, class names, unreadable images and the content fingerprint."""
import csv
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from data.user_dataset import UnreadableImageWarning, load_user_dataset


def _png(path, value=0, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, dtype=np.uint8)).save(path)
    return path


def _folder(root, classes=("cat", "dog"), per_class=2):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", value=10 * c + i)
    return root


def _csv_images(tmp_path):
    for i in range(2):
        _png(tmp_path / f"c{i}.png", value=i)
        _png(tmp_path / f"d{i}.png", value=50 + i)


# --------------------------------------------------------------------------------------------- CSV


def test_csv_row_without_label_names_the_line(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,cat\nc1.png\nd0.png,dog\n")
    with pytest.raises(ValueError, match=r"line 3.*no label"):
        load_user_dataset(tmp_path / "l.csv")


def test_csv_labels_are_stripped(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,cat\nc1.png,cat \nd0.png, dog\nd1.png,dog\n")
    ds = load_user_dataset(tmp_path / "l.csv")
    assert ds.classes == ["cat", "dog"]
    assert np.bincount(ds.targets).tolist() == [2, 2]


def test_csv_empty_label_is_an_error_naming_the_line(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,cat\nc1.png,  \nd0.png,dog\n")
    with pytest.raises(ValueError, match=r"line 3.*empty label"):
        load_user_dataset(tmp_path / "l.csv")


def test_csv_utf8_bom_and_header_spacing_accepted(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_bytes("\ufeffpath, label\nc0.png,café\nd0.png,dog\n".encode("utf-8"))
    ds = load_user_dataset(tmp_path / "l.csv")
    assert ds.classes == ["café", "dog"]


def test_csv_latin1_rejected_naming_line_then_read_with_encoding(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_bytes("path,label\nd0.png,dog\nc0.png,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid UTF-8.*0xe9.*line 3.*encoding"):
        load_user_dataset(tmp_path / "l.csv")
    ds = load_user_dataset(tmp_path / "l.csv", encoding="latin-1")
    assert ds.classes == ["café", "dog"]
    with pytest.raises(ValueError, match="unknown text encoding"):
        load_user_dataset(tmp_path / "l.csv", encoding="no-such-codec")


def test_csv_missing_images_all_named_with_lines(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,cat\ngone1.png,cat\nd0.png,dog\ngone2.png,dog\n")
    with pytest.raises(FileNotFoundError, match=r"2 image\(s\).*line 3: .*gone1.png.*line 5: .*gone2.png"):
        load_user_dataset(tmp_path / "l.csv")


def test_csv_same_image_twice_is_an_error(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,cat\nd0.png,dog\n./c0.png,dog\n")
    with pytest.raises(ValueError, match=r"line 4.*c0.png.*line 2"):
        load_user_dataset(tmp_path / "l.csv")


def test_csv_row_order_does_not_change_the_dataset(tmp_path):
    _csv_images(tmp_path)
    rows = [("c0.png", "cat"), ("c1.png", "cat"), ("d0.png", "dog"), ("d1.png", "dog")]
    for name, order in (("a.csv", rows), ("b.csv", rows[::-1])):
        with open(tmp_path / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label"])
            w.writerows(order)
    a, b = load_user_dataset(tmp_path / "a.csv"), load_user_dataset(tmp_path / "b.csv")
    assert a.classes == b.classes and a.samples == b.samples and a.fingerprint == b.fingerprint


# ------------------------------------------------------------------------------------- class names


@pytest.mark.parametrize("names", [("a_b", "a b"), ("Cat", "cat"), ("sea  lion", "sea_lion")])
def test_class_names_that_embed_identically_are_rejected(tmp_path, names):
    root = _folder(tmp_path / "imgs", classes=names + ("other",))
    with pytest.raises(ValueError, match="same class name"):
        load_user_dataset(root)


def test_csv_labels_that_embed_identically_are_rejected(tmp_path):
    _csv_images(tmp_path)
    (tmp_path / "l.csv").write_text("path,label\nc0.png,sea_lion\nc1.png,sea lion\nd0.png,dog\n")
    with pytest.raises(ValueError, match=r"'sea lion' / 'sea_lion'.*same class name"):
        load_user_dataset(tmp_path / "l.csv")


def test_classnames_match_the_text_encoders_readable_names(tmp_path):
    from Label_embedding import readable_classname

    classes = ("AM_General__Hummer", "sea lion", "x_y_z")
    ds = load_user_dataset(_folder(tmp_path / "imgs", classes=classes, per_class=1))
    assert ds.classnames == [readable_classname(c) for c in ds.classes]


# ------------------------------------------------------------------------------- folders and images


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    _png(tmp_path / "empty" / "b" / "0.png")
    with pytest.raises(ValueError, match=r"class folder .*a.* contains no images"):
        load_user_dataset(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "0.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_user_dataset(tmp_path / "flat")


def test_hidden_files_are_not_images(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")   # macOS resource fork
    (root / ".git").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_user_dataset(root)
    assert len(ds) == 4 and ds.classes == ["cat", "dog"]


def _bad_images(root):
    (root / "cat" / "zero.png").write_bytes(b"")
    (root / "cat" / "text.jpg").write_text("not an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    root = _folder(tmp_path / "imgs")
    _bad_images(root)
    with pytest.warns(UnreadableImageWarning, match=r"skipped 3 unreadable image") as rec:
        ds = load_user_dataset(root)
    msg = str(rec[0].message)
    assert "cat/zero.png (empty file" in msg and ": cat/" in msg      # named relative to the folder
    assert "text.jpg (not an image" in msg and "BytesIO" not in msg
    assert "zero.png (empty file" in msg and "text.jpg (" in msg and "truncated.jpg (" in msg
    assert len(ds) == 4 and sorted(p.split("/")[-1] for p, _ in ds.skipped) == ["text.jpg", "truncated.jpg", "zero.png"]
    for i in range(len(ds)):                         # every kept image can be read
        assert ds[i][0].mode == "RGB"
    with pytest.raises(ValueError, match=r"3 unreadable image.*zero.png"):
        load_user_dataset(root, strict_images=True)


def test_long_unreadable_list_is_truncated(tmp_path):
    root = _folder(tmp_path / "imgs")
    for i in range(25):
        (root / "cat" / f"bad{i:02d}.png").write_bytes(b"junk")
    with pytest.warns(UnreadableImageWarning) as rec:
        load_user_dataset(root)
    msg = str(rec[0].message)
    assert "skipped 25 unreadable image" in msg and "and 15 more" in msg and msg.count("bad") == 10


def test_class_left_without_readable_images_is_an_error(tmp_path):
    root = _folder(tmp_path / "imgs", classes=("cat", "dog", "eel"), per_class=1)
    (root / "eel" / "0.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"eel.*no readable images"), pytest.warns(UnreadableImageWarning):
        load_user_dataset(root)


# ------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_content_not_location_or_mtime(tmp_path):
    import os
    import shutil

    a = _folder(tmp_path / "A" / "imgs")
    fp = load_user_dataset(a).fingerprint
    assert isinstance(fp, str) and len(fp) == 64
    shutil.copytree(a, tmp_path / "B" / "imgs")
    b = tmp_path / "B" / "imgs"
    os.utime(b / "cat" / "0.png", (1, 1))
    assert load_user_dataset(b).fingerprint == fp                  # same files elsewhere: same data
    _png(b / "cat" / "0.png", value=200)                            # same name and size, other pixels
    assert load_user_dataset(b).fingerprint != fp
    _png(a / "dog" / "9.png", value=99)                              # an added image
    assert load_user_dataset(a).fingerprint != fp


def test_fingerprint_of_a_subset_covers_only_its_images(tmp_path):
    ds = load_user_dataset(_folder(tmp_path / "imgs", per_class=3))
    sub = ds.subset([0, 3])
    assert len(sub) == 2 and sub.classes == ds.classes and sub.targets.tolist() == [0, 1]
    assert sub.fingerprint != ds.fingerprint
    assert sub.fingerprint != ds.subset([3, 0]).fingerprint        # rows in another order: other features
    assert sub.fingerprint == ds.subset(np.array([0, 3])).fingerprint
    assert ds.subset(range(len(ds))).fingerprint == ds.fingerprint


# --------------------------------------------------------------------------- nested-list embeddings


def test_nested_list_label_embeddings_are_not_guessed():
    """A depth-3 nested list is (N, E, K) or K x (N, E); with N == E the two readings have the same
    shape, so it must be rejected, not silently transposed."""
    from metrics._validation import check_label_embeddings

    Y = np.random.default_rng(0).normal(size=(4, 4, 2))
    with pytest.raises(ValueError, match="ambiguous"):
        check_label_embeddings(Y.tolist(), 4)
    np.testing.assert_array_equal(check_label_embeddings(Y, 4), Y)                     # an array: (N, E, K)
    np.testing.assert_array_equal(check_label_embeddings([Y[..., 0], Y[..., 1]], 4), Y)  # K arrays
