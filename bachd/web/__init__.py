"""bachd in the browser: the control surface of ``bachd run --ui`` and the studio page of
``bachd ui``.

The top of the stack under the command line: it may use everything below (the live daemon,
the file commands, presets, settings) and nothing imports it but the command line, so
``bachd run`` without ``--ui`` loads no web code. Its server runs on a thread of its own
with its own event loop; it reaches the performer only through
:meth:`bachd.live.daemon.Daemon.ask` (the worker does the change between input batches)
and reads what the status line reads. It is an attack surface: :mod:`bachd.web.guard`.
"""
