"""The one exception the data package raises for bad input (paths, sizes, modes, splits, files)."""

from ttsr.errors import UsageError

_WORKER_PREFIX = "Caught DataError"  # how torch's DataLoader re-raises a worker's exception


class DataError(UsageError, ValueError):
    """A data source or option is unusable; the one-line message names the culprit.

    A DataLoader worker's DataError reaches the main process as
    ``DataError("Caught DataError in DataLoader worker process N.\\nOriginal Traceback ...")``
    with the worker's whole traceback; only the original one-line message is kept, so that the
    CLIs still print one line.
    """

    def __init__(self, message: str) -> None:
        lines = str(message).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith(_WORKER_PREFIX):
            message = lines[-1].split("DataError: ", 1)[-1]
        super().__init__(message)
