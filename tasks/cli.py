"""Command lines shared by the task scripts (``forward_feature_{task}.py``, ``finetune_{task}.py``).

A task module exposes ``CANDIDATES``, ``DATASET``, ``GT_PROTOCOLS`` (per ground-truth mode,
:data:`tasks.heads.MODES`), ``extract(candidates, *, cache_dir, dataset, split, encoders, data_root,
device, progress)`` and ``ground_truth(candidates, *, cache_dir, partial_path, dataset, mode,
data_root, device)``; each script states its defaults and calls
:func:`extraction_main` / :func:`ground_truth_main`.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Optional, Sequence

from .pipeline import probe_agreement, write_ground_truth_file

__all__ = ["extraction_main", "ground_truth_main"]


def extraction_main(module, description: str, *, candidates, dataset: str, split: str, encoders, cache_dir,
                    data_root=None, argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--candidates", nargs="+", default=list(candidates), help="backbone+text_encoder names")
    p.add_argument("--dataset", default=dataset)
    p.add_argument("--split", default=split)
    p.add_argument("--encoders", nargs="+", default=list(encoders), help="text encoders of the label texts")
    p.add_argument("--cache-dir", default=cache_dir)
    p.add_argument("--data-root", default=data_root, help="root of the full-scale datasets ($MODEL_SELECTOR_DATA)")
    p.add_argument("--weights-dir", default=None, help="local weights of the fused transformers candidates "
                                                         "(tasks.fused_models; default $MODEL_SELECTOR_WEIGHTS)")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    status = module.extract(a.candidates, cache_dir=a.cache_dir, dataset=a.dataset, split=a.split, encoders=a.encoders,
                            data_root=a.data_root, device=a.device, progress=not a.quiet, weights_dir=a.weights_dir)
    done = sum(s == "extracted" for s in status.values())
    print(f"{done} extracted, {len(status) - done} already cached, in {a.cache_dir}")
    return 0


def ground_truth_main(module, description: str, *, group: str, measure: str, unit: str, about: dict, candidates: dict,
                      dataset: str, cache_dir, output: dict, partial: dict, argv: Optional[Sequence[str]] = None) -> int:
    """``about``, ``candidates``, ``output`` and ``partial`` map each ground-truth mode to its value;
    the table's group is ``group`` for the fine-tuned mode and ``{group}_{mode}`` otherwise."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=sorted(output), default="finetuned",
                   help="finetuned: backbone + head end to end (the committed table); head: the head on frozen features")
    p.add_argument("--candidates", nargs="+", default=None, help="default: the mode's candidates")
    p.add_argument("--dataset", default=dataset)
    p.add_argument("--cache-dir", default=cache_dir)
    p.add_argument("--data-root", default=None)
    p.add_argument("--output", type=Path, default=None, help="ground-truth JSON (default: the mode's table)")
    p.add_argument("--partial", type=Path, default=None, help="resumable per-candidate runs (default: the mode's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: 2 shared cores)")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    out = a.output or output[a.mode]
    runs = module.ground_truth(a.candidates or list(candidates[a.mode]), cache_dir=a.cache_dir,
                               partial_path=a.partial or partial[a.mode], dataset=a.dataset, mode=a.mode,
                               data_root=a.data_root, device=a.device, progress=not a.quiet)
    table_group = group if a.mode == "finetuned" else f"{group}_{a.mode}"
    protocol = {**module.GT_PROTOCOLS[a.mode], "torch": torch.__version__, "threads": a.threads,
                "machine": platform.machine(), "processor": platform.processor() or None}
    agreement = probe_agreement(runs)
    path = write_ground_truth_file(out, group=table_group, dataset=a.dataset, measure=measure, unit=unit, runs=runs,
                                   about=about[a.mode], protocol=protocol,
                                   source=f"{Path(sys.argv[0]).name} --mode {a.mode} (this repository)",
                                   extra=None if agreement is None else {"probe_agreement": agreement})
    if agreement is not None:
        print(f"Kendall tau, fine-tuned vs probe stage: {agreement['kendall_tau']} over {agreement['n']} candidates")
    print(f"wrote {path}")
    return 0
