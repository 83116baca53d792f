"""The task-plugin contract: one module per target task fills every registry that task needs.

A target task (``vqa``, ``rec``, ``tqa``, ...) is one module under :mod:`tasks` that builds a
:class:`TaskPlugin` and calls :func:`register_task` once, at import. Registering a plugin adds

* its :class:`evaluation.runner.TaskSpec` (s) to ``evaluation.runner.TASKS`` (what ``--task`` names),
* its :class:`evaluation.inputs.LabelSource` (s) to ``evaluation.inputs.LABEL_SOURCES``,
* its :class:`data.registry.DatasetSpec` (s) to the data registry (``data.get_dataset``),
* itself to :data:`TASK_PLUGINS` (its candidate models, label texts and scripts, for the task CLIs).

Nothing outside the task's module names the task: the evaluation CLI imports :mod:`tasks` (which
imports every module of ``tasks.TASK_MODULES``) and looks ``--task`` up in the registries. Layering:
``tasks`` imports ``evaluation`` / ``data`` / ``models``; those never import ``tasks`` at module level
(``evaluation.cli`` imports it inside ``main``).

The label text of a sample (what is embedded per sample, EMMS's F-label) is stated by each plugin in
``label_text`` (docs/tasks.md lists them). ``evaluate_script`` says which evaluation script runs
the task (the EMMS README's grouping: vocabulary tasks through ``evaluate_metric_cls.py``, one label
text per sample through ``evaluate_metric_caption.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Tuple

from common import Registry
from data.registry import DatasetSpec, register_dataset
from evaluation.inputs import LABEL_SOURCES, LabelSource
from evaluation.runner import TASKS, TaskSpec

__all__ = ["TaskPlugin", "TASK_PLUGINS", "EVALUATE_SCRIPTS", "register_task", "get_task_plugin",
           "metrics_for"]

#: the evaluation scripts a task can run through (EMMS README grouping)
EVALUATE_SCRIPTS = ("evaluate_metric_cls.py", "evaluate_metric_caption.py")


@dataclass(frozen=True)
class TaskPlugin:
    """Everything one target task registers.

    name : the task's ``--task`` value (also the key of its main TaskSpec).
    specs : TaskSpecs to register (the first is the main one; variants such as another label text
        get their own names).
    label_sources : LabelSources to register (empty: the specs use existing ones).
    datasets : DatasetSpecs to register (built offline sets and full-scale loaders).
    evaluate_script : one of :data:`EVALUATE_SCRIPTS`.
    label_text : one line per spec name: what text is embedded per sample.
    measure : the fine-tuned measure of the ground truth ("accuracy", "Acc@0.5", "F1").
    candidates : ``{candidate name: description}`` of the task's candidate models (offline ones).
    description : one line.
    extra : anything else the task module wants to expose (e.g. its extraction entry points).
    """

    name: str
    specs: Tuple[TaskSpec, ...]
    evaluate_script: str
    label_text: Mapping[str, str]
    measure: str
    description: str
    label_sources: Tuple[LabelSource, ...] = ()
    datasets: Tuple[DatasetSpec, ...] = ()
    candidates: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        if not self.specs or self.specs[0].name != self.name:
            raise ValueError(f"task plugin {self.name!r}: its first TaskSpec must be named {self.name!r}")
        if self.evaluate_script not in EVALUATE_SCRIPTS:
            raise ValueError(f"task plugin {self.name!r}: evaluate_script must be one of {EVALUATE_SCRIPTS}, "
                             f"got {self.evaluate_script!r}")
        missing = [s.name for s in self.specs if s.name not in self.label_text]
        if missing:
            raise ValueError(f"task plugin {self.name!r}: no label_text stated for {missing}")
        known = set(LABEL_SOURCES) | {s.name for s in self.label_sources}
        unknown = [s.label_source for s in self.specs if s.label_source not in known]
        if unknown:
            raise ValueError(f"task plugin {self.name!r}: unknown label source(s) {unknown}")


#: name -> TaskPlugin
TASK_PLUGINS: Registry[TaskPlugin] = Registry("task plugin")


def register_task(plugin: TaskPlugin) -> TaskPlugin:
    """Add ``plugin`` and everything it declares to the project's registries (once per name)."""
    TASK_PLUGINS.add(plugin.name, plugin)
    for source in plugin.label_sources:
        LABEL_SOURCES.add(source.name, source)
    for spec in plugin.specs:
        TASKS.add(spec.name, spec)
    for ds in plugin.datasets:
        register_dataset(ds)
    return plugin


def get_task_plugin(name: str) -> TaskPlugin:
    """The plugin that registered task ``name`` (a variant spec name resolves to its plugin)."""
    if name in TASK_PLUGINS:
        return TASK_PLUGINS[name]
    for plugin in TASK_PLUGINS.values():
        if any(s.name == name for s in plugin.specs):
            return plugin
    raise KeyError(f"unknown task {name!r}; tasks with a plugin: {', '.join(sorted(TASK_PLUGINS))}")


def metrics_for(provides) -> Tuple[str, ...]:
    """Every registered metric whose ``requires`` the inputs ``provides`` can feed (registry order)."""
    import metrics as metrics_lib
    out = []
    for name in metrics_lib.list_metrics():
        if set(getattr(metrics_lib.get_metric(name), "requires", ())) <= set(provides):
            out.append(name)
    return tuple(out)
