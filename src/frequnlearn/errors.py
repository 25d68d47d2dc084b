"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


class FrequnlearnError(Exception):
    """Bad input, config or state, with a message that names the field and the fix."""


class ConfigError(FrequnlearnError):
    """A config key is unknown, of the wrong type, or holds an impossible value."""


class DataError(FrequnlearnError):
    """An input table or data directory is missing, malformed or inconsistent."""


class TrainingError(FrequnlearnError):
    """Training cannot go on (e.g. the loss became NaN); what was written is kept."""
