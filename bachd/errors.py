"""Errors bachd reports to the user as one line, without a traceback."""


class BachdError(Exception):
    """A problem with the user's input or environment, worded for the user."""
