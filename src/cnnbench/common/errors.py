"""The one base class of faults in a user's input: steps print them as one line, no traceback."""


class UserError(Exception):
    """Bad data, weights, settings or arguments: the message says what, where and how to fix."""
