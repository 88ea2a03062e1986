"""The one exception type a step reports as a one-line cause (exit 1) instead of a traceback."""


class StepError(Exception):
    """A failure with a cause the user can act on; ``str(err)`` is one line with the way forward."""
