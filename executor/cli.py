"""The ``--executor`` options shared by the scripts that run grids (forward_feature_*.py,
mll_benchmark.py, finetune.py)."""
from __future__ import annotations

import argparse

from .base import EXECUTORS, Executor, Resources

__all__ = ["add_executor_arguments", "executor_from_args", "executor_resources"]


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_executor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = parser.add_argument_group("executor (docs/ray.md)")
    g.add_argument("--executor", choices=sorted(EXECUTORS), default="serial",
                   help="serial: in this process; ray: one Ray task per unit of work")
    g.add_argument("--ray-address", default=None,
                   help="join this running Ray cluster ('auto', 'host:6379', 'ray://host:10001'); "
                        "default: start a local runtime")
    g.add_argument("--ray-num-cpus", type=int, default=None,
                   help="CPUs of the local Ray runtime (default: min(2, cores))")
    g.add_argument("--cpus-per-task", type=_non_negative, default=1.0, help="Ray: CPUs reserved per unit")
    g.add_argument("--gpus-per-task", type=_non_negative, default=0.0,
                   help="Ray: GPUs reserved per unit (1 on a GPU cluster; 0.5 packs two units per GPU)")
    return parser


def executor_from_args(args: argparse.Namespace) -> Executor:
    """``EXECUTORS[args.executor].from_args(args)`` (a ValueError for options the executor lacks)."""
    return EXECUTORS[args.executor].from_args(args)


def executor_resources(args: argparse.Namespace) -> Resources:
    return Resources(num_cpus=args.cpus_per_task, num_gpus=args.gpus_per_task)
