"""Errors lmjax reports to users as one line (the entry points print them without a traceback)."""


class LmjaxError(Exception):
    """Base class: a problem with the user's input, config or files, not a bug in lmjax."""


class ConfigError(LmjaxError, ValueError):
    """A config value is out of range or inconsistent."""


class DataError(LmjaxError):
    """A corpus is missing, unreadable, empty or too short."""


class CheckpointError(LmjaxError):
    """A checkpoint or run directory cannot be used as asked."""


class TrainingDiverged(LmjaxError):
    """The loss (or the parameters) became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(LmjaxError):
    """SIGTERM or SIGINT stopped a run after it saved a checkpoint (exit status 128 + signal)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Pruned(LmjaxError):
    """A hyperparameter search's pruner stopped the run early (summary status "pruned"); the
    metrics logged so far are kept."""
