"""The Ray executor: one Ray task per unit, with the unit's resources (``num_cpus``, ``num_gpus``,
``memory``), results in the units' order, a tqdm bar over the completed tasks (``ray.wait``).

``RayExecutor(address=None)`` starts a local Ray runtime (``num_cpus`` workers, no dashboard,
a bounded object store) and shuts it down on :meth:`close`; ``address="auto"`` or
``"ray://host:10001"`` / ``"host:6379"`` joins a running cluster (left running on close). Workers
import the project from this checkout (its root is put on their ``PYTHONPATH``: on a multi-node
cluster the checkout and the cache directory must be on a shared filesystem, docs/ray.md).

A task whose worker dies (killed, out of memory, a lost node) is retried ``max_retries`` times by
Ray; the units' own idempotence (record-checked atomic cache files, per-entry locks, stale
temporary files removed under the lock) makes a retry or a rerun of the whole grid redo only
the units that had not finished. Each task sets torch to ``int(num_cpus)`` threads, so the same
unit gives the same bytes wherever it runs.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, List, Optional

from .base import EXECUTORS, Executor, Resources, UnitFailedError, unit_resources

__all__ = ["RayExecutor", "RayStartError", "PROJECT_ROOT"]

#: the checkout the workers import the project from
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RayStartError(RuntimeError):
    """Ray is missing, or the local runtime / the cluster at ``address`` could not be started or reached."""


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a pinned dependency
        raise RayStartError("the ray executor needs the `ray` package: .venv/bin/pip install ray==2.60.0 "
                            "(or use --executor serial)") from exc
    return ray


def _run_in_worker(fn, unit, num_threads: int):
    """Body of every task: fixed torch thread count (deterministic bytes), then ``fn(unit)``."""
    import torch
    torch.set_num_threads(max(1, int(num_threads)))
    return fn(unit)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast (instead of Ray's long reconnect loop) when ``host:port`` / ``ray://host:port``
    accepts no TCP connection; ``"auto"`` / ``"local"`` are left to Ray."""
    hostport = address.split("://", 1)[-1]
    if address in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise RayStartError(f"no Ray cluster reachable at {address!r} ({type(exc).__name__}: {exc}); start one with "
                            "`ray start --head`, fix --ray-address, or use --executor serial") from None


def _init(ray, **kwargs) -> None:
    """``ray.init(**kwargs)`` with its failures as one :class:`RayStartError` line."""
    where = kwargs.get("address") or "a local runtime"
    try:
        ray.init(**kwargs)
    except Exception as exc:
        raise RayStartError(f"could not start Ray ({where}): {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _environ(**values: str):
    """Set environment variables for the duration of the block (a local runtime's raylet, started
    inside ``ray.init``, passes its environment on to every worker)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Units as Ray tasks. ``address``: a running cluster (``None``: a local runtime with
    ``num_cpus`` CPUs (default ``min(2, os.cpu_count())``), ``num_gpus`` GPUs (default: Ray's
    detection) and ``object_store_memory`` bytes (default 200 MB: results are small, the arrays
    go to the cache files)); an ``address`` that accepts no connection within
    ``connect_timeout_s`` is a :class:`RayStartError` at once (Ray itself would retry for
    minutes). ``max_retries``: Ray's retries of a task whose worker died.
    ``log_to_driver``: show the workers' prints (stale-cache notes) here."""

    name = "ray"
    distributed = True

    def __init__(self, address: Optional[str] = None, *, num_cpus: Optional[int] = None,
                 num_gpus: Optional[int] = None, object_store_memory: Optional[int] = 200 * 1024 ** 2,
                 max_retries: int = 3, log_to_driver: bool = True, connect_timeout_s: float = 10.0):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        ray = _import_ray()
        self._ray, self.max_retries, self._started = ray, int(max_retries), False
        if address:
            _check_reachable(address, connect_timeout_s)
        if ray.is_initialized():           # a runtime this process already joined: reuse, never shut down
            return
        pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        kwargs: dict = dict(include_dashboard=False, log_to_driver=log_to_driver)
        if address:      # a running cluster: the workers get the path through the job's runtime env
            kwargs.update(address=address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
            _init(ray, **kwargs)
        else:            # a local runtime: its processes inherit this environment (no runtime-env agent)
            kwargs.update(num_cpus=num_cpus or min(2, os.cpu_count() or 1), object_store_memory=object_store_memory)
            if num_gpus is not None:
                kwargs["num_gpus"] = num_gpus
            with _environ(PYTHONPATH=pythonpath):
                _init(ray, **kwargs)
        self._started = True

    @classmethod
    def from_args(cls, args) -> "RayExecutor":
        return cls(address=args.ray_address, num_cpus=args.ray_num_cpus)

    def cluster_resources(self) -> dict:
        """Ray's view of the cluster (``{"CPU": 2.0, "GPU": 1.0, ...}``)."""
        return dict(self._ray.cluster_resources())

    def map(self, fn, units, *, resources: Optional[Resources] = None, desc: str = "units",
            progress: bool = True) -> List[Any]:
        from tqdm.auto import tqdm
        ray = self._ray
        units = list(units)
        if not units:
            return []
        task = ray.remote(_run_in_worker)
        fn_ref = ray.put(fn)
        refs = []
        for unit in units:
            res = unit_resources(unit, resources)
            opts = dict(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=self.max_retries)
            if res.memory is not None:
                opts["memory"] = int(res.memory)
            refs.append(task.options(**opts).remote(fn_ref, unit, max(1, int(res.num_cpus))))
        position = {ref: i for i, ref in enumerate(refs)}
        results: List[Any] = [None] * len(units)
        failures = []
        pending = list(refs)
        try:
            with tqdm(total=len(units), desc=desc, unit="unit", disable=not progress) as bar:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        i = position[ref]
                        try:
                            results[i] = ray.get(ref)
                        except ray.exceptions.RayTaskError as exc:     # the unit raised: its own error
                            failures.append((i, exc.cause if exc.cause is not None else exc))
                        except ray.exceptions.RayError as exc:         # worker died past its retries, ...
                            failures.append((i, exc))
                        bar.update(1)
        except BaseException:
            for ref in pending:                                         # Ctrl-C: stop what still runs
                ray.cancel(ref, force=True)
            raise
        if failures:
            i, exc = min(failures, key=lambda f: f[0])
            msg = str(exc).strip().splitlines()
            raise UnitFailedError(f"{len(failures)} of {len(units)} {desc} failed (the others are done; rerun to "
                                  f"resume); first: {units[i]!r}: {type(exc).__name__}: "
                                  f"{msg[0] if msg else ''}") from (exc if isinstance(exc, BaseException) else None)
        return results

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
