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


def test_list_models_shows_every_candidate_group_including_the_networks_trained_here(capsys):
    assert select_models.main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "offline_trained: " in out and "fmnist_resnet_e4" in out and "offline: " in out
    with pytest.raises(SystemExit) as exc:                       # without --list-models the data is required
        select_models.main([])
    assert exc.value.code == 2 and "required: data" in capsys.readouterr().err


def test_select_models_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        select_models.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--models", "--metrics", "--primary", "--encoders", "--n-per-class", "--weights-dir", "--cache-dir"):
        assert opt in out


# ----------------------------------------------------------------- the CLI without feature extraction


class _FakeScorer:
    """Stands in for evaluation.end_to_end.score_models: records its call, returns fixed scores."""

    def __init__(self, scores=None, exc=None):
        self.scores, self.exc, self.calls = scores, exc, []

    def __call__(self, model_names, dataset_names, **kw):
        from evaluation.runner import DatasetResult, EvaluationResult

        self.calls.append(dict(kw, model_names=list(model_names), dataset_names=list(dataset_names)))
        if self.exc is not None:
            raise self.exc
        name = dataset_names[0]
        scores = {k: {m: self.scores[k][m] for m in model_names} for k in kw["metrics"]}
        r = DatasetResult(dataset=name, models=list(model_names), metrics=list(kw["metrics"]), scores=scores,
                          seconds={k: {m: 0.0 for m in model_names} for k in kw["metrics"]})
        return EvaluationResult(datasets={name: r}, task="classification", encoders=tuple(kw["encoders"]))


@pytest.fixture
def fake_scorer(monkeypatch):
    import evaluation.end_to_end

    def install(**kw):
        fake = _FakeScorer(**kw)
        monkeypatch.setattr(evaluation.end_to_end, "score_models", fake)
        return fake
    return install


def _cli(root, tmp_path, *extra):
    return [str(root), "--cache-dir", str(tmp_path / "c"), "--results-dir", str(tmp_path / "r"), "--quiet", *extra]


def _one_line_error(capsys, code, exc):
    err = capsys.readouterr().err
    assert exc.value.code == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "emms", "logmee"], "unknown metric(s) 'logmee' in --metrics"),
    (["--encoders", "minilm", "clipp"], "unknown text encoder(s) 'clipp' in --encoders"),
    (["--metrics", "logme", "leep", "--primary", "emms"], "--primary 'emms' is not among --metrics"),
    (["--models", "efficientnet_lite0", "vit_bert"], "'vit_bert' is a caption model"),
    (["--models", "resnet50"], "needs the local weights file 'resnet50-0676ba61.pth'"),
    (["--models", "ocr_cls", "ocr_cls"], "--models lists ocr_cls more than once"),
    (["--templates", "fancy"], "unknown template set 'fancy'"),
    (["--templates", "a {} of {}"], "exactly one '{}'"),
    (["--n-per-class", "-1"], "--n-per-class must be >= 0"),
    (["--name", "../evil"], "--name '../evil' must be a plain name"),
    (["--weights-dir", "/no/such/dir"], "--weights-dir /no/such/dir is not a directory"),
    (["--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["--device", "nodevice"],
     "--device"),
])
def test_bad_names_are_one_line_errors_before_any_work(tmp_path, capsys, fake_scorer, extra, message):
    root = _digit_folder(tmp_path / "d", per_class=2)
    fake = fake_scorer(exc=AssertionError("no work may start"))
    with pytest.raises(SystemExit) as exc:
        select_models.main(_cli(root, tmp_path, *extra))
    line = _one_line_error(capsys, 2, exc)
    assert line.startswith("select_models.py: error: ") and message in line, line
    assert fake.calls == [] and not (tmp_path / "c").exists()


def _write_bad_csv(tmp_path):
    root = _digit_folder(tmp_path / "d", per_class=2)
    (tmp_path / "l.csv").write_text("path,label\nd/digit_0/000.png,zero\nd/digit_1/000.png\n")
    return tmp_path / "l.csv"


@pytest.mark.parametrize("make, message", [
    (lambda t: t / "missing", "no such image folder or CSV file"),
    (lambda t: (t / "e" / "a").mkdir(parents=True) or _digit_folder(t / "e", classes=(1,), per_class=1) and t / "e",
     "contains no images"),
    (lambda t: _digit_folder(t / "one", classes=(3,), per_class=2), "single class"),
    (_write_bad_csv, "line 3: no label"),
])
def test_bad_data_is_a_one_line_error_before_any_work(tmp_path, capsys, fake_scorer, make, message):
    fake = fake_scorer(exc=AssertionError("no work may start"))
    with pytest.raises(SystemExit) as exc:
        select_models.main(_cli(make(tmp_path), tmp_path))
    line = _one_line_error(capsys, 2, exc)
    assert line.startswith("select_models.py: error: ") and message in line, line
    assert fake.calls == []


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, fake_scorer):
    root = _digit_folder(tmp_path / "d", per_class=5)
    fake_scorer(exc=KeyboardInterrupt())
    with pytest.raises(SystemExit) as exc:
        select_models.main(_cli(root, tmp_path))
    assert "interrupted; re-run to resume" in _one_line_error(capsys, 130, exc)


def test_library_errors_are_one_line_unless_debug(tmp_path, capsys, fake_scorer):
    root = _digit_folder(tmp_path / "d", per_class=5)
    fake_scorer(exc=ValueError("cache file x.npy is corrupt\n  (delete it)"))
    with pytest.raises(SystemExit) as exc:
        select_models.main(_cli(root, tmp_path))
    assert _one_line_error(capsys, 2, exc) == "select_models.py: error: cache file x.npy is corrupt (delete it)"
    with pytest.raises(ValueError, match="corrupt"):
        select_models.main(_cli(root, tmp_path, "--debug"))


_TIED = {"emms": {"efficientnet_lite0": 0.0, "dinov2_s": 0.0, "ocr_cls": -3.0},
         "logme": {"efficientnet_lite0": -1.0, "dinov2_s": 0.3, "ocr_cls": 0.1},
         "sfda": {"efficientnet_lite0": 1.0, "dinov2_s": 1.0, "ocr_cls": 1.0}}


def test_cli_reports_ties_and_order_of_models_does_not_matter(tmp_path, capsys, fake_scorer):
    import itertools

    root = _digit_folder(tmp_path / "d", per_class=2)
    fake_scorer(scores=_TIED)
    outs, tables = set(), []
    for perm in itertools.permutations(_TIED["emms"]):
        assert select_models.main(_cli(root, tmp_path, "--models", *perm, "--metrics", "emms", "logme", "sfda")) == 0
        out = capsys.readouterr().out
        outs.add(out)
        tables.append(pd.read_csv(tmp_path / "r" / "d" / "selection.csv", index_col=0))
    assert len(outs) == 1
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0])
    out = outs.pop()
    assert "emms cannot separate dinov2_s, efficientnet_lite0" in out and "Recommendation: dinov2_s" in out
    assert "ranked first by emms" not in out
    assert tables[0]["rank"].tolist() == [1, 2, 3] and tables[0]["rank_emms"].tolist() == [1, 1, 3]


def test_unreadable_images_warned_and_skipped_or_strict(tmp_path, capsys, fake_scorer):
    root = _digit_folder(tmp_path / "d", per_class=3)
    (root / "digit_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    fake = fake_scorer(scores={k: {"ocr_cls": 0.0} for k in ("emms", "logme")})
    assert select_models.main(_cli(root, tmp_path, "--models", "ocr_cls", "--metrics", "emms", "logme")) == 0
    captured = capsys.readouterr()
    assert "select_models.py: warning: skipped 1 unreadable image(s)" in captured.err
    assert "digit_1/broken.png (not a" in captured.err
    assert "9 images in 3 classes" in captured.out
    used = fake.calls[0]["dataset_factory"]("d")
    assert len(used) == 9 and not any("broken" in p for p, _ in used.samples)
    assert isinstance(used.fingerprint, str) and fake.calls[0]["classnames"] == {"d": used.classnames}
    with pytest.raises(SystemExit) as exc:
        select_models.main(_cli(root, tmp_path, "--strict-images"))
    assert "1 unreadable image(s)" in _one_line_error(capsys, 2, exc)


def test_single_template_and_subsample_reach_the_pipeline(tmp_path, fake_scorer, capsys):
    root = _digit_folder(tmp_path / "d", per_class=4)
    fake = fake_scorer(scores={k: {"ocr_cls": 0.0} for k in ("emms", "logme")})
    argv = _cli(root, tmp_path, "--models", "ocr_cls", "--metrics", "emms", "logme",
                "--templates", "a satellite photo of {}.", "--n-per-class", "2")
    assert select_models.main(argv) == 0
    assert "warning: fewer than 5 images to score in class(es) digit 0, digit 1, digit 7" in capsys.readouterr().err
    call = fake.calls[0]
    assert call["templates"] == ("a satellite photo of {}.",)
    used = call["dataset_factory"]("d")
    assert np.bincount(used.targets).tolist() == [2, 2, 2]
    full = load_user_dataset(root)
    assert used.fingerprint != full.fingerprint
    assert select_models.main(argv) == 0                                 # the same seeded subsample
    assert fake.calls[1]["dataset_factory"]("d").fingerprint == used.fingerprint


@pytest.mark.slow                   # a fresh interpreter imports torch: ~6 s CPU
def test_real_sigint_during_work_exits_130_without_traceback(tmp_path):
    import signal
    import subprocess
    import sys

    root = _digit_folder(tmp_path / "d", per_class=5)
    # a shell's background job starts with SIGINT ignored (inherited): restore the default handler,
    # as an interactive terminal has it
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import sys, time, select_models, evaluation.end_to_end as e\n"
            "def slow(*a, **k):\n    print('READY', flush=True); time.sleep(120)\n"
            "e.score_models = slow\n"
            f"sys.exit(select_models.main({_cli(root, tmp_path)!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=select_models.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip().endswith("scoring 15")
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip() == "select_models.py: interrupted; re-run to resume (finished models are cached)"
