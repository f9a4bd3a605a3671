"""Sound and pictures: notes in, audio or an image out.

The built-in organ and the WAV writer (:mod:`~bachd.sound.synth`), the live audio monitor
on a PortAudio stream (:mod:`~bachd.sound.audio`; the only module that touches a sound
device), and the piano rolls and charts (:mod:`~bachd.sound.plots`).

May use: :mod:`bachd.music` and the top-level helpers (errors, quiet). Never the model,
the live path or the file commands.
"""
