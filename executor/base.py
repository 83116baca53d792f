"""The executor interface: run a list of independent units of work, in-process or on a Ray cluster.

A *unit* is a small picklable description of one piece of a grid (one (model, dataset) pair to
extract, one group of hub models to label, one fine-tuning run), typically a frozen dataclass
with a ``run()`` method that calls the serial code for that single unit and a ``resources``
attribute (:class:`Resources`). Units must be idempotent: their results live in the atomic,
record-checked cache files of :mod:`data.cache`, so a finished unit found valid is skipped and a
unit killed mid-way is simply run again.

``executor.map(fn, units, resources=...) -> [fn(u) for u in units]`` (results in the units'
order). Executors are registered in :data:`EXECUTORS` (``"serial"``, ``"ray"``) and built with
:func:`create_executor`; use them as context managers (``close()`` releases what they started).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

from common import Registry

__all__ = ["Resources", "Executor", "SerialExecutor", "EXECUTORS", "create_executor", "run_unit",
           "unit_resources", "UnitFailedError"]


@dataclass(frozen=True)
class Resources:
    """What one unit asks of a worker: CPU cores, GPUs (fractions allowed, as in Ray), memory in
    bytes (``None``: no reservation)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: Optional[int] = None

    def __post_init__(self):
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"resources must be >= 0, got num_cpus={self.num_cpus}, num_gpus={self.num_gpus}")
        if self.memory is not None and self.memory <= 0:
            raise ValueError(f"memory must be a positive number of bytes, got {self.memory}")


class UnitFailedError(RuntimeError):
    """A unit raised or its worker died (the message names the unit; rerunning resumes)."""


def run_unit(unit) -> Any:
    """The default ``fn`` of :meth:`Executor.map`: ``unit.run()``."""
    return unit.run()


def unit_resources(unit, default: Optional[Resources] = None) -> Resources:
    """``default`` when given, else the unit's own ``resources`` attribute, else one CPU."""
    if default is not None:
        return default
    res = getattr(unit, "resources", None)
    return res if isinstance(res, Resources) else Resources()


class Executor(ABC):
    """Runs ``fn`` over units; subclasses decide where (this process, a Ray cluster)."""

    name = "abstract"
    #: True when units run in other processes (a caller may then prefill caches through the
    #: executor first); False for the in-process serial executor
    distributed = False

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, resources: Optional[Resources] = None,
            desc: str = "units", progress: bool = True) -> List[Any]:
        """``[fn(u) for u in units]`` in the units' order; ``resources`` overrides every unit's own
        (:func:`unit_resources`). Finished units' results are on disk, so after a failure a rerun
        does only what is left."""

    @classmethod
    def from_args(cls, args) -> "Executor":
        """Build from the options of :func:`executor.cli.add_executor_arguments`."""
        return cls()

    def close(self) -> None:
        """Release what this executor started (nothing for the serial one)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


EXECUTORS: Registry = Registry("executor")


@EXECUTORS.register("serial")
class SerialExecutor(Executor):
    """One unit after the other in this process (no cluster, the default of every script).
    ``resources`` are ignored: the unit uses whatever this process has. Fails fast: the first
    unit that raises stops the map with its own exception (as the serial loops always did)."""

    name = "serial"

    @classmethod
    def from_args(cls, args) -> "SerialExecutor":
        if getattr(args, "ray_address", None):
            raise ValueError("--ray-address needs --executor ray")
        return cls()

    def map(self, fn, units, *, resources=None, desc="units", progress=True):
        from tqdm.auto import tqdm
        units = list(units)
        return [fn(unit) for unit in tqdm(units, desc=desc, unit="unit", disable=not progress or len(units) < 2)]


def create_executor(name: str, **kwargs) -> Executor:
    """``EXECUTORS[name](**kwargs)``; ``"ray"`` takes ``address=`` (join a running cluster; ``None``:
    start a local runtime) and the local runtime's ``num_cpus`` / ``num_gpus`` /
    ``object_store_memory``."""
    return EXECUTORS[name](**kwargs)
