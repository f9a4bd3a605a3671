"""Errors bachd reports to the user as one line, without a traceback."""


class BachdError(Exception):
    """A problem with the user's input or environment, worded for the user."""


class SetupError(BachdError):
    """A problem with what bachd runs on (the MIDI system, a port, the model, the audio
    output): the command line points to ``bachd doctor``, which checks all of it."""
