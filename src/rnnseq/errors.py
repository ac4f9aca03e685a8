"""Errors a user can cause. Each message names the file, line, key or option at fault.

The CLI prints these as one line and exits with status 2; anything else is a bug and shows a
traceback.
"""


class RnnseqError(Exception):
    """Base class of every error caused by input, configuration or environment."""


class ConfigError(RnnseqError, ValueError):
    """A configuration key or value is wrong."""


class DataError(RnnseqError, ValueError):
    """Input data is invalid."""


class ModelDirError(RnnseqError, ValueError):
    """A model directory is missing, incomplete, tampered with or unsafe."""


class TrainingError(RnnseqError, RuntimeError):
    """Training cannot start or continue."""


class OutputError(RnnseqError, OSError):
    """An output file or directory cannot be written (read-only, missing, disk full...)."""


class UsageError(RnnseqError, ValueError):
    """An argument value is out of range."""
