"""Search: study config, storage, the Optuna objective, samplers (core); ``tools`` and ``cli`` above it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jointnas.spaces._lazy import lazy_exports

if TYPE_CHECKING:
    from .config import StudyConfig, load_config, parse_config
    from .objective import Objective, TrialFailed
    from .storage import mask_password, open_storage
    from .study import create_or_resume, front, run_study

_EXPORTS = {
    **dict.fromkeys(("StudyConfig", "load_config", "parse_config"), "config"),
    **dict.fromkeys(("Objective", "TrialFailed"), "objective"),
    **dict.fromkeys(("mask_password", "open_storage"), "storage"),
    **dict.fromkeys(("create_or_resume", "front", "run_study"), "study"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

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
