"""select_models.py end to end on a small folder of real images, and the user-data loader."""
import csv

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import select_models
from data.user_dataset import load_user_dataset


def _digit_folder(root, classes=(0, 1, 7), per_class=12):
    """Real handwritten digits (sklearn), upsampled to 32 px PNGs, one sub-folder per class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in classes:
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(d.target == c)[:per_class]):
            img = Image.fromarray((d.images[idx] * 16).astype(np.uint8)).resize((32, 32))
            img.save(folder / f"{i:03d}.png")
    return root


def test_folder_and_csv_layouts_agree(tmp_path):
    root = _digit_folder(tmp_path / "imgs", per_class=3)
    ds = load_user_dataset(root)
    assert ds.classes == ["digit_0", "digit_1", "digit_7"]
    assert ds.classnames == ["digit 0", "digit 1", "digit 7"]
    assert np.bincount(ds.targets).tolist() == [3, 3, 3]
    image, label = ds[4]
    assert image.mode == "RGB" and image.size == (32, 32) and label == 1

    rows = [(str(p.relative_to(tmp_path)), p.parent.name) for p in sorted(root.rglob("*.png"))]
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows[::-1])  # order must not matter for class ids
    from_csv = load_user_dataset(tmp_path / "labels.csv")
    assert from_csv.classes == ds.classes
    assert from_csv.samples == ds.samples and from_csv.fingerprint == ds.fingerprint   # the same data


def test_user_data_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_user_dataset(tmp_path / "nowhere")
    one = _digit_folder(tmp_path / "one", classes=(3,), per_class=2)
    with pytest.raises(ValueError, match="single class"):
        load_user_dataset(one)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="contains no images"):
        load_user_dataset(tmp_path / "empty")
    (tmp_path / "bad.csv").write_text("file,class\nx.png,a\n")
    with pytest.raises(ValueError, match="'path' and 'label'"):
        load_user_dataset(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("path,label\nnot_there.png,a\nnot_there2.png,b\n")
    with pytest.raises(FileNotFoundError, match="not_there.png"):
        load_user_dataset(tmp_path / "missing.csv")


@pytest.mark.slow
def test_select_models_end_to_end(tmp_path, capsys):
    root = _digit_folder(tmp_path / "my_digits")
    argv = [str(root), "--models", "efficientnet_lite0", "ocr_cls", "--metrics", "emms", "logme", "leep",
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"), "--quiet"]
    assert select_models.main(argv) == 0
    out = capsys.readouterr().out
    assert "Recommendation:" in out
    table = pd.read_csv(tmp_path / "results" / "my_digits" / "selection.csv", index_col=0)
    assert sorted(table.index) == ["efficientnet_lite0", "ocr_cls"]
    assert table["emms_score"].notna().all() and np.isfinite(table["emms_score"]).all()
    assert set(table["rank_emms"]) == {1, 2}
    best = table.index[0]
    assert f"Recommendation: {best}" in out
    # features, labels and class-name embeddings are cached in the documented layout
    cache = tmp_path / "cache"
    assert (cache / "features" / "my_digits" / "ocr_cls.npy").is_file()
    assert np.load(cache / "labels" / "my_digits.npy").tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert np.load(cache / "label_embeddings" / "my_digits" / "minilm.npy").shape == (3, 384)

    # a re-run recomputes nothing and gives the same ranking
    assert select_models.main(argv) == 0
    again = pd.read_csv(tmp_path / "results" / "my_digits" / "selection.csv", index_col=0)
    pd.testing.assert_frame_equal(table, again)


def test_select_models_rejects_unknown_model_before_work(tmp_path, capsys):
    root = _digit_folder(tmp_path / "d", per_class=2)
    with pytest.raises(SystemExit) as exc:
        select_models.main([str(root), "--models", "no_such_model", "--cache-dir", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_select_models_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        select_models.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--models", "--metrics", "--primary", "--encoders", "--n-per-class", "--weights-dir", "--cache-dir"):
        assert opt in out
