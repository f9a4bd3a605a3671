"""The file commands: generation, harmonize and continue on MIDI files, and evaluation.

:mod:`~bachd.files.generation` samples a piece (or continues a seed) offline and
:mod:`~bachd.files.commands` writes it (``bachd generate``, ``bachd render``);
:mod:`~bachd.files.replay` plays a MIDI file into the live performers on a simulated
clock (``bachd harmonize``, ``bachd continue``), so what is measured offline is what a
musician hears live; :mod:`~bachd.files.evaluate` (``bachd eval``, ``--music``) and
:mod:`~bachd.files.live_checks` (``eval --harmonize``, ``--answers``) measure against Bach.

May use everything below the CLI: :mod:`bachd.music`, :mod:`bachd.sound`,
:mod:`bachd.model`, :mod:`bachd.live` and the top-level modules.
"""
