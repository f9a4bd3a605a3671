"""What ``bachd run`` does before it plays: check what would fail, open the ports, load the
model, then hand everything to the :class:`~bachd.live.daemon.Daemon`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bachd.live.daemon import Companion, Daemon, RunOptions
from bachd.live.recorder import recording_path
from bachd.model.modelfile import read_config
from bachd.model.streaming import StreamingEngine
from bachd.outputs import MIDI_SUFFIXES, SCORE_SUFFIXES, check_output
from bachd.registry import CLOCKS


def load_engine(model_path: Path, backend: str = "auto") -> StreamingEngine:
    from bachd.model.engine import make_engine

    engine = make_engine(model_path, batch_size=1, backend=backend)
    engine.warm_up()
    _release_heap()
    return engine


def _release_heap() -> None:
    """Hand back to the system the heap that reading the model file used and freed (the
    archive, the HDF5 file, the weights before they were fused), which glibc otherwise keeps
    for the life of the process (docs/figures.md)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator does as it does
        pass


def run(
    options: RunOptions, on_ready: Callable[[str], None] = print, close_ports: bool = True,
    companions: tuple[Companion, ...] = (),
) -> int:
    """Open the ports first (a missing MIDI system fails fast), then load and warm up the
    model, then play until stopped.

    ``close_ports=False`` leaves closing to the process exit. The command line closes them
    (:meth:`bachd.live.ports.MidiPorts.close`, on JACK each once the graph has settled), after
    every note-off has been delivered."""
    from bachd.live.ports import open_ports

    read_config(options.model_path)  # a missing or foreign model fails before any port opens
    check_output(options.stats_path, "--stats-json")
    CLOCKS[options.settings.clock].check()  # a clock's missing library fails before any port opens
    if options.settings.record:
        options.record_path = recording_path(options.settings.record)
        check_output(options.record_path, "--record", (*MIDI_SUFFIXES, *SCORE_SUFFIXES))
    monitor = None
    if options.monitor:  # before anything slow: no PortAudio or no such device fails at once
        from bachd.sound.audio import Monitor, resolve_device
        from bachd.sound.soundfont import resolve_sound

        monitor = Monitor(
            device=resolve_device(options.audio_device),
            soundfont=resolve_sound(options.settings.soundfont),
            programs=options.settings.programs(),
        )
    ports = open_ports(options.in_name, options.out_name, options.backend)
    try:
        engine = load_engine(options.model_path, options.engine)
        daemon = Daemon(options, ports, engine, close_ports=close_ports, monitor=monitor, tap_stderr=True,
                        companions=companions)
    except BaseException:
        ports.close()
        raise
    return daemon.serve(on_ready)
