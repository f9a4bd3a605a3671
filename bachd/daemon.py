"""``bachd run``: ports, model, clock, performer and output wired together.

The only module that starts threads. Three run while bachd plays:

- rtmidi's own thread (owned by rtmidi) queues incoming messages without touching Python;
- the worker: polls and timestamps input every ``POLL_SECONDS`` (see ``bachd.ports`` for
  why not a callback), drives the clock and the performer, computes steps;
- the output thread: sends scheduled frames at their due times (:class:`OutputStage.run`).

The main thread installs the signal handlers, prints the status line and, on any way out
(Ctrl-C, SIGTERM, SIGHUP, a fatal error in a thread), silences every note bachd sounds
before the ports close.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from bachd.clock import Clock, InternalClock, MidiClock
from bachd.errors import BachdError
from bachd.liveview import LiveView, redraw
from bachd.modelfile import read_config
from bachd.outputs import check_output
from bachd.performer import Performer, Stream
from bachd.presets import LiveSettings
from bachd.sampling import Sampler
from bachd.settings import SETTINGS
from bachd.scheduler import OutputStage, Voicer

POLL_SECONDS = 0.0003  # input polling interval: adds 0.15 ms on average to a note's path
CLOCK_TICK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
ALL_SOUND_OFF, ALL_NOTES_OFF = 120, 123


@dataclass
class RunOptions:
    settings: LiveSettings
    model_path: Path
    in_name: str = "bachd-in"
    out_name: str = "bachd-out"
    backend: str = "auto"
    engine: str = "auto"
    status: Optional[bool] = None  # None: a live view when stderr is a terminal
    stats_path: Optional[Path] = None
    monitor: bool = False  # play bachd's output through the audio device
    monitor_input: bool = False  # ... and the player's notes
    audio_device: Optional[str] = None


class Router:
    """Parses raw incoming MIDI and hands it to the clock and the performer.

    Anything it does not understand (SysEx, malformed or truncated messages, data bytes over
    127, messages on channels it ignores) is counted and dropped.
    """

    def __init__(self, performer: Performer, clock: Clock, settings: LiveSettings):
        self.performer, self.clock, self.settings = performer, clock, settings
        self.ignored = 0
        self._cc_roles = {number: role for role, number in settings.cc.items() if number is not None}

    def handle(self, t_seconds: float, data) -> None:
        if not data:
            self.ignored += 1
            return
        status = data[0]
        if status >= 0xF8:
            self._realtime(t_seconds, status)
            return
        if status == SONG_POSITION and len(data) == 3 and max(data[1:]) < 0x80:
            if isinstance(self.clock, MidiClock) and not self.clock.running:
                self.clock.song_position(data[1] | data[2] << 7)
            return
        if not 0x80 <= status < 0xF0 or len(data) != 3 or max(data[1:]) >= 0x80:
            self.ignored += 1
            return
        kind, channel = status & 0xF0, status & 0x0F
        if self.settings.in_channel and channel != self.settings.in_channel - 1:
            self.ignored += 1
            return
        if kind == 0x90:
            self.performer.note_on(t_seconds, data[1], data[2])
        elif kind == 0x80:
            self.performer.note_off(t_seconds, data[1])
        elif kind == 0xB0:
            self._control(data[1], data[2])
        else:
            self.ignored += 1

    def accepts(self, status: int) -> bool:
        """Whether a channel message with this status byte is on a channel bachd listens to."""
        return not self.settings.in_channel or (status & 0x0F) == self.settings.in_channel - 1

    def _realtime(self, t_seconds: float, status: int) -> None:
        if not isinstance(self.clock, MidiClock):
            return  # on the internal clock, the DAW's clock is not ours to follow
        if status == CLOCK_TICK:
            self.clock.clock_tick(t_seconds)
        elif status == START:
            self.clock.start(t_seconds)
            self.performer.transport_started()
        elif status == CONTINUE:
            self.clock.resume(t_seconds)
            self.performer.transport_started()
        elif status == STOP:
            self.clock.stop(t_seconds)
            self.performer.transport_stopped()

    def _control(self, control: int, value: int) -> None:
        if control in (ALL_SOUND_OFF, ALL_NOTES_OFF):
            self.performer.panic()
            return
        role = self._cc_roles.get(control)
        if role == "panic" and value >= 64:
            self.performer.panic()
        elif role == "temperature":
            self.performer.set_temperature(SETTINGS["temperature"].from_cc(value))
        elif role == "response_bars":
            self.performer.set_response_bars(SETTINGS["response_bars"].from_cc(value))
        elif role == "mode":
            self.performer.set_mode("harmonize" if value >= 64 else "continue")
        elif role == "end_of_call" and value >= 64:
            self.performer.end_of_call()


def load_engine(model_path: Path, backend: str = "auto"):
    from bachd.engine import make_engine

    engine = make_engine(model_path, batch_size=1, backend=backend)
    engine.warm_up()
    return engine


class Daemon:
    def __init__(
        self, options: RunOptions, ports, engine, now: Callable[[], float] = time.monotonic,
        close_ports: bool = True, monitor=None,
    ):
        self.options, self.ports, self.now = options, ports, now
        self.close_ports = close_ports
        settings = options.settings
        sampler = Sampler(settings.sampling(), settings.rng_seed)
        sampler.log_probs = False
        self.stream = Stream(engine, sampler)
        if settings.clock == "midi":
            self.clock: Clock = MidiClock(initial_bpm=settings.bpm)
        else:
            self.clock = InternalClock(settings.bpm, origin_seconds=now())
        self.monitor = monitor
        sink = ports.send
        if monitor is not None:
            def sink(message, send=ports.send, feed=monitor.feed):
                send(message)
                feed(now(), message)
        self.output = OutputStage(sink, Voicer(settings.out_channels()), now=now)
        self.view = LiveView(self.clock, settings.beats_per_bar)
        self.output.observer = lambda t, frame: self.view.sent(t, frame.voice, frame.token)
        self.performer = Performer(self.stream, self.clock, self.output, settings)
        self.router = Router(self.performer, self.clock, settings)
        self.stop = threading.Event()
        self.fatal: Optional[BaseException] = None
        self.audio_error: Optional[str] = None

    # --- threads -------------------------------------------------------------------------------
    def _work(self) -> None:
        poll, performer, now = self.ports.poll, self.performer, self.now
        try:
            while not self.stop.is_set():
                batch = poll()  # a storm is taken in bites of 512, computing once per bite
                for t_seconds, data in batch:
                    self.router.handle(t_seconds, data)
                wake = performer.next_wakeup(now())
                if batch or (wake is not None and wake <= now()):
                    performer.update(now())
                    for t_seconds, data in batch:  # after the harmony is out: the view waits, notes do not
                        self._observe_input(t_seconds, data)
                elif not performer.background(now()):  # spare time: chords ahead, a step at a time
                    time.sleep(POLL_SECONDS)
        except BaseException as error:  # noqa: BLE001 - any failure must still silence bachd
            self.fatal = error
            self.stop.set()

    def _observe_input(self, t_seconds: float, data) -> None:
        if len(data) == 3 and data[0] & 0xE0 == 0x80 and max(data[1:]) < 0x80 and self.router.accepts(data[0]):
            self.view.played(t_seconds, data[1], on=data[0] & 0xF0 == 0x90 and data[2] > 0)
            if self.options.monitor_input and self.monitor is not None:
                self.monitor.feed(t_seconds, data, player=True)

    def _play_audio(self, ready: threading.Event) -> None:
        """The monitor's loop. Audio trouble never stops the MIDI side: it is reported."""
        try:
            self.monitor.run(self.stop, ready)
        except BaseException as error:  # noqa: BLE001
            self.audio_error = str(error) if isinstance(error, BachdError) else f"{type(error).__name__}: {error}"
            ready.set()

    def _send(self) -> None:
        try:
            self.output.run(self.stop)
        except BaseException as error:  # noqa: BLE001
            self.fatal = error
            self.stop.set()

    # --- life ----------------------------------------------------------------------------------
    def serve(self, on_ready: Callable[[str], None] = print) -> int:
        """Run until a signal or a fatal error; always silences bachd before returning."""
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None:
                previous[signum] = signal.signal(signum, lambda *_: self.stop.set())
        sys.setswitchinterval(0.0005)  # hand the GIL over quickly: MIDI threads wait on it
        worker = threading.Thread(target=self._work, name="bachd-worker", daemon=True)
        sender = threading.Thread(target=self._send, name="bachd-output", daemon=True)
        audio = None
        try:
            if self.monitor is not None:
                audio_ready = threading.Event()
                audio = threading.Thread(target=self._play_audio, args=(audio_ready,), name="bachd-audio", daemon=True)
                audio.start()
                audio_ready.wait(10.0)
                if self.audio_error is not None:
                    raise BachdError(f"--monitor: {self.audio_error}")
            if isinstance(self.clock, InternalClock):
                self.clock.origin_seconds = self.now()
            sender.start()
            worker.start()
            on_ready(self.ready_line())
            sys.stdout.flush()
            self._status_loop()
        finally:
            self.stop.set()
            worker.join(timeout=2.0)
            self.performer.shutdown()  # note-offs for everything still sounding
            sender.join(timeout=2.0)
            # Again, in case a thread missed its join deadline and played on: the ledger
            # makes this a no-op otherwise.
            self.output.silence()
            time.sleep(0.05)  # let the MIDI system deliver the last note-offs
            if audio is not None:
                audio.join(timeout=2.0)  # it fades out what still sounds, then closes the stream
            if self.close_ports:
                self.ports.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._report()
        if self.fatal is not None:
            raise BachdError(f"stopped after an internal error: {type(self.fatal).__name__}: {self.fatal}") from self.fatal
        return 0

    def _status_loop(self) -> None:
        show = self.options.status if self.options.status is not None else sys.stderr.isatty()
        drawn = 0
        while not self.stop.wait(0.2):
            if show:
                lines = self.view.panel(self.now(), self.status_line())
                sys.stderr.write(redraw(drawn, lines))
                sys.stderr.flush()
                drawn = len(lines)
        if show:
            sys.stderr.write("\n")

    def ready_line(self) -> str:
        s = self.options.settings
        clock = f"{s.bpm:g} bpm on the internal clock" if s.clock == "internal" else "following MIDI clock"
        return (
            f"bachd ready: {s.mode} mode, {clock}. Play into '{self.ports.in_label}', "
            f"listen on '{self.ports.out_label}' ({self.ports.backend}). Ctrl-C to stop."
        )

    def status_line(self) -> str:
        p50, p99 = self.output.lateness.percentiles_ms(50, 99)
        late = f"late p50 {p50:.2f} p99 {p99:.2f} ms" if self.output.lateness.count else "late -"
        audio = ""
        if self.monitor is not None:
            m = self.monitor.stats
            audio = f" | audio {(m.output_latency_seconds + m.ring_seconds) * 1000:.0f} ms, {m.underruns} underruns"
            if self.audio_error:
                audio = " | audio stopped"
        return (
            f"bachd | {self.performer.mode} | {self.clock.bpm:5.1f} bpm | {self.performer.state:11s} | "
            f"in {self.performer.stats.notes_in} | out {self.output.notes_out} | {late}{audio}"
        )

    def stats(self) -> dict:
        lateness = self.output.lateness
        p50, p99 = lateness.percentiles_ms(50, 99)
        return {
            "mode": self.performer.mode,
            "bpm": self.clock.bpm,
            "notes_in": self.performer.stats.notes_in,
            "notes_out": self.output.notes_out,
            "answers": self.performer.stats.answers,
            "interrupted": self.performer.stats.interrupted,
            "panics": self.performer.stats.panics,
            "rollbacks": self.performer.stats.rollbacks,
            "melody_chords": self.performer.stats.melody_chords,
            "chords_ahead": self.performer.stats.chords_ahead,
            "ignored_messages": self.router.ignored,
            "dropped_messages": self.ports.dropped,
            "lateness_ms": {"count": lateness.count, "p50": p50, "p99": p99, "max": lateness.worst_seconds * 1000},
            "lateness_samples_ms": [round(x * 1000, 4) for x in lateness.samples_seconds()],
            "answer_first_lateness_ms": [round(x * 1000, 4) for x in self.output.first_lateness],
            "response_samples_ms": [round(x * 1000, 4) for x in self.output.response.samples_seconds()],
            "notes_sounding_at_exit": self.output.voicer.notes_sounding,
            "audio": None if self.monitor is None else {
                **asdict(self.monitor.stats), "error": self.audio_error,
                "sample_rate": self.monitor.synth.sample_rate if self.monitor.synth else None,
                "block_frames": self.monitor.block_frames,
            },
        }

    def _report(self) -> None:
        if self.options.stats_path:
            Path(self.options.stats_path).write_text(json.dumps(self.stats()))
        p50, p99 = self.output.lateness.percentiles_ms(50, 99)
        sys.stderr.write(
            f"bachd stopped: {self.performer.stats.notes_in} notes in, {self.output.notes_out} out, "
            f"{self.performer.stats.answers} answers"
            + (f", output lateness p50 {p50:.2f} ms, p99 {p99:.2f} ms" if self.output.lateness.count else "")
            + "\n"
        )


def run(options: RunOptions, on_ready: Callable[[str], None] = print, close_ports: bool = True) -> int:
    """What ``bachd run`` does: open the ports first (a missing MIDI system fails fast),
    then load and warm up the model, then play until stopped.

    ``close_ports=False`` leaves closing to the process exit. The command line does that:
    a JACK client's close can deadlock against its own process thread inside libjack and
    rtmidi, while a process that exits is always let go by the MIDI system. Every note-off
    has been delivered by then."""
    from bachd.ports import open_ports

    read_config(options.model_path)  # a missing or foreign model fails before any port opens
    check_output(options.stats_path, "--stats-json")
    monitor = None
    if options.monitor:  # before anything slow: no PortAudio or no such device fails at once
        from bachd.audio import Monitor, resolve_device

        monitor = Monitor(device=resolve_device(options.audio_device))
    ports = open_ports(options.in_name, options.out_name, options.backend)
    try:
        engine = load_engine(options.model_path, options.engine)
        daemon = Daemon(options, ports, engine, close_ports=close_ports, monitor=monitor)
    except BaseException:
        ports.close()
        raise
    return daemon.serve(on_ready)

