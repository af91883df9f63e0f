"""Every error fmexp raises on purpose, in one place.

Two families, told apart by the command's exit status:

- ``UserError`` (status 2): bad input that the user can fix: a config file, a key, a value, a
  missing or unreadable input file. The message names the file, the key and the allowed values.
- ``RunError`` (status 1): a run that failed on its own account on good input: its training
  diverged, or an ODE solve failed. The message names the stage, the run and the seed.

Neither prints a traceback from the ``fmexp`` command.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "ArtifactError", "RunError", "SolverError", "TrainingDiverged", "RunFailed"]


class UserError(Exception):
    """Bad input: the ``fmexp`` command prints the message and exits with status 2."""


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the file and the dotted key."""


class ArtifactError(ConfigError):
    """A stored file that cannot be read: truncated, corrupt, or not what its name says."""


class RunError(RuntimeError):
    """A run failed on good input: the ``fmexp`` command prints the message and exits with status 1."""


class SolverError(RunError):
    """The solver could not integrate the field: the adaptive step underflowed, or the state became
    non-finite (a diverged or untrained field)."""


class TrainingDiverged(RunError):
    """Training diverged at a known step: a non-finite loss, a loss grown past ``DIVERGENCE_FACTOR``
    times its value at the first step (the untrained network's), or a solver failure while evaluating
    the curve."""


class RunFailed(RunError):
    """A seed's run failed (``SolverError`` or ``TrainingDiverged``); the message names the stage, the
    run and the seed."""
