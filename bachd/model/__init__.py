"""The model: the Keras LSTM, its files, the engines that stream it, sampling and training.

- :mod:`~bachd.model.modelfile` reads a ``.keras`` file's config and weights without
  TensorFlow; :mod:`~bachd.model.keras_model` builds, saves and loads the Keras model.
- :mod:`~bachd.model.engine` steps the network one token at a time in numpy (the live
  default) and picks an engine (:func:`~bachd.model.engine.make_engine`);
  :mod:`~bachd.model.tf_engine` is the ``tf.function`` one for GPUs. Both implement
  :class:`~bachd.model.streaming.StreamingEngine`.
- :mod:`~bachd.model.sampling` turns logits into tokens under the voice-leading rules.
- :mod:`~bachd.model.windows`, :mod:`~bachd.model.training` and
  :mod:`~bachd.model.metrics` are the training pipeline and its NLL figures.

May use: :mod:`bachd.music`, :mod:`bachd.sound` (training curves) and the top-level
errors, settings, paths and outputs. Only ``keras_model``, ``tf_engine``, ``tf_setup``,
``training`` and ``metrics`` import TensorFlow, and only when used.
"""
