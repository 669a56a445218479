"""The one error family the CLI prints as a single clear line (no traceback): bad input or state."""


class DlpipeError(Exception):
    """A user-facing failure whose message names the problem and, where possible, the fix."""


class DataError(DlpipeError, ValueError):
    """Input data is malformed: a missing column, NaNs, a non-numeric feature, an unreadable file."""


class TransferError(DlpipeError):
    """init_from cannot be used: not found, no matching weights, or weights absent from the torch cache."""
