"""The live path: what ``bachd run`` does between a MIDI byte in and a note out.

Edges: :mod:`~bachd.live.ports` (the only module that opens MIDI ports),
:mod:`~bachd.live.midiparse` (bytes to messages), :mod:`~bachd.live.clock` (internal and
MIDI clocks), :mod:`~bachd.live.scheduler` (the timed output), :mod:`~bachd.live.view`
(the status line and piano roll) and :mod:`~bachd.live.daemon` (the only module that
starts threads). Pure logic in the middle: the :mod:`~bachd.live.router` hands messages
to the :mod:`~bachd.live.performer`, which follows the transport and lets the mode
(:mod:`~bachd.live.continuation` or :mod:`~bachd.live.harmonizer`) play over one shared
:mod:`~bachd.live.stream` of model state; :mod:`~bachd.live.session` wires them.

May use: :mod:`bachd.music`, :mod:`bachd.model`, :mod:`bachd.sound` (the monitor) and the
top-level settings and presets. Never the file commands, the CLI or TensorFlow.
"""
