"""Errors a user can act on.  Each names the file, line or parameter at fault."""


class CSRecError(Exception):
    """Base class of csrec's user-facing errors (the CLI prints these without a traceback)."""


class DataError(CSRecError):
    """A data file is missing or malformed, or preprocessing left nothing to train on."""


class ConfigError(CSRecError, ValueError):
    """A parameter has an invalid value or an unknown name."""
