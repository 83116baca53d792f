"""One fine-tuning training step of the ONNX-converted networks: graph fusion and bfloat16, side by side.

For each model: the trainable network built unfused (onnx2torch as converted) and fused
(:func:`models.fx_fusion.fuse_graph`), each stepped in float32 and in bfloat16 autocast
(:data:`finetuning.engine.PRECISIONS`) by :func:`finetuning.engine.train_model` on one batch, the
four variants alternated ``REPEATS`` times in this one process (batch ``BATCH``, the protocol's
input size, channels_last as in fine-tuning, AdamW, 1 thread); prints the best seconds per step, the ratios against unfused float32, and the largest
logit difference of fused against unfused (float32, eval mode). Usage::

    python benchmarks/bench_finetune_step.py                        # dinov2_s, ocr_rec
    python benchmarks/bench_finetune_step.py --models dinov2_s@block4 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ["dinov2_s", "ocr_rec"]
REPEATS = 3
BATCH = 16
NUM_CLASSES = 10
SEED = 0


def _spec(name: str):
    from models.intermediate import ONNX_LAYERS
    from models.onnx_zoo import ONNX_SPECS

    for spec in (*ONNX_SPECS, *ONNX_LAYERS):
        if spec.name == name:
            return spec
    raise SystemExit(f"error: {name!r} is not an ONNX-converted candidate")


def bench(name: str, repeats: int, batch: int) -> dict:
    import finetune
    from finetuning.engine import memory_format_of, train_model, use_channels_last
    from finetuning.protocol import _native_hw, protocol_input_size
    from models.onnx_zoo import OnnxTrainable

    spec = _spec(name)
    config = finetune.config_from_args(finetune.parse_args([]))
    hw = protocol_input_size(_native_hw(spec.preprocess()), config)
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(batch, 3, *hw, generator=g)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    nets = {}
    for fuse in (False, True):
        torch.manual_seed(SEED)
        nets[fuse] = OnnxTrainable(spec, NUM_CLASSES, fuse=fuse)
        use_channels_last(nets[fuse])
    xb = x.contiguous(memory_format=memory_format_of(nets[True]))
    with torch.no_grad():
        diff = (nets[False].eval()(xb) - nets[True].eval()(xb)).abs().max().item()

    def step(fuse: bool, precision: str) -> float:
        """One protocol training step (``train_model`` on one batch: AdamW, cross-entropy)."""
        t = time.perf_counter()
        train_model(nets[fuse], x, y, lr=1e-5, epochs=1, batch_size=batch, optimizer="adamw",
                    precision=precision, generator=torch.Generator().manual_seed(SEED))
        return time.perf_counter() - t

    variants = [(f, p) for f in (False, True) for p in ("fp32", "bf16")]
    for v in variants:
        step(*v)                                             # warm-up (oneDNN primitives)
    times = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            times[v].append(step(*v))
    best = {v: min(t) for v, t in times.items()}
    base = best[(False, "fp32")]
    return {"model": name, "input": list(hw), "fused": nets[True].fused, "max_logit_diff": diff,
            "seconds": {f"{'fused' if f else 'unfused'} {p}": s for (f, p), s in best.items()},
            "speedup": {f"{'fused' if f else 'unfused'} {p}": base / s for (f, p), s in best.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--batch", type=int, default=BATCH)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"1 thread, batch {args.batch}, best of {args.repeats}")
    for name in args.models:
        r = bench(name, args.repeats, args.batch)
        print(f"{name} {r['input'][0]}x{r['input'][1]}, fused {r['fused']}, max |logit diff| {r['max_logit_diff']:.2e}")
        for k, s in r["seconds"].items():
            print(f"  {k:14s} {s:.3f} s/step  {r['speedup'][k]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
