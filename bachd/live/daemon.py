"""``bachd run``: ports, model, clock, performer and output wired together.

The only module that starts threads. Three run while bachd plays:

- rtmidi's own thread (owned by rtmidi) queues incoming messages without touching Python;
- the worker: polls and timestamps input every ``POLL_SECONDS`` (see ``bachd.live.ports`` for
  why not a callback), drives the clock and the performer, computes steps;
- the output thread: sends scheduled frames at their due times (:class:`OutputStage.run`);
- with ``tap_stderr`` (``bachd run``), a thread draining file descriptor 2, where native MIDI
  code prints, to count input lost in a flood (:mod:`bachd.live.stderrtap`).

The main thread installs the signal handlers, prints the status line, watches the MIDI system
(a JACK server or an opened port going away ends the run with one line and exit 1) and, on
any way out (Ctrl-C, SIGTERM, SIGHUP, the MIDI system gone, a fatal error in a thread),
silences every note bachd sounds before the ports close.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

from bachd.live.clock import Clock, InternalClock
from bachd.live.recorder import Recorder, recording_path
from bachd.sound.soundfont import sound_name
from bachd.errors import BachdError
from bachd.live.view import LiveView, redraw
from bachd.model.modelfile import read_config
from bachd.outputs import MIDI_SUFFIXES, SCORE_SUFFIXES, check_output
from bachd.presets import LiveSettings
from bachd.settings import SETTINGS
from bachd.live.scheduler import OutputStage, Voicer
from bachd.live.session import build_live, make_clock
from bachd.live.stderrtap import StderrTap

POLL_SECONDS = 0.0003  # input polling interval: adds 0.15 ms on average to a note's path
EXIT_WAIT_SECONDS = 2.0  # on the way out, how long to wait for an output that does not answer
WATCH_SECONDS = 0.2  # how often the main thread looks at the MIDI system and the input counts
STUCK_SECONDS = 1.0  # a send that has not returned after this long is reported


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
    record_path: Optional[Path] = None  # the session recording (settings.record, resolved)


class Companion(Protocol):
    """Something that runs beside the daemon on a thread of its own (the control surface):
    started once bachd plays, closed before bachd silences and exits. It reaches the
    performer only through :meth:`Daemon.ask`, and reads what the status line reads."""

    def start(self, daemon: "Daemon") -> Optional[str]:
        """Start; what the ready line should add (None: nothing)."""

    def close(self) -> None: ...


def load_engine(model_path: Path, backend: str = "auto"):
    from bachd.model.engine import make_engine

    engine = make_engine(model_path, batch_size=1, backend=backend)
    engine.warm_up()
    _release_heap()
    return engine


def _release_heap() -> None:
    """Hand back to the system the heap that reading the model file used and freed (the
    archive, the HDF5 file, the weights before they were fused): 17 MB of resident memory for
    the 2x448 default on glibc, which otherwise keeps it for the life of the process."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator does as it does
        pass


def _through_monitor(send: Callable, feed: Callable, now: Callable[[], float]) -> Callable:
    """A sink that sends each message to the output port, then to the monitor."""
    def sink(message) -> None:
        send(message)
        feed(now(), message)

    return sink


class Daemon:
    def __init__(
        self, options: RunOptions, ports, engine, now: Callable[[], float] = time.monotonic,
        close_ports: bool = True, monitor=None, tap_stderr: bool = False, companions: tuple = (),
    ):
        self.options, self.ports, self.now = options, ports, now
        self.close_ports = close_ports
        self.tap_stderr = tap_stderr  # count what native MIDI code prints to fd 2 (bachd.live.stderrtap)
        self.tap: Optional[StderrTap] = None
        self.lost: Optional[str] = None  # what went away (JACK, a port), ending the run
        settings = options.settings
        self.clock: Clock = make_clock(settings, now())
        self.link = None
        if settings.clock == "link":
            from bachd.live.abletonlink import LinkSession

            self.link = LinkSession(settings.bpm, settings.beats_per_bar)
        self.monitor = monitor
        sink = ports.send if monitor is None else _through_monitor(ports.send, monitor.feed, now)
        self.output = OutputStage(sink, Voicer(settings.out_channels()), now=now)
        self.view = LiveView(self.clock, settings.beats_per_bar)
        self.output.observer = lambda t, frame: self.view.sent(t, frame.voice, frame.token)
        self.performer, self.router = build_live(engine, settings, self.output, self.clock)
        self.stream = self.performer.stream
        self.recorder: Optional[Recorder] = None
        self.record_error: Optional[str] = None
        if options.record_path is not None:
            # The first, empty file now: a place that cannot be written fails before bachd plays.
            self.recorder = recorder = Recorder(options.record_path, now(), self.clock.bpm, settings.beats_per_bar)
            recorder.write(now())
            self.output.voicer.listener = lambda voice, pitch, velocity: recorder.voice(now(), voice, pitch, velocity)
            self.output.on_answer = recorder.answer
        self.companions = tuple(companions)
        self._ready_extra: list[str] = []
        # Work handed to the worker by other threads (the control surface), done between input
        # batches so the performer is only ever touched by the worker.
        self._asks: collections.deque = collections.deque()
        self.stop = threading.Event()
        self.fatal: Optional[BaseException] = None
        self.audio_error: Optional[str] = None
        self.output_stalls = 0  # sends that took STUCK_SECONDS or more (a stalled MIDI system)

    # --- threads -------------------------------------------------------------------------------
    def _work(self) -> None:
        poll, performer, now, keepalive = self.ports.poll, self.performer, self.now, self.ports.keepalive
        lost_seen, lost_pending = 0, False
        try:
            while not self.stop.is_set():
                if self.link is not None:
                    self._follow_link(now())
                if self._asks:
                    self._answer_asks(now())
                batch = poll()  # a storm is taken in bites of 512, computing once per bite
                lost = self.input_dropped()
                if lost > lost_seen:
                    lost_seen, lost_pending = lost, True
                quiet_before = self.ports.quiet_before
                for index, (t_seconds, data) in enumerate(batch):
                    if index in quiet_before and (lost_pending or performer.player.storm):
                        # The flood or storm was over before this message came: a clean slate
                        # before the player's next notes, however late its backlog is read.
                        lost_pending = False
                        performer.input_lost()
                    self.router.handle(t_seconds, data)
                if lost_pending and not batch:
                    # Input was lost, note-offs perhaps among it, and all that was queued is
                    # read: a clean slate.
                    lost_pending = False
                    performer.input_lost()
                wake = performer.next_wakeup(now())
                if batch or (wake is not None and wake <= now()):
                    performer.update(now())
                    self._observe_input()  # after the harmony is out: the view waits, notes do not
                elif not performer.background(now()):  # spare time: chords ahead, a step at a time
                    time.sleep(POLL_SECONDS)
                keepalive(now())
        except BaseException as error:  # noqa: BLE001 - any failure must still silence bachd
            self.fatal = error
            self.stop.set()

    def ask(self, job: Callable[[float], object]) -> Future:
        """Have the worker call ``job(now_seconds)`` between input batches (any thread); the
        future holds its result or its error. The caller waits on the future if it likes:
        the worker never waits on the caller."""
        future: Future = Future()
        if self.stop.is_set():
            future.set_exception(BachdError("bachd is stopping"))
        else:
            self._asks.append((job, future))
        return future

    def _answer_asks(self, now_seconds: float) -> None:
        while self._asks:
            job, future = self._asks.popleft()
            try:
                future.set_result(job(now_seconds))
            except BachdError as error:  # a bad value: the asker says so; bachd plays on
                future.set_exception(error)

    def _follow_link(self, now_seconds: float) -> None:
        """The Link session's tempo and beat, and its start/stop as MIDI Start/Stop are."""
        reading = self.link.poll(now_seconds)
        if reading is None:
            return
        bpm, beat, playing, at = reading
        self.clock.follow(bpm, beat, at)
        self.clock.peers = self.link.peers
        if playing and not self.clock.running:
            self.performer.transport_start(at)
        elif not playing and self.clock.running:
            self.performer.transport_stop(at)

    def _observe_input(self) -> None:
        played, self.router.played = self.router.played, []
        for t_seconds, channel, note, velocity in played:
            self.view.played(t_seconds, note, on=velocity > 0)
            if self.recorder is not None:
                self.recorder.player(t_seconds, channel, note, velocity)
            if self.options.monitor_input and self.monitor is not None:
                self.monitor.feed(t_seconds, [(0x90 if velocity else 0x80) | channel, note, velocity], player=True)

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
        audio = tapper = None
        try:
            if self.tap_stderr:
                self.tap = StderrTap()
                tapper = threading.Thread(target=self.tap.pump, name="bachd-stderr", daemon=True)
                tapper.start()
            if self.monitor is not None:
                audio_ready = threading.Event()
                audio = threading.Thread(target=self._play_audio, args=(audio_ready,), name="bachd-audio", daemon=True)
                audio.start()
                audio_ready.wait(10.0)
                if self.audio_error is not None:
                    raise BachdError(f"--monitor: {self.audio_error}")
            if isinstance(self.clock, InternalClock):
                self.clock.origin_seconds = self.now()
            if self.link is not None:
                self.link.join(self.clock)
            sender.start()
            worker.start()
            for companion in self.companions:
                extra = companion.start(self)
                if extra:
                    self._ready_extra.append(extra)
            on_ready(self.ready_line())
            sys.stdout.flush()
            self._status_loop()
        finally:
            self.stop.set()
            worker.join(timeout=2.0)
            for job, future in list(self._asks):  # asked too late: said so, not left waiting
                with contextlib.suppress(InvalidStateError):  # unless a worker that would not stop took it
                    future.set_exception(BachdError("bachd is stopping"))
            # Note-offs for everything still sounding; the output may be stuck in a MIDI system
            # that stopped taking messages (a JACK client the server gave up on): then exit anyway.
            self.performer.shutdown(wait_seconds=EXIT_WAIT_SECONDS)
            sender.join(timeout=2.0)
            # Again, in case a thread missed its join deadline and played on: the ledger
            # makes this a no-op otherwise.
            self.output.silence(wait_seconds=EXIT_WAIT_SECONDS)
            time.sleep(0.05)  # let the MIDI system deliver the last note-offs
            for companion in self.companions:  # once every note is released: a page never delays that
                companion.close()
            self._finish_recording()
            if audio is not None:
                audio.join(timeout=2.0)  # it fades out what still sounds, then closes the stream
            if self.link is not None:
                self.link.close()
            if self.close_ports:
                self.ports.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.tap is not None:
                self.tap.close()
                tapper.join(timeout=1.0)
            self._report(summary=self.lost is None)  # when the MIDI system went away: one line, below
        if self.lost is not None:
            raise BachdError(
                f"{self.lost}; bachd released its notes and stopped. Start it again once the MIDI system "
                "is back (run under the systemd unit from `bachd service`, it restarts by itself)"
            )
        if self.fatal is not None:
            raise BachdError(f"stopped after an internal error: {type(self.fatal).__name__}: {self.fatal}") from self.fatal
        return 0

    def input_dropped(self) -> int:
        """Input messages lost before bachd could read them (a flood past rtmidi's queue)."""
        return self.ports.dropped + (self.tap.queue_full if self.tap is not None else 0)

    def _status_loop(self) -> None:
        show = self.options.status if self.options.status is not None else sys.stderr.isatty()
        drawn = 0
        warned_count, warned_at = 0, -1.0
        stuck_said = False
        written_at = self.now()
        lost = self.ports.lost
        while not self.stop.wait(WATCH_SECONDS):
            self.lost = lost(self.now())
            if self.lost is not None:
                self.stop.set()
                break
            if self.recorder is not None:
                now = self.now()
                self.recorder.tempo(now, self.clock.bpm)
                if now - written_at >= self.clock.step_seconds * self.options.settings.steps_per_bar:
                    self._write_recording()  # at least once a bar
                    written_at = now
            stuck = self.output.stuck_seconds(self.now())
            if stuck >= STUCK_SECONDS and not stuck_said:
                sys.stderr.write(f"bachd: the MIDI output has not taken a message for {stuck:.1f} s "
                                 "(is the MIDI system stalled?); bachd goes on once it does\n")
                stuck_said, drawn = True, 0
                self.output_stalls += 1
            elif stuck < STUCK_SECONDS:
                stuck_said = False
            dropped = self.input_dropped()
            if dropped > warned_count and self.now() - warned_at >= 1.0:
                sys.stderr.write(f"bachd: input flood: {dropped - warned_count:,} incoming messages lost "
                                 f"({dropped:,} since start)\n")
                warned_count, warned_at, drawn = dropped, self.now(), 0
            if show:
                lines = self.view.panel(self.now(), self.status_line())
                sys.stderr.write(redraw(drawn, lines))
                sys.stderr.flush()
                drawn = len(lines)
        if show:
            sys.stderr.write("\n")

    def _write_recording(self, finish: bool = False) -> None:
        """Write the recording (the worker may be gone: its last played notes are taken here
        too). A failed write is said once, and bachd plays on."""
        recorder = self.recorder
        if recorder is None:
            return
        if finish:
            played, self.router.played = self.router.played, []
            for t_seconds, channel, note, velocity in played:
                recorder.player(t_seconds, channel, note, velocity)
        try:
            recorder.finish(self.now()) if finish else recorder.write(self.now())
        except BachdError as error:
            if self.record_error is None:
                sys.stderr.write(f"bachd: {error}\n")
            self.record_error = str(error)

    def _finish_recording(self) -> None:
        self._write_recording(finish=True)
        if self.recorder is not None and self.recorder.finished:
            score = f", its score in {self.recorder.score_path}" if self.recorder.score_path else ""
            sys.stderr.write(f"bachd: the session is recorded in {self.recorder.path}{score}\n")

    def ready_line(self) -> str:
        s = self.options.settings
        clock = {"internal": f"{s.bpm:g} bpm on the internal clock", "midi": "following MIDI clock"}.get(s.clock)
        if self.link is not None:
            peers = self.link.peers
            tempo = f"{self.clock.bpm:g} bpm" if self.link.settled else "taking the session's tempo"
            clock = (f"in an Ableton Link session with {peers} peer{'s' * (peers != 1)}, {tempo}"
                     if peers else f"starting an Ableton Link session at {self.clock.bpm:g} bpm")
        return (
            f"bachd ready: {s.mode} mode, {clock}. Play into '{self.ports.in_label}', "
            f"listen on '{self.ports.out_label}' ({self.ports.backend})."
            + (f" Recording to {self.recorder.path}." if self.recorder is not None else "")
            + (f" Monitor: {sound_name(self.monitor.soundfont)}." if self.monitor is not None else "")
            + "".join(f" {extra}" for extra in self._ready_extra)
            + " Ctrl-C to stop."
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
        dropped = self.input_dropped()
        lost = f" | lost {dropped:,}" if dropped else ""
        return (
            f"bachd | {self.performer.mode} | {self.clock.bpm:5.1f} bpm | {self.performer.state:11s} | "
            f"in {self.performer.stats.notes_in}{lost} | out {self.output.notes_out} | {late}{audio}"
            + (" | rec" if self.recorder is not None and self.record_error is None else "")
            + (f" | link {self.clock.peers} peers" if self.link is not None else "")
        )

    def state(self, roll_steps: int = 64) -> dict:
        """What bachd is doing now, as data (the control surface, ``/api/state``): the
        settings by their preset names, mode, clock and transport, the run's figures and
        the piano roll of the live view. Read from any thread; touches nothing."""
        now = self.now()
        performer, clock, settings = self.performer, self.clock, self.performer.settings
        p50, p99 = self.output.lateness.percentiles_ms(50, 99)
        position = None
        if clock.running:
            step = max(0, int(clock.step_at(now)))
            bar, within = divmod(step, settings.steps_per_bar)
            position = f"{bar + 1}.{within // 4 + 1}"
        return {
            "mode": performer.mode,
            "activity": performer.state,
            "settings": {name: getattr(settings, name) for name in SETTINGS},
            "cc": dict(settings.cc),  # role -> controller number (None: off)
            "clock": {"kind": settings.clock, "running": clock.running, "bpm": round(clock.bpm, 2), "position": position,
                      "beats_per_bar": settings.beats_per_bar, "link_peers": self.clock.peers if self.link is not None else None},
            "figures": {
                "notes_in": performer.stats.notes_in, "notes_out": self.output.notes_out, "answers": performer.stats.answers,
                "melody_chords": performer.stats.melody_chords, "panics": performer.stats.panics,
                "late_p50_ms": round(p50, 3) if self.output.lateness.count else None,
                "late_p99_ms": round(p99, 3) if self.output.lateness.count else None,
                "messages_lost": self.input_dropped(), "broken_messages": self.router.parser.stats.dropped_messages,
                "input_resets": performer.stats.input_resets, "notes_sounding": self.output.voicer.notes_sounding,
            },
            "ports": {"backend": self.ports.backend, "input": self.ports.in_label, "output": self.ports.out_label},
            "recording": None if self.recorder is None else str(self.recorder.path),
            "roll": self.view.roll(now, roll_steps),
        }

    def stats(self) -> dict:
        lateness = self.output.lateness
        p50, p99 = lateness.percentiles_ms(50, 99)
        return {
            "mode": self.performer.mode,
            "recording": None if self.recorder is None else str(self.recorder.path),
            "link_peers": None if self.link is None else self.clock.peers,
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
            "dropped_messages": self.input_dropped(),
            "input_parse": asdict(self.router.parser.stats),
            "transport": {"starts": self.performer.stats.starts, "stops": self.performer.stats.stops,
                          "song_positions": self.performer.stats.relocations},
            "expired_holds": self.performer.player.expired,
            "input_resets": self.performer.stats.input_resets,
            "output_stalls": self.output_stalls,
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

    def _report(self, summary: bool = True) -> None:
        if self.options.stats_path:
            Path(self.options.stats_path).write_text(json.dumps(self.stats()))
        if not summary:
            return
        p50, p99 = self.output.lateness.percentiles_ms(50, 99)
        sys.stderr.write(
            f"bachd stopped: {self.performer.stats.notes_in} notes in, {self.output.notes_out} out, "
            f"{self.performer.stats.answers} answers"
            + (f", output lateness p50 {p50:.2f} ms, p99 {p99:.2f} ms" if self.output.lateness.count else "")
            + "\n"
        )


def run(options: RunOptions, on_ready: Callable[[str], None] = print, close_ports: bool = True, companions: tuple = ()) -> int:
    """What ``bachd run`` does: open the ports first (a missing MIDI system fails fast),
    then load and warm up the model, then play until stopped.

    ``close_ports=False`` leaves closing to the process exit. The command line closes them
    (:meth:`bachd.live.ports.MidiPorts.close`, on JACK each once the graph has settled), after
    every note-off has been delivered."""
    from bachd.live.ports import open_ports

    read_config(options.model_path)  # a missing or foreign model fails before any port opens
    check_output(options.stats_path, "--stats-json")
    if options.settings.clock == "link":
        from bachd.live.abletonlink import _import_link

        _import_link()  # a missing binding fails before any port opens
    if options.settings.record:
        options.record_path = recording_path(options.settings.record)
        check_output(options.record_path, "--record", (*MIDI_SUFFIXES, *SCORE_SUFFIXES))
    monitor = None
    if options.monitor:  # before anything slow: no PortAudio or no such device fails at once
        from bachd.sound.audio import Monitor, resolve_device
        from bachd.sound.soundfont import resolve_sound

        monitor = Monitor(device=resolve_device(options.audio_device), soundfont=resolve_sound(options.settings.soundfont),
                          programs=options.settings.programs())
    ports = open_ports(options.in_name, options.out_name, options.backend)
    try:
        engine = load_engine(options.model_path, options.engine)
        daemon = Daemon(options, ports, engine, close_ports=close_ports, monitor=monitor, tap_stderr=True, companions=companions)
    except BaseException:
        ports.close()
        raise
    return daemon.serve(on_ready)

