"""Native libraries write to file descriptor 2 behind Python's back. python-rtmidi prints one
line for every message its full input queue drops ("message queue limit reached"): a flood
of input would bury the terminal under hundreds of thousands of lines and tell nobody how
many were lost. While bachd plays, fd 2 is a pipe; :meth:`StderrTap.pump` (run on a thread
by the daemon) counts those lines and passes everything else through to the real stderr,
which Python's own ``sys.stderr`` keeps writing to directly.
"""

from __future__ import annotations

import fcntl
import io
import os
import sys

QUEUE_FULL = b"message queue limit reached"
_F_SETPIPE_SZ = 1031  # Linux: a bigger pipe, so a flood never makes the MIDI thread wait


class StderrTap:
    def __init__(self):
        self.queue_full = 0  # input messages rtmidi dropped
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._read, write = os.pipe()
        try:
            fcntl.fcntl(write, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        os.dup2(write, 2)
        os.close(write)
        self._python_stderr = sys.stderr
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(self._saved), "wb", buffering=0), write_through=True)
        self._tail = b""

    def pump(self) -> None:
        """Read fd 2 until it is closed: count the queue-full lines, pass the rest on."""
        while True:
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                break
            text = self._tail + chunk
            lines = text.split(b"\n")
            self._tail = lines.pop()
            kept = []
            for line in lines:
                if QUEUE_FULL in line:
                    self.queue_full += 1
                elif line.strip():
                    kept.append(line)
            if kept:
                os.write(self._saved, b"\n".join(kept) + b"\n")
        if self._tail.strip() and QUEUE_FULL not in self._tail:
            os.write(self._saved, self._tail)
        os.close(self._read)
        os.close(self._saved)

    def close(self) -> None:
        """Put fd 2 back; the pump then reads what is left and ends."""
        sys.stderr.flush()
        tapped, sys.stderr = sys.stderr, self._python_stderr
        os.dup2(self._saved, 2)  # the pipe's last write end closes
        tapped.close()
