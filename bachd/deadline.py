"""A time limit for a job, and its cancellation, that the long loops check.

The studio runs file jobs on a worker thread, and a thread cannot be killed from outside.
So a job runs inside :func:`job_deadline`, and the loops that a long file makes long (the
simulated session's ticks, the renderer's seconds of audio) call :func:`check_deadline`,
which raises a one-line :class:`BachdError` once the limit has passed or the job was
cancelled. Outside a job (the command line) the check costs one lookup and does nothing:
there the user is the limit, and Ctrl-C the cancellation.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from bachd.errors import BachdError


class Deadline:
    def __init__(self, seconds: float, what: str = "the job"):
        self.seconds, self.what = seconds, what
        self.at = time.monotonic() + seconds
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise BachdError(f"{self.what} was cancelled")
        if time.monotonic() > self.at:
            raise BachdError(f"{self.what} ran past its limit of {self.seconds:g} s; try a shorter file or fewer bars")


_current: contextvars.ContextVar[Optional[Deadline]] = contextvars.ContextVar("bachd_deadline", default=None)


@contextmanager
def job_deadline(deadline: Deadline) -> Iterator[Deadline]:
    """Run the body under ``deadline`` (in this thread's context only)."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def check_deadline() -> None:
    """Raise if the job this thread runs is past its limit or cancelled."""
    deadline = _current.get()
    if deadline is not None:
        deadline.check()
