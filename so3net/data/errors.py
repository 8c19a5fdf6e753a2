"""The error raised for unreadable or inconsistent data files."""


class DataFormatError(ValueError):
    """A data file could not be read: names the file, the line or record, and the problem.

    ``str(err)`` reads ``"<path>, line 12: expected 3 coordinates, got 2"`` (or ``record 5``,
    ``key 'F'``); the parts are also kept as attributes ``path``, ``where`` and ``problem``.
    """

    def __init__(self, path, where, problem):
        self.path, self.where, self.problem = str(path), where, problem
        location = f"{self.path}, {where}" if where else self.path
        super().__init__(f"{location}: {problem}")
