"""Target tasks beyond classification and captioning (EMMS: VQA, REC, TQA), one module per task.

``import tasks`` imports every module listed in :data:`TASK_MODULES`; each registers its
:class:`tasks.base.TaskPlugin` (TaskSpec, label source, datasets, candidates). Adding a task = adding
its module and its name here (docs/tasks.md, "Adding a task").
"""
from __future__ import annotations

import importlib

from .base import EVALUATE_SCRIPTS, TASK_PLUGINS, TaskPlugin, get_task_plugin, metrics_for, register_task

__all__ = ["TASK_MODULES", "TASK_PLUGINS", "TaskPlugin", "EVALUATE_SCRIPTS", "get_task_plugin", "metrics_for",
           "register_task", "load_all"]

#: the task modules imported (and so registered) by ``import tasks``
TASK_MODULES = ("tasks.vqa", "tasks.rec", "tasks.tqa")


def load_all() -> None:
    """Import every module of :data:`TASK_MODULES` (idempotent: Python imports a module once)."""
    for module in TASK_MODULES:
        importlib.import_module(module)


load_all()
