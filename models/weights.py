"""Where local pre-trained weights live.

Nothing in this package downloads anything. Models whose weights are not shipped inside a
registry package read them from a local directory: the ``weights_dir`` argument, else the
environment variable ``MODEL_SELECTOR_WEIGHTS``. Each registry entry documents the file (or
folder) name it expects there (``models.model_info(name).weights``, and ``docs/models.md``).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WEIGHTS_ENV", "resolve_weights_dir", "require_weights"]

WEIGHTS_ENV = "MODEL_SELECTOR_WEIGHTS"


def resolve_weights_dir(weights_dir: str | os.PathLike | None) -> Path | None:
    """``weights_dir`` if given, else ``$MODEL_SELECTOR_WEIGHTS``, else ``None``."""
    if weights_dir is not None:
        return Path(weights_dir)
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else None


def require_weights(weights_dir: str | os.PathLike | None, relpath: str, *, model: str,
                    what: str, is_dir: bool = False) -> Path:
    """Path of the weights ``relpath`` of ``model`` inside the weights directory.

    Raises :class:`FileNotFoundError` naming the full expected path and what to put there
    (``what``) when the directory is not configured or the file/folder is missing.
    """
    root = resolve_weights_dir(weights_dir)
    kind = "folder" if is_dir else "file"
    if root is None:
        raise FileNotFoundError(
            f"model {model!r} needs the local weights {kind} {relpath!r} ({what}), but no weights "
            f"directory is configured: pass weights_dir=... or set ${WEIGHTS_ENV} to the directory "
            f"that holds {relpath!r}.")
    path = root / relpath
    exists = path.is_dir() if is_dir else path.is_file()
    if not exists:
        raise FileNotFoundError(
            f"model {model!r}: weights {kind} not found: {path} -- put {what} there "
            f"(weights directory {root}, from weights_dir or ${WEIGHTS_ENV}).")
    return path
