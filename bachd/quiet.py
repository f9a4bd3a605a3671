"""Quiet native libraries: TensorFlow, PortAudio's ALSA and JACK probes and libjack write
their start-up chatter straight to file descriptor 2, where no Python logging setting
reaches, so the calls that load them run with fd 2 pointed at a temporary file."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_fd2(replay_on_error: bool = True):
    """Point file descriptor 2 at a temporary file for the block: native libraries
    (TensorFlow, ALSA, libjack) write there directly. On an exception the captured text is
    shown after all, unless ``replay_on_error`` is False."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            if replay_on_error:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
