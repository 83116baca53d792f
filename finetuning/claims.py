"""Exclusive claims of (model, dataset) cells among the runs that fill one partial-results file.

Several ``finetune.py`` processes (or Ray tasks of several invocations) may share one partial file;
the store merges their finished runs (:class:`finetuning.results.ResultsStore`), and a claim keeps
two of them from training the same cell at once. A cell's claim is the file
``{partial}.claims/{dataset}/{model}.claim``, holding ``{"pid", "host", "token", "started"}`` and
kept fresh by its holder, which touches it every ``heartbeat_s`` seconds from a daemon thread.
A claim is **stale**, and may be taken over, when its holder's process is gone (same host: no such
pid) or its heartbeat is older than ``stale_after_s`` (any host: a killed machine, a lost
cluster worker). Check, take-over and creation happen under :func:`data.cache.entry_lock` of the
claim file, so two runs never both hold a cell; the holder removes its claim when it is done,
also on an exception (a SIGKILL leaves a claim that goes stale).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

__all__ = ["CellClaims"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, owned by another user
        return True
    return True


class CellClaims:
    """Claims of the cells of the partial-results file ``partial_path`` (module docstring)."""

    def __init__(self, partial_path: str | os.PathLike, *, heartbeat_s: float = 60.0,
                 stale_after_s: float = 600.0):
        if not (0 < heartbeat_s < stale_after_s):
            raise ValueError(f"need 0 < heartbeat_s < stale_after_s, got {heartbeat_s} and {stale_after_s}")
        partial_path = Path(partial_path)
        self.root = partial_path.parent / f"{partial_path.name}.claims"
        self.heartbeat_s, self.stale_after_s = float(heartbeat_s), float(stale_after_s)
        self.host = socket.gethostname()

    def path(self, model: str, dataset: str) -> Path:
        return self.root / dataset / f"{model}.claim"

    def holder(self, model: str, dataset: str) -> Optional[dict]:
        """The live claim of the cell (its JSON), or ``None`` when nobody holds it (or the claim is stale)."""
        path = self.path(model, dataset)
        try:
            claim = json.loads(path.read_text(encoding="utf-8"))
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None                  # unreadable: treated as stale (its writer died mid-write)
        if age > self.stale_after_s:
            return None
        if claim.get("host") == self.host and not _pid_alive(int(claim.get("pid", -1))):
            return None
        return claim

    def live(self) -> List[Tuple[str, str, dict]]:
        """``(model, dataset, claim)`` of every cell some live run holds now (sorted)."""
        out = []
        for path in sorted(self.root.glob("*/*.claim")) if self.root.is_dir() else []:
            model, dataset = path.name[:-len(".claim")], path.parent.name
            claim = self.holder(model, dataset)
            if claim is not None:
                out.append((model, dataset, claim))
        return out

    @contextlib.contextmanager
    def claim(self, model: str, dataset: str) -> Iterator[bool]:
        """``with claims.claim(m, d) as mine:`` -- ``mine`` is True when this process now holds the
        cell (released on exit), False when another live run holds it (nothing to release)."""
        from data.cache import atomic_save_json, entry_lock

        path = self.path(model, dataset)
        token = uuid.uuid4().hex
        with entry_lock(path):
            if self.holder(model, dataset) is not None:
                mine = False
            else:
                atomic_save_json(path, {"pid": os.getpid(), "host": self.host, "token": token,
                                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                mine = True
        if not mine:
            yield False
            return
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat_s):
                with contextlib.suppress(OSError):
                    os.utime(path)

        thread = threading.Thread(target=beat, name=f"claim {dataset}/{model}", daemon=True)
        thread.start()
        try:
            yield True
        finally:
            stop.set()
            thread.join()
            with entry_lock(path):
                with contextlib.suppress(FileNotFoundError, OSError, ValueError):
                    if json.loads(path.read_text(encoding="utf-8")).get("token") == token:
                        path.unlink()
