"""The training tasks, registered by name; `SelectorConfig.task_weights` says which run and how much.

A task is one small module here: a `Task` subclass with a `name` (the key in task_weights and in
the objective's loss dict) whose `__call__(step)` runs what its head needs and returns
`{name: loss}` (or nothing when the batch has nothing for it), plus any named extras later
tasks read (`provides` / `reads`). `core.training.objective.MultitaskObjective` runs the configured tasks
in registration order and adds up weight * loss. See README "Adding a task".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch

if TYPE_CHECKING:
    from core.training.objective import MultitaskObjective


@dataclass
class Step:
    """One training step's shared inputs (drawn once by the objective, in a fixed order)."""

    samples: Sequence[dict]
    contexts: list[list[int]]     # tokenised dialogues
    gold: list[int]               # bank rows of the gold stickers
    negative: list[int]           # one drawn negative row per sample
    generator: torch.Generator    # every random draw of the step
    device: torch.device
    mask_ocr_inputs: bool         # not config.ocr_in_inputs: the OCR run is all [MASK] in the inputs
    wanted: frozenset[str] = frozenset()      # extras some configured task reads
    shared: dict[str, Any] = field(default_factory=dict)  # extras returned by the tasks so far


class Task:
    """Base of the training tasks. Subclass, set `name`, implement `__call__`, decorate with
    `@register_task`. `self.objective` gives the model, encoder, bank and negative sampler."""

    name: ClassVar[str] = ""
    provides: ClassVar[tuple[str, ...]] = ()   # extras this task can return for later tasks
    reads: ClassVar[tuple[str, ...]] = ()      # extras it needs from an earlier task

    def __init__(self, objective: "MultitaskObjective"):
        self.objective = objective
        self.model, self.encoder, self.bank = objective.model, objective.encoder, objective.bank

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        raise NotImplementedError


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: makes `cls` available in task_weights under `cls.name`."""
    if not cls.name or cls.name == "loss":
        raise ValueError(f"task class {cls.__name__} needs a name other than {cls.name!r}")
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"task name {cls.name!r} is taken by {TASKS[cls.name].__name__}")
    TASKS[cls.name] = cls
    return cls


def active_tasks(weights: Mapping[str, float]) -> list[str]:
    """Names with a weight above 0, in registration order; raises naming unknown or ill-ordered ones."""
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown} in task_weights; registered tasks: {list(TASKS)}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or not 0 <= v < float("inf")}
    if bad:
        raise ValueError(f"task_weights {bad}: a weight is a finite number >= 0 (0: the task is off)")
    names = [name for name in TASKS if weights.get(name, 0) > 0]
    provided: set[str] = set()
    for name in names:
        missing = [extra for extra in TASKS[name].reads if extra not in provided]
        if missing:
            providers = [n for n, cls in TASKS.items() if set(missing) & set(cls.provides)]
            raise ValueError(f"task {name!r} reads {missing}, which no task before it in task_weights "
                             f"{dict(weights)} provides (add one of {providers})")
        provided |= set(TASKS[name].provides)
    return names


from . import matching, emotion, masked_context, semantic  # noqa: E402,F401  (registration order = run order)
