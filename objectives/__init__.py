"""Objectives: tasks (data + metric) and the accuracy / latency / Flash / SRAM evaluation."""

from .evaluate import (
    DIRECTIONS,
    ConstraintsConfig,
    Evaluation,
    ObjectivesConfig,
    evaluate_candidate,
    measure_candidate,
    model_costs,
    train_candidate,
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
    "measure_candidate",
    "model_costs",
    "register_loader",
    "register_task",
    "train_candidate",
]
