"""The user-facing errors: `SpamtuneError` and the kinds the CLI and the service tell apart.

Anything raised as one of these is a mistake the user can fix (a bad flag, a damaged file, a missing model); the
CLI prints its message on one line and exits 2, the service answers with a 4xx/5xx JSON message. Every other
exception is a bug and keeps its traceback.
"""


class SpamtuneError(Exception):
    """Bad input or a state the user can fix: the message is shown as is, without a traceback."""


class ConfigError(SpamtuneError, ValueError):
    """A setting that cannot work (a flag value, a combination of flags, an architecture). Also a `ValueError`,
    so Python callers that validate with `except ValueError` keep working."""


class DataError(SpamtuneError):
    """A data file or message input that cannot be read as what it claims to be (CSV, TSV, labels.json, UTF-8)."""


class CheckpointError(SpamtuneError):
    """A run directory that is missing, unfinished, damaged or does not fit the model it names."""


class ModelSourceError(SpamtuneError):
    """A model spec, weights file or tokenizer that cannot be found, downloaded or read."""
