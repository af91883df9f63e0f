"""Declarative Optuna studies of fmexp runs: the study file, the trial queue, storages and the runner.
``python -m fmexp.sweep STUDY`` is ``fmexp sweep STUDY``."""
