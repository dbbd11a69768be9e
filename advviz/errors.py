"""User-facing errors.

Anything a user can cause (bad flag, missing file, malformed data) raises :class:`AdvvizError`;
the CLI turns it into one line on stderr and a non-zero exit code. Programming errors stay
ordinary exceptions so that they keep their tracebacks.
"""


class AdvvizError(Exception):
    """An error caused by user input; its message is shown as-is, on one line."""

    exit_code = 2
