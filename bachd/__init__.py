"""bachd: a real-time Bach chorale generator for your DAW.

The rooms, lowest first; a room uses only those before it (``tests/test_architecture.py``):

- :mod:`bachd.music`: the token representation, keys, metre, corpora, MIDI files and the
  musical analysis against Bach;
- :mod:`bachd.sound`: the built-in organ, the audio monitor and the pictures;
- :mod:`bachd.model`: the Keras LSTM, its files, the streaming engines, sampling, training;
- :mod:`bachd.live`: ports, input parsing, clocks, the performers and the output scheduler
  of ``bachd run``;
- :mod:`bachd.files`: the file commands (generate, harmonize and continue on files, eval);
- :mod:`bachd.cli`: the ``bachd`` command.

Beside them: :mod:`bachd.settings` (every setting, declared once), :mod:`bachd.presets`
(presets and the resolved live settings), :mod:`bachd.errors`, :mod:`bachd.paths`,
:mod:`bachd.outputs` and :mod:`bachd.quiet`.
"""

__version__ = "0.3.0"
