"""Every ``jointnas:*`` study and trial attribute name, in one place.

Study user attrs are written by ``jointnas run`` (and workers) and read by workers, export, the
dashboard note and reports; trial user attrs by the budget gate. Samplers keep their own namespaced
records (``dnas:*``, ``hardcore:*``) beside their code.

Example:
    >>> STUDY_CONFIG
    'jointnas:config'
"""

from __future__ import annotations

STUDY_CONFIG = "jointnas:config"
"""The canonical study config (a JSON-able dict, `StudyConfig.canonical`)."""
STUDY_CONFIG_HASH = "jointnas:config_hash"
"""SHA-256 of the canonical config: a resume with another config is refused."""
STUDY_SEED = "jointnas:seed"
"""The study seed; each trial trains with ``seed + trial.number``."""
STUDY_VERSIONS = "jointnas:versions"
"""Versions of jointnas, optuna, torch, onnxruntime, python that made the study."""
STUDY_N_TRIALS = "jointnas:n_trials"
"""The global COMPLETE budget of the last ``jointnas run`` (workers read it)."""
STUDY_ARTIFACT_DIR = "jointnas:artifact_dir"
"""Folder of the study's artifact store (trial models, supernets)."""

STUDY_SPACE_FILTER = "jointnas:space_filter"
"""The memory filter of the space's precision options (`jointnas.search.memory_filter.SpaceFilter.as_dict`):
limits, per layer (or stage) the options kept and the bytes each needs, stages whose every option fails."""

STUDY_SAMPLER_SEED = "jointnas:sampler_seed:"
"""Prefix of the study user attrs recording each run's or worker's sampler seed:
``jointnas:sampler_seed:<trials already in the study>:<host:pid>`` = the seed (`jointnas.search.study.seed_sampler`)."""

TRIAL_SURPLUS = "jointnas:surplus"
"""Set on a trial claimed after the budget was already reached (pruned before it ran), or crowded out
when its objective returned by a re-queued trial whose claim stands before it (pruned before it was told)."""
TRIAL_WORKER = "worker"
"""The worker (``host:pid``) that ran a trial; every trial records it, surplus ones too."""
TRIAL_FAIL_REASON = "fail_reason"
"""Why a trial FAILed (diverged, out of memory, interrupted, its worker stopped sending heartbeats)."""
TRIAL_LEASE = "jointnas:lease"
"""Trial system attr on journal storages: the ``time.time()`` its worker last renewed it (heartbeat)."""
TRIAL_RETRY_OF = "failed_trial"
"""Optuna's trial system attr on a re-queued trial (`optuna.storages.RetryFailedTrialCallback`): the
number of the first trial whose parameters it retries; the budget orders a retry's claim by it."""

__all__ = [
    "STUDY_ARTIFACT_DIR",
    "STUDY_CONFIG",
    "STUDY_CONFIG_HASH",
    "STUDY_N_TRIALS",
    "STUDY_SAMPLER_SEED",
    "STUDY_SEED",
    "STUDY_SPACE_FILTER",
    "STUDY_VERSIONS",
    "TRIAL_FAIL_REASON",
    "TRIAL_LEASE",
    "TRIAL_RETRY_OF",
    "TRIAL_SURPLUS",
    "TRIAL_WORKER",
]
