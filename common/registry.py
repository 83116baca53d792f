"""One generic name -> object registry, used by every registry of the project.

A :class:`Registry` is a read-only mapping with a decorator that adds to it::

    OPTIMIZERS = Registry("optimizer")

    @OPTIMIZERS.register("adamw")
    def _adamw(groups, lr): ...

    OPTIMIZERS["adamw"]          # KeyError "unknown optimizer 'x'; available: adamw, sgd" if absent
    sorted(OPTIMIZERS), "adamw" in OPTIMIZERS, OPTIMIZERS.items()

Registering a name twice is a ``ValueError`` (two definitions of one name are a bug, not an override);
names must be non-empty strings.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, Mapping, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Read-only ``{name: object}`` mapping filled by :meth:`register`; ``kind`` names the entries
    in error messages (``"text encoder"``, ``"optimizer"``, ...)."""

    def __init__(self, kind: str):
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"registry kind must be a non-empty string, got {kind!r}")
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name`` (returned unchanged)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name``; ``ValueError`` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = obj
        return obj

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._entries))}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
