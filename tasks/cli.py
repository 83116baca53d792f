"""Command lines shared by the task scripts (``forward_feature_{task}.py``, ``finetune_{task}.py``).

A task module exposes ``CANDIDATES``, ``DATASET``, ``GT_PROTOCOL``, ``extract(candidates, *,
cache_dir, dataset, split, encoders, data_root, device, progress)`` and ``ground_truth(candidates, *,
cache_dir, partial_path, dataset, data_root, device)``; each script states its defaults and calls
:func:`extraction_main` / :func:`ground_truth_main`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .pipeline import write_ground_truth_file

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


def ground_truth_main(module, description: str, *, group: str, measure: str, unit: str, about: str, candidates,
                      dataset: str, cache_dir, output: Path, partial: Path, argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--candidates", nargs="+", default=list(candidates))
    p.add_argument("--dataset", default=dataset)
    p.add_argument("--cache-dir", default=cache_dir)
    p.add_argument("--data-root", default=None)
    p.add_argument("--output", type=Path, default=output, help="ground-truth JSON (schema of data.ground_truth)")
    p.add_argument("--partial", type=Path, default=partial, help="resumable per-candidate runs")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    runs = module.ground_truth(a.candidates, cache_dir=a.cache_dir, partial_path=a.partial, dataset=a.dataset,
                               data_root=a.data_root, device=a.device)
    path = write_ground_truth_file(a.output, group=group, dataset=a.dataset, measure=measure, unit=unit, runs=runs,
                                   about=about, protocol=module.GT_PROTOCOL, source=f"{Path(sys.argv[0]).name} (this repository)")
    print(f"wrote {path}")
    return 0
