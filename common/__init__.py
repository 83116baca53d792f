"""Small building blocks shared by every package of the project (no heavy dependencies)."""
from .registry import Registry

__all__ = ["Registry"]
