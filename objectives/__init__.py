"""Objectives: tasks (data + metric) and the accuracy / latency / Flash / SRAM evaluation."""

from .evaluate import (
    DIRECTIONS,
    ConstraintsConfig,
    Evaluation,
    ObjectivesConfig,
    evaluate_candidate,
    model_costs,
)
from .tasks import TaskConfig, TaskData, dataset_names, load_task, register_loader, register_task

__all__ = [
    "DIRECTIONS",
    "ConstraintsConfig",
    "Evaluation",
    "ObjectivesConfig",
    "TaskConfig",
    "TaskData",
    "dataset_names",
    "evaluate_candidate",
    "load_task",
    "model_costs",
    "register_loader",
    "register_task",
]
