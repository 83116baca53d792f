"""Per-image extraction cost, measured here, and its projection to the papers' grids (docs/cost_model.md).

Measured in one run (``--threads``, default 2):

* **FLOP per image** (``torch.utils.flop_counter.FlopCounterMode``, batch 1, 2 FLOP per multiply-add;
  convolutions and matmuls only, via :func:`bench_extraction.count_flops` / ``model_flops``) of
  every architecture of the EMMS image-classification zoo (registry groups ``cnn`` and ``vit``,
  built with random weights: no files needed) and of the offline models timed below;
* **img/s** of the forward pass (``features_and_source_logits``, random input of the model's size,
  batch ``--batch``, median of ``--reps`` batches after a warm-up) of ``--speed-models`` (real
  packaged weights), and the fp32 GEMM peak of the same threads (:func:`bench_extraction.gemm_peak`),
  hence the fraction of the peak a real extraction reaches.

Projection (printed, and written with the measurements to ``results/bench_extraction_cost.json``):
GPU-hours = sum over the grid of (images x FLOP/img) / (peak x utilisation), with the throughput
assumptions of the constants below (H200: 989 TFLOP/s dense bf16, 67 TFLOP/s fp32 non-tensor-core);
EMMS: the 24 classification models on the train splits of the 11 classification datasets
(docs/data.md sizes) and the 9 captioning models on the 5 captioning train splits; MLL: the 49
open_clip models of the hub table (``FLOPs (B)`` column of ../shared/reference/mll_model_hub.csv)
on 9,055 nodes x 75 images::

    python benchmarks/bench_extraction_cost.py                       # ~1-3 min on 2 cores
    python benchmarks/bench_extraction_cost.py --speed-models ocr_cls --reps 2
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extraction import count_flops, gemm_peak, model_flops  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THREADS, BATCH, REPS = 2, 16, 3
SPEED_MODELS = ["efficientnet_lite0", "ocr_cls", "dinov2_s"]
OUT = ROOT / "results" / "bench_extraction_cost.json"
HUB_TABLE = ROOT.parent / "shared" / "reference" / "mll_model_hub.csv"
# -- the grids ------------------------------------------------------------------------------------
EMMS_CLS_TRAIN = {"aircraft": 6667, "caltech101": 3060, "cars": 8144, "cifar10": 50000, "cifar100": 50000,
                  "dtd": 3760, "flowers": 2040, "food": 75750, "pets": 3680, "sun397": 19850, "voc2007": 5011}
EMMS_CAPTION_TRAIN = {"flickr8k": 6000, "flickr30k": 29000, "rsicd": 8734, "flickr10k_humor": 7000,
                      "flickr10k_romantic": 7000}      # Karpathy train splits; FlickrStyle10k: 7000 released
CAPTION_GFLOP = 2 * 17.6 + 2 * 0.11 * 20   # ViT-B/16 encoder at 224 (17.6 GMAC) + a base decoder, 20 tokens
MLL_NODES, MLL_IMAGES_PER_NODE = 9055, 75
# -- throughput assumptions (docs/cost_model.md) ---------------------------------------------------
H200_BF16_PEAK, H200_FP32_PEAK = 989e12, 67e12      # FLOP/s, dense
UTILISATION_BF16, UTILISATION_FP32 = 0.06, 0.30      # -> ~60 TFLOP/s and ~20 TFLOP/s effective
DECODE_IMG_PER_S_PER_CORE = 250                        # JPEG decode + resize + normalise, one core


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed-models", nargs="*", default=SPEED_MODELS)
    p.add_argument("--flop-groups", nargs="*", default=["cnn", "vit"])
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--reps", type=int, default=REPS)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if min(args.threads, args.batch, args.reps) < 1:
        p.error("--threads, --batch and --reps must be positive")
    return args


def architecture_flops(name: str) -> int:
    """FLOP/img of ``name``'s architecture with random weights (counted on its torch network)."""
    import models
    m = models.create_model(name, device="cpu", pretrained=False)
    with torch.no_grad():
        return count_flops(m.features_and_source_logits, torch.zeros(1, 3, *m.input_hw))


def images_per_second(name: str, batch: int, reps: int) -> float:
    import models
    m = models.create_model(name, device="cpu")
    x = torch.randn(batch, 3, *m.input_hw)
    times = []
    with torch.inference_mode():
        m.features_and_source_logits(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            m.features_and_source_logits(x)
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def gpu_hours(flop: float, *, peak: float, utilisation: float) -> float:
    return flop / (peak * utilisation) / 3600


def hub_gflops() -> list[float]:
    with open(HUB_TABLE) as fh:
        return [float(r["FLOPs (B)"]) for r in csv.DictReader(fh)]


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import models
    t0 = time.time()
    peak = gemm_peak()
    print(f"fp32 GEMM peak, {args.threads} threads: {peak:.1f} GFLOP/s   (load average {os.getloadavg()[0]:.1f})")
    speed = {}
    for name in args.speed_models:
        flop, ips = model_flops(name), images_per_second(name, args.batch, args.reps)
        speed[name] = {"gflop_per_img": flop / 1e9, "img_per_s": ips, "achieved_gflop_s": flop * ips / 1e9,
                       "fraction_of_peak": flop * ips / 1e9 / peak}
        print(f"{name:20s} {flop / 1e9:7.3f} GFLOP/img  {ips:8.1f} img/s  {flop * ips / 1e9:7.1f} GFLOP/s "
              f"({flop * ips / 1e9 / peak:.0%} of peak)")
    zoo = {}
    for group in args.flop_groups:
        for name in models.list_models(group):
            zoo[name] = architecture_flops(name) / 1e9
            print(f"  {group:4s} {name:16s} {zoo[name]:7.2f} GFLOP/img")
    # -- projections --------------------------------------------------------------------------------
    n_cls, n_cap = sum(EMMS_CLS_TRAIN.values()), sum(EMMS_CAPTION_TRAIN.values())
    emms_flop = sum(zoo.values()) * 1e9 * n_cls + 9 * CAPTION_GFLOP * 1e9 * n_cap
    emms_images = len(zoo) * n_cls + 9 * n_cap
    hub = hub_gflops()
    mll_images_per_model = MLL_NODES * MLL_IMAGES_PER_NODE
    mll_flop = sum(2 * g * 1e9 for g in hub) * mll_images_per_model     # table value taken as GMAC/img
    proj = {}
    for grid, flop, images in (("EMMS", emms_flop, emms_images), ("MLL", mll_flop, len(hub) * mll_images_per_model)):
        proj[grid] = {"images": images, "pflop": flop / 1e15,
                      "h200_hours_bf16": gpu_hours(flop, peak=H200_BF16_PEAK, utilisation=UTILISATION_BF16),
                      "h200_hours_fp32": gpu_hours(flop, peak=H200_FP32_PEAK, utilisation=UTILISATION_FP32),
                      "decode_core_hours": images / DECODE_IMG_PER_S_PER_CORE / 3600}
        p = proj[grid]
        print(f"{grid}: {images:,} image passes, {p['pflop']:.1f} PFLOP -> H200 {p['h200_hours_bf16']:.2f} h bf16 "
              f"(@{UTILISATION_BF16:.0%}), {p['h200_hours_fp32']:.2f} h fp32 (@{UTILISATION_FP32:.0%}); "
              f"JPEG decode {p['decode_core_hours']:.1f} core-hours")
    result = {"threads": args.threads, "batch": args.batch, "load_average": os.getloadavg()[0],
              "gemm_peak_gflop_s": peak, "speed": speed, "zoo_gflop_per_img": zoo, "projection": proj,
              "assumptions": {"h200_bf16_peak": H200_BF16_PEAK, "h200_fp32_peak": H200_FP32_PEAK,
                              "utilisation_bf16": UTILISATION_BF16, "utilisation_fp32": UTILISATION_FP32,
                              "decode_img_per_s_per_core": DECODE_IMG_PER_S_PER_CORE,
                              "caption_gflop_per_img": CAPTION_GFLOP},
              "seconds": round(time.time() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"-> {args.out} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
