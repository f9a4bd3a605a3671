"""Import TensorFlow quietly: users should not see CUDA probing noise on CPU machines.

TensorFlow's C++ side writes its start-up chatter ("Could not find cuda drivers", absl's
pre-initialization warning) straight to file descriptor 2, before any Python logging
setting can apply, so the import runs with fd 2 pointed at a temporary file. If the import
fails, what it wrote is shown after all.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings

from bachd.quiet import quiet_fd2

_tf = None


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
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe prints here; do it now
    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    _tf = tf
    return tf
