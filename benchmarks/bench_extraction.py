"""Feature-extraction speed of the offline zoo against the machine's own GEMM peak.

Measured in ONE run, on the same threads (``--threads``, default 2):

* **peak**: fp32 ``torch.matmul`` of two N x N matrices (N = 2048): 2 N^3 FLOP per product, the
  best of ``GEMM_REPS`` timed products -> GFLOP/s.
* **FLOP per image** of each candidate: ``torch.utils.flop_counter.FlopCounterMode`` on a batch of 1
  (counts convolutions, incl. depthwise via the weight shape, and matmul / bmm / addmm / attention;
  2 FLOP per multiply-add; element-wise ops, norms and pooling are not counted). The torch CNNs
  are counted on their own network (an intermediate candidate only up to its layer: the pass stops
  there); the ONNX graphs on their onnx2torch conversion (the fine-tuning network, same graph).
* **img/s** of the forward pass (batch ``--batch``, random input of the model's size, no
  preprocessing or data loading), median of ``--reps`` timed batches after one warm-up batch, the
  two variants of a model interleaved (A B A B ...) so that load changes hit both alike:
  EfficientNet-Lite: torch in contiguous NCHW vs onnxruntime on the network's ONNX export (the CPU
  default now, :data:`models.efficientnet_lite.LITE_BACKEND`), with torch channels_last between;
  ONNX graphs: onnxruntime's default session options vs :func:`models.onnx_zoo.session_options`
  (the default now).
* achieved GFLOP/s = FLOP/img x img/s and its % of the GEMM peak.
* **family**: one multi-output pass for a network and all its intermediate candidates vs the sum of
  the separate passes (seconds per image).

Prints a table and writes ``results/bench_extraction.json``::

    python benchmarks/bench_extraction.py                     # all 20 packaged-model candidates
    python benchmarks/bench_extraction.py --quick             # batch 8, 2 reps, 3 networks
    python benchmarks/bench_extraction.py --models efficientnet_lite0 ocr_cls --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
BATCH = 64
REPS = 5
GEMM_N = 2048
GEMM_REPS = 5
OUT = ROOT / "results" / "bench_extraction.json"
QUICK = dict(batch=8, reps=2, models=["efficientnet_lite0", "efficientnet_lite0@blocks3", "ocr_cls",
                                      "ocr_cls@stage3", "ocr_det"])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="default: every candidate of the packaged networks")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--reps", type=int, default=REPS)
    p.add_argument("--no-family", action="store_true", help="skip the one-pass-per-family comparison")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.reps = QUICK["batch"], QUICK["reps"]
        args.models = args.models or QUICK["models"]
    if args.threads < 1 or args.batch < 1 or args.reps < 1:
        p.error("--threads, --batch and --reps must be positive")
    return args


def gemm_peak(n: int = GEMM_N, reps: int = GEMM_REPS) -> float:
    """Best fp32 GEMM rate (GFLOP/s) of ``torch.matmul`` on n x n matrices."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def count_flops(fn, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:   # (the module tracker needs autograd on)
        fn(x)
    return int(counter.get_total_flops())


def model_flops(name: str) -> int:
    """FLOP per image (module docstring)."""
    import models
    from models.onnx_zoo import OnnxFeatureModel

    from models import efficientnet_lite as lite

    m = models.create_model(name, device="cpu")
    x = torch.randn(1, 3, *m.input_hw)
    if isinstance(m, lite.LiteOrtFeatureModel):    # counted on the torch network it was exported from
        saved, lite.LITE_BACKEND = lite.LITE_BACKEND, "torch"
        try:
            m = models.create_model(name, device="cpu")
        finally:
            lite.LITE_BACKEND = saved
    if isinstance(m, OnnxFeatureModel):
        from models.onnx_zoo import OnnxTrainable

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = OnnxTrainable(m.spec, 1).eval().requires_grad_(False)
            return count_flops(net.backbone, x)
    return count_flops(m.features_and_source_logits, x)


def interleaved(fns: dict, x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median seconds per batch of each function, timed in turns after one warm-up call each."""
    times = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(x)
        for _ in range(reps):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn(x)
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def variants(name: str, x: torch.Tensor) -> dict:
    """{label: fn(batch)} of the before / after settings of candidate ``name``."""
    import models
    from models import efficientnet_lite as lite
    from models.intermediate import LITE_LAYERS
    from models.onnx_zoo import OnnxFeatureModel

    probe = models.create_model(name, device="cpu")
    if isinstance(probe, OnnxFeatureModel):
        default = OnnxFeatureModel(probe.spec, torch.device("cpu"), True, tuned=False)
        return {"before": default.features_and_source_logits, "after": probe.features_and_source_logits}
    layers = {layer.name: layer for layer in LITE_LAYERS}
    specs = {s.name: s for s in lite.LITE_SPECS}
    cpu = torch.device("cpu")
    if name in specs:
        build = lambda **kw: lite.build_lite(specs[name], None, cpu, True, **kw)  # noqa: E731
    else:
        build = lambda **kw: lite.build_lite_layer(layers[name], None, cpu, True, **kw)  # noqa: E731
    return {"before": build(backend="torch", channels_last=False).features_and_source_logits,
            "channels_last": build(backend="torch", channels_last=True).features_and_source_logits,
            "after": build(backend="onnxruntime").features_and_source_logits}


def family_rows(names: list[str], batch: int, reps: int) -> list[dict]:
    """One multi-output pass per family vs the separate passes of its members (seconds per image)."""
    import models
    from models.intermediate import FAMILIES, build_family_model, family_of

    rows = []
    for fam in dict.fromkeys(family_of(n) for n in names if family_of(n)):
        members = list(FAMILIES[fam].members)
        multi = build_family_model(members, device="cpu")
        singles = {m: models.create_model(m, device="cpu") for m in members}
        x = torch.randn(batch, 3, *multi.input_hw)
        fns = {"one_pass": multi.features_and_source_logits_multi,
               **{m: s.features_and_source_logits for m, s in singles.items()}}
        t = interleaved(fns, x, reps)
        separate = sum(t[m] for m in members)
        rows.append({"family": fam, "members": members, "one_pass_s_per_img": t["one_pass"] / batch,
                     "separate_s_per_img": separate / batch, "speedup": separate / t["one_pass"]})
        print(f"family {fam:20s} {len(members)} candidates: one pass {t['one_pass'] / batch * 1e3:7.2f} ms/img, "
              f"separate {separate / batch * 1e3:7.2f} ms/img  ({separate / t['one_pass']:.2f}x)", flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import models
    from models.intermediate import family_of

    names = args.models or [n for n in models.list_models("offline") if family_of(n) is not None]
    peak = gemm_peak()
    print(f"fp32 GEMM peak ({GEMM_N}^3, {args.threads} threads): {peak:.1f} GFLOP/s; batch {args.batch}, "
          f"median of {args.reps}")
    header = (f"{'model':28s} {'GFLOP/img':>9s} {'img/s before':>12s} {'img/s after':>11s} {'speedup':>7s} "
              f"{'GFLOP/s':>8s} {'% peak':>6s}  variants")
    print(header)
    rows = []
    for name in names:
        m = models.create_model(name, device="cpu")
        x = torch.randn(args.batch, 3, *m.input_hw)
        flops = model_flops(name)
        t = interleaved(variants(name, x), x, args.reps)
        ips = {k: args.batch / v for k, v in t.items()}
        gflops = flops / 1e9 * ips["after"]
        row = {"model": name, "flop_per_img": flops, "img_per_s": ips, "gflop_per_s_after": gflops,
               "gflop_per_s_before": flops / 1e9 * ips["before"], "pct_peak_after": 100 * gflops / peak,
               "speedup": ips["after"] / ips["before"],
               "variants": ("torch NCHW -> onnxruntime export (torch channels_last in between)"
                            if "channels_last" in ips else "ort default -> tuned session")}
        rows.append(row)
        extra = f"; torch channels_last {ips['channels_last']:.1f} img/s" if "channels_last" in ips else ""
        print(f"{name:28s} {flops / 1e9:9.3f} {ips['before']:12.1f} {ips['after']:11.1f} {row['speedup']:7.2f} "
              f"{gflops:8.1f} {row['pct_peak_after']:6.1f}  {row['variants']}{extra}", flush=True)
        write_results(args, peak, rows, [], complete=False)      # a killed run keeps the rows so far
    fam = [] if args.no_family else family_rows(names, args.batch, args.reps)
    write_results(args, peak, rows, fam, complete=True)
    print(f"wrote {args.out}")
    return 0


def write_results(args, peak: float, rows: list, families: list, complete: bool) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"threads": args.threads, "batch": args.batch, "reps": args.reps,
                               "gemm_peak_gflops": peak, "torch": torch.__version__, "complete": complete,
                               "rows": rows, "families": families,
                               "flop_method": "torch.utils.flop_counter.FlopCounterMode, batch 1; "
                                              "ONNX graphs via onnx2torch, EfficientNet on the torch network"},
                              indent=2, default=float))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
