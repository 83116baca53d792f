"""Executors for the grids of independent units (extraction, MLL labeling, fine-tuning): serial in
this process or one Ray task per unit (docs/ray.md). ``create_executor("serial" | "ray", ...)``."""
from .base import (EXECUTORS, Executor, Resources, SerialExecutor, UnitFailedError, create_executor, run_unit,
                   unit_resources)
from . import ray_executor  # noqa: F401  (registers "ray"; imports ray only when one is created)
from .ray_executor import RayExecutor, RayStartError

__all__ = ["EXECUTORS", "Executor", "Resources", "SerialExecutor", "RayExecutor", "RayStartError", "UnitFailedError",
           "create_executor", "run_unit", "unit_resources"]
