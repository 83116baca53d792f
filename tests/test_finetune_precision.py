"""bfloat16 training steps (finetuning.engine.PRECISIONS) and the replication check
(finetuning.precision), on the tiny synthetic task of test_finetune: seconds on 2 cores."""
import json

import numpy as np
import pytest
import torch

from finetuning import FinetuneConfig, ResultsStore, finetune_pair, prepare_inputs, train_model
from finetuning.precision import compare_seeds, replicate_cell, replication_config
from finetuning.runner import cell_precision, run_benchmark
from finetuning.splits import protocol_subsets
from test_finetune import FAST, CountingFactory, TinyNet, colour_getter, preprocess

KW = dict(model_factory=CountingFactory(), dataset_getter=colour_getter, progress=False)


def _train(precision, **kw):
    train = colour_getter("colours", "train")
    x, y = prepare_inputs(train, range(len(train)), preprocess, None)
    torch.manual_seed(0)
    net = TinyNet(3, 8)
    if precision is not None:
        kw["precision"] = precision
    losses = train_model(net, x, y, lr=1e-2, epochs=8, batch_size=10, weight_decay=0.0,
                         generator=torch.Generator().manual_seed(1), **kw)
    return net, losses, x


def test_bf16_training_follows_fp32_and_keeps_float32_weights():
    net32, l32, x = _train("fp32")
    net16, l16, _ = _train("bf16")
    assert l16 != l32                                   # the arithmetic did change ...
    np.testing.assert_allclose(l16, l32, rtol=0.1)      # ... and the training did not
    assert l16[-1] < 0.5 * l16[0]
    assert all(p.dtype == torch.float32 for p in net16.parameters())
    agree = (net16.eval()(x).argmax(1) == net32.eval()(x).argmax(1)).float().mean()
    assert agree > 0.9


def test_fp32_is_the_default_and_unknown_precisions_are_refused():
    assert _train(None)[1] == _train("fp32")[1]                    # no precision given: float32
    net = TinyNet(3, 4)
    x, y = torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown precision 'fp16'.*bf16"):
        train_model(net, x, y, lr=1e-3, epochs=1, batch_size=2, precision="fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        finetune_pair("tiny_a", "colours", FinetuneConfig(lrs=(1e-2,), **FAST), precision="half", **KW)


def test_a_cell_records_its_precision_and_keeps_it_when_resumed(tmp_path, capsys):
    cfg = FinetuneConfig(lrs=(1e-2, 1e-3), **FAST)
    store = ResultsStore(tmp_path / "p.json", cfg)
    first = finetune_pair("tiny_a", "colours", cfg, store=store, precision="bf16", **KW)
    assert first["precision"] == "bf16" and {r["precision"] for r in first["per_lr"]} == {"bf16"}
    # a cell with finished runs continues in their precision, and says so
    store2 = ResultsStore(tmp_path / "q.json", cfg)
    store2.put_trial("tiny_a", "colours", 1e-2, 0, dict(first["per_lr"][0]))
    assert cell_precision(store2, "tiny_a", "colours", "fp32") == "bf16"
    assert "continues in bf16" in capsys.readouterr().out
    rec = finetune_pair("tiny_a", "colours", cfg, store=store2, precision="fp32", **KW)
    assert rec["precision"] == "bf16" and {r["precision"] for r in rec["per_lr"]} == {"bf16"}
    # runs written before the field existed were float32
    legacy = {k: v for k, v in first["per_lr"][0].items() if k != "precision"}
    store3 = ResultsStore(tmp_path / "r.json", cfg)
    store3.put_trial("tiny_a", "colours", 1e-2, 0, legacy)
    assert cell_precision(store3, "tiny_a", "colours", "bf16") == "fp32"
    store3.put_trial("tiny_a", "colours", 1e-3, 0, dict(first["per_lr"][1]))
    with pytest.raises(ValueError, match=r"mix precisions \['bf16', 'fp32'\]"):
        cell_precision(store3, "tiny_a", "colours", "bf16")
    assert cell_precision(None, "tiny_a", "colours", "bf16") == "bf16"


def test_run_benchmark_takes_a_per_model_precision(tmp_path):
    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    table = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "t.json", tmp_path / "p.json",
                          precision=lambda m: "bf16" if m == "tiny_b" else "fp32", **KW)
    assert {m: r["precision"] for m, r in table["runs"]["colours"].items()} == {"tiny_a": "fp32", "tiny_b": "bf16"}
    with pytest.raises(ValueError, match="unknown precision"):
        run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "u.json", tmp_path / "v.json",
                      precision="int8", **KW)


def test_replication_reruns_the_seed_runs_on_the_same_subsets(tmp_path):
    cfg = FinetuneConfig(lrs=(1e-7, 1e-2), n_seeds=2, **FAST)
    ref = finetune_pair("tiny_b", "colours", cfg, **KW)
    rep_cfg = replication_config(cfg, ref["best_lr"])
    assert rep_cfg.lrs == (ref["best_lr"],) and rep_cfg.max_lr_extensions == 0 and rep_cfg.seeds == cfg.seeds
    y_tr, y_te = colour_getter("colours", "train").targets, colour_getter("colours", "test").targets
    for a, b in zip(protocol_subsets(y_tr, y_te, cfg), protocol_subsets(y_tr, y_te, rep_cfg)):
        np.testing.assert_array_equal(a, b)
    # same arithmetic: the replication reproduces the seed runs exactly
    same = finetune_pair("tiny_b", "colours", rep_cfg, **KW)
    assert same["test_acc_seeds"] == ref["test_acc_seeds"]
    assert [r["train_loss"] for r in same["seed_runs"]] == [r["train_loss"] for r in ref["seed_runs"]]
    new = replicate_cell(ref, cfg, "bf16", tmp_path / "rep.json", **KW)
    assert new["precision"] == "bf16" and new["seeds"] == ref["seeds"] and len(new["per_lr"]) == 1
    again = replicate_cell(ref, cfg, "bf16", tmp_path / "rep.json", model_factory=None, dataset_getter=None)
    assert again == new                                           # resumed from its store, nothing trained
    same_precision = replicate_cell(ref, cfg, "fp32", tmp_path / "fp32.json", **KW)   # the noise floor
    assert same_precision["test_acc_seeds"] == ref["test_acc_seeds"]      # same code, same arithmetic


def test_compare_seeds_known_values():
    out = compare_seeds([90.0, 92.0, 94.0], [91.0, 93.0, 95.0])
    assert out["diff_mean"] == 1.0 and out["diff_std"] == 0.0 and out["p_paired"] is None
    assert out["reference_std"] == 2.0 and out["max_abs_diff"] == 1.0 and out["n"] == 3
    out = compare_seeds([90.0, 92.0, 94.0], [91.0, 91.0, 95.0])    # d = 1, -1, 1
    assert out["diff_mean"] == pytest.approx(1 / 3) and out["diff_std"] == pytest.approx(np.sqrt(4 / 3))
    assert out["p_paired"] == pytest.approx(0.6667, abs=1e-3)      # t = 0.5, 2 dof
    with pytest.raises(ValueError, match="equal-length"):
        compare_seeds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        compare_seeds([1.0, float("nan")], [1.0, 2.0])


def test_finetune_script_precision_policy():
    import finetune

    policy = finetune.precision_policy(["dinov2_s*"])
    assert [policy(m) for m in ("dinov2_s", "dinov2_s@block8", "efficientnet_lite0", "ocr_rec@stage3")] == \
        ["bf16", "bf16", "fp32", "fp32"]
    assert finetune.precision_policy([])("dinov2_s") == "fp32"
    assert finetune.precision_policy(finetune.parse_args([]).bf16_models)("dinov2_s@block4") == "bf16"


def test_finetune_script_bad_arguments_exit_with_the_reason(tmp_path):
    import finetune

    with pytest.raises(SystemExit, match="^error: a ground-truth ranking needs at least two models"):
        finetune.main(["--models", "efficientnet_lite0", "--datasets", "digits",
                       "--output", str(tmp_path / "t.json"), "--partial", str(tmp_path / "t.partial.json")])


def test_compare_precision_script_names_bad_cells(tmp_path):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "scripts" / "compare_precision.py"
    spec = importlib.util.spec_from_file_location("compare_precision", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    partial = tmp_path / "p.json"
    partial.write_text(json.dumps({"protocol": FinetuneConfig(**FAST).to_dict(), "runs": {"colours": {}}}))
    for cells, match in ((["tiny_a"], "MODEL/DATASET"), (["tiny_a/colours"], "not finished")):
        with pytest.raises(SystemExit, match=match):
            mod.main(["--partial", str(partial), "--cells", *cells, "--out-dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="unknown precision"):
        mod.main(["--partial", str(partial), "--precision", "fp8", "--out-dir", str(tmp_path / "out")])
