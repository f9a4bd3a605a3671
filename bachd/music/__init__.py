"""The music: how bachd writes four voices down and what it knows about them.

The 16th-note token representation (:mod:`~bachd.music.encoding`), keys and key finding
(:mod:`~bachd.music.keys`), the meter of a bar (:mod:`~bachd.music.meter`) and where bar
lines fall in unbarred data (:mod:`~bachd.music.barlines`), the corpora and MIDI files it
reads and writes (:mod:`~bachd.music.corpus`, :mod:`~bachd.music.midifile`), and the
musical analysis that judges chorales against Bach's (:mod:`~bachd.music.analysis`).

May use: the top-level :mod:`bachd.errors`. Nothing else in bachd: every other subpackage
builds on this one. Imports neither TensorFlow nor rtmidi.
"""
