"""The one exception the data package raises for bad input (paths, sizes, modes, splits)."""


class DataError(ValueError):
    """A data source or option is unusable; the one-line message names the culprit."""
