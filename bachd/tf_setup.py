"""Import TensorFlow quietly: users should not see CUDA probing noise on CPU machines.

TensorFlow's C++ side writes its start-up chatter ("Could not find cuda drivers", absl's
pre-initialization warning) straight to file descriptor 2, before any Python logging
setting can apply, so the import runs with fd 2 pointed at a temporary file. If the import
fails, what it wrote is shown after all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile
import warnings

_tf = None


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


def import_tf():
    global _tf
    if _tf is not None:
        return _tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    warnings.filterwarnings("ignore", module="keras")
    if importlib.util.find_spec("tensorflow") is None:
        from bachd.errors import BachdError

        raise BachdError(
            "this needs TensorFlow, which is not installed: pip install 'bachd[train]' "
            "(bachd run, generate and render work without it)"
        ) from None
    with quiet_fd2():
        import tensorflow as tf
        import keras  # noqa: F401

        tf.config.list_physical_devices("GPU")  # the CUDA probe prints here; do it now
    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    _tf = tf
    return tf
