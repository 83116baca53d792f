"""The report figures and text tables, produced from small synthetic caches."""
import pytest
from matplotlib.image import imread

from evaluation import evaluate
from evaluation.report import (format_dataset_report, format_summary, plot_agreement, plot_scores_vs_truth,
                               plot_weighted_tau_summary, write_report)
from evaluation.synthetic import write_synthetic_caches

QUALITY = {"m_high": 0.9, "m_mid": 0.6, "m_low": 0.3}
METRICS = ["emms", "logme", "hscore"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    write_synthetic_caches(tmp / "cache", datasets={"one": (90, 3), "two": (80, 4)}, models={m: 10 for m in QUALITY},
                           quality=QUALITY, encoders={"e": 8}, source_classes=10, random_state=3)
    truth = {d: {m: 60 + 30 * q for m, q in QUALITY.items()} for d in ("one", "two")}
    return evaluate(tmp / "cache", tmp / "res", datasets=["one", "two"], metrics=METRICS, encoders=("e",),
                    ground_truth=truth, group="toy", progress=False)


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn
    return image


def test_scores_vs_truth_has_one_panel_per_metric(result, tmp_path):
    r = result.datasets["one"]
    wide = _png(plot_scores_vs_truth(r, tmp_path / "all.png", ncols=3))
    single = _png(plot_scores_vs_truth(r, tmp_path / "one.png", metrics=["emms"], ncols=3))
    assert wide.shape[1] > 2 * single.shape[1]  # three panels side by side vs one
    with pytest.raises(ValueError, match="not in the result"):
        plot_scores_vs_truth(r, tmp_path / "x.png", metrics=["nope"])


def test_scores_vs_truth_needs_ground_truth(result, tmp_path):
    r = result.datasets["one"]
    no_truth = type(r)(**{**r.__dict__, "ground_truth": None})
    with pytest.raises(ValueError, match="no ground truth"):
        plot_scores_vs_truth(no_truth, tmp_path / "x.png")
    _png(plot_agreement(no_truth, tmp_path / "agree.png"))


def test_weighted_tau_summary_and_write_report(result, tmp_path):
    _png(plot_weighted_tau_summary(list(result.datasets.values()), tmp_path / "summary.png"))
    with pytest.raises(ValueError, match="unknown rank measure"):
        plot_weighted_tau_summary(list(result.datasets.values()), tmp_path / "s.png", measure="accuracy")
    written = write_report(result, tmp_path / "plots")
    assert set(written) == {"one_scores_vs_truth", "two_scores_vs_truth", "summary_weighted_tau"}
    for path in written.values():
        _png(path)


def test_text_tables_name_models_metrics_and_measures(result):
    text = format_dataset_report(result.datasets["two"])
    for word in [*QUALITY, *METRICS, "weighted_tau", "rel@3", "seconds", "ground_truth"]:
        assert word in text
    summary = format_summary(list(result.datasets.values()))
    assert "average over 2 dataset(s)" in summary and "weighted_tau_std" in summary
    assert all(line.split()[0] in METRICS for line in summary.splitlines()[3:])
