"""Search: study config, storage, the Optuna objective, samplers and the ``jointnas`` CLI."""

from .config import StudyConfig, load_config, parse_config
from .objective import Objective, TrialFailed
from .storage import mask_password, open_storage
from .study import create_or_resume, front, run_study

__all__ = [
    "Objective",
    "StudyConfig",
    "TrialFailed",
    "create_or_resume",
    "front",
    "load_config",
    "mask_password",
    "open_storage",
    "parse_config",
    "run_study",
]
