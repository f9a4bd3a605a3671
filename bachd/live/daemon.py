"""``bachd run``'s daemon: it wires the ports, the live core (:mod:`bachd.live.loop`), the
output, the view, the recording and the companions together, and runs them on threads.

The only module that starts threads. While bachd plays:

- rtmidi's own thread (owned by rtmidi) queues incoming messages without touching Python;
- the worker: polls and timestamps input every ``POLL_SECONDS`` (see ``bachd.live.ports`` for
  why not a callback) and turns the live core (:meth:`bachd.live.loop.LiveLoop.turn`);
- the output thread: sends scheduled frames at their due times (:meth:`Output.run`);
- with ``--monitor``, the audio thread; with ``tap_stderr`` (``bachd run``), a thread draining
  file descriptor 2, where native MIDI code prints, to count input lost in a flood
  (:mod:`bachd.live.stderrtap`); companions (the control surface) on threads of their own.

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
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from bachd.errors import BachdError
from bachd.live import figures
from bachd.live.loop import LiveLoop, Turn
from bachd.live.recorder import LiveRecording
from bachd.live.scheduler import Output, Voicer
from bachd.live.stderrtap import StderrTap
from bachd.live.view import LiveView, redraw
from bachd.midi import note
from bachd.model.streaming import StreamingEngine
from bachd.presets import LiveSettings

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
    started once bachd plays, closed once bachd is silent. It reaches the performer only
    through :meth:`Daemon.ask`, and reads what the status line reads."""

    def start(self, daemon: Daemon) -> Optional[str]:
        """Start; what the ready line should add (None: nothing)."""

    def close(self) -> None: ...


class Daemon:
    def __init__(
        self, options: RunOptions, ports: Any, engine: StreamingEngine, now: Callable[[], float] = time.monotonic,
        close_ports: bool = True, monitor: Any = None, tap_stderr: bool = False, companions: tuple = (),
    ):
        self.options, self.ports, self.now, self.monitor = options, ports, now, monitor
        self.close_ports = close_ports
        self.tap_stderr = tap_stderr  # count what native MIDI code prints to fd 2 (bachd.live.stderrtap)
        self.tap: Optional[StderrTap] = None
        self.gone: Optional[str] = None  # the MIDI system or a port that went away, ending the run
        settings = options.settings
        sink = ports.send if monitor is None else _through_monitor(ports.send, monitor.feed, now)
        self.output = Output(sink, Voicer(settings.out_channels()), now=now)
        self.loop = LiveLoop(engine, settings, self.output, now())
        self.clock, self.performer, self.router = self.loop.clock, self.loop.performer, self.loop.router
        self.stream = self.performer.stream
        self.view = LiveView(self.clock, settings.beats_per_bar)
        self.output.observer = lambda t, frame: self.view.sent(t, frame.voice, frame.token)
        self.recording: Optional[LiveRecording] = None
        if options.record_path is not None:
            self.recording = LiveRecording(options.record_path, now(), self.clock.bpm, settings.beats_per_bar,
                                           lambda: self.clock.step_seconds * self.performer.settings.steps_per_bar)
            recorder = self.recording.recorder
            self.output.voicer.listener = lambda voice, pitch, velocity: recorder.voice(now(), voice, pitch, velocity)
            self.output.on_answer = recorder.answer
        self.companions = tuple(companions)
        self._ready_extra: list[str] = []
        # Work handed to the worker by other threads (the control surface), done between input
        # batches so the performer is only ever touched by the worker.
        self._asks: collections.deque = collections.deque()
        self.stopping = threading.Event()
        self.fatal: Optional[BaseException] = None
        self.audio_error: Optional[str] = None
        self.output_stalls = 0  # sends that took STUCK_SECONDS or more (a stalled MIDI system)

    # --- threads -------------------------------------------------------------------------------
    def _work(self) -> None:
        poll, now, keepalive, loop = self.ports.poll, self.now, self.ports.keepalive, self.loop
        try:
            while not self.stopping.is_set():
                if self._asks:
                    self._answer_asks(now())
                batch = poll()  # a storm is taken in bites of 512, computing once per bite
                turn = loop.turn(now, batch, self.ports.quiet_before, self.input_dropped())
                if turn is Turn.PLAYED:
                    self._observe_input()  # after the harmony is out: the view waits, notes do not
                elif turn is Turn.IDLE:
                    time.sleep(POLL_SECONDS)
                keepalive(now())
        except BaseException as error:  # any failure must still silence bachd
            self.fatal = error
            self.stopping.set()

    def ask(self, job: Callable[[float], object]) -> Future:
        """Have the worker call ``job(now_seconds)`` between input batches (any thread); the
        future holds its result or its error. The caller waits on the future if it likes:
        the worker never waits on the caller."""
        future: Future = Future()
        if self.stopping.is_set():
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

    def _observe_input(self) -> None:
        played, self.router.played = self.router.played, []
        for t_seconds, channel, pitch, velocity in played:
            self.view.played(t_seconds, pitch, on=velocity > 0)
            if self.recording is not None:
                self.recording.recorder.player(t_seconds, channel, pitch, velocity)
            if self.options.monitor_input and self.monitor is not None:
                self.monitor.feed(t_seconds, note(velocity > 0, channel, pitch, velocity), player=True)

    def _play_audio(self, ready: threading.Event) -> None:
        """The monitor's loop. Audio trouble never stops the MIDI side: it is reported."""
        try:
            self.monitor.run(self.stopping, ready)
        except BaseException as error:
            self.audio_error = str(error) if isinstance(error, BachdError) else f"{type(error).__name__}: {error}"
            ready.set()

    def _send(self) -> None:
        try:
            self.output.run(self.stopping)
        except BaseException as error:
            self.fatal = error
            self.stopping.set()

    # --- life ----------------------------------------------------------------------------------
    def serve(self, on_ready: Callable[[str], None] = print) -> int:
        """Run until a signal or a fatal error; always silences bachd before returning. What
        is opened is closed in the reverse order, whatever happens."""
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: self._report(summary=self.gone is None))
            self._handle_signals(stack)
            if self.tap_stderr:
                self.tap = StderrTap()
                _start(stack, self.tap.pump, "bachd-stderr", before_join=self.tap.close, join_seconds=1.0)
            if self.close_ports:
                stack.callback(self.ports.close)
            stack.callback(self.clock.close)
            if self.monitor is not None:
                self._start_audio(stack)
            stack.callback(self._finish_recording)
            stack.callback(self._close_companions)  # once every note is released: a page never delays that
            self.clock.begin(self.now())
            _start(stack, self._send, "bachd-output")
            stack.callback(self._silence)  # after the worker is joined, before the output thread is
            _start(stack, self._work, "bachd-worker", before_join=self.stopping.set)
            for companion in self.companions:
                extra = companion.start(self)
                if extra:
                    self._ready_extra.append(extra)
            on_ready(self.ready_line())
            sys.stdout.flush()
            self._watch()
        if self.gone is not None:
            raise BachdError(
                f"{self.gone}; bachd released its notes and stopped. Start it again once the MIDI system "
                "is back (run under the systemd unit from `bachd service`, it restarts by itself)"
            )
        if self.fatal is not None:
            raise BachdError(
                f"stopped after an internal error: {type(self.fatal).__name__}: {self.fatal}"
            ) from self.fatal
        return 0

    def _handle_signals(self, stack: contextlib.ExitStack) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None:
                stack.callback(signal.signal, signum, signal.signal(signum, lambda *_: self.stopping.set()))
        sys.setswitchinterval(0.0005)  # hand the GIL over quickly: MIDI threads wait on it

    def _start_audio(self, stack: contextlib.ExitStack) -> None:
        ready = threading.Event()
        _start(stack, self._play_audio, "bachd-audio", args=(ready,))  # joined: it fades out what still sounds
        ready.wait(10.0)
        if self.audio_error is not None:
            raise BachdError(f"--monitor: {self.audio_error}")

    def _silence(self) -> None:
        """The worker has stopped: asks too late are refused, then note-offs for everything
        still sounding. The output may be stuck in a MIDI system that stopped taking messages
        (a JACK client the server gave up on): then bachd exits anyway."""
        self.stopping.set()
        for _, future in list(self._asks):
            with contextlib.suppress(InvalidStateError):  # unless a worker that would not stop took it
                future.set_exception(BachdError("bachd is stopping"))
        self.performer.shutdown(wait_seconds=EXIT_WAIT_SECONDS)

    def _after_output(self) -> None:
        # Again, in case a thread missed its join deadline and played on: the ledger makes
        # this a no-op otherwise.
        self.output.silence(wait_seconds=EXIT_WAIT_SECONDS)
        time.sleep(0.05)  # let the MIDI system deliver the last note-offs

    def _close_companions(self) -> None:
        self._after_output()
        for companion in self.companions:
            companion.close()

    def _finish_recording(self) -> None:
        if self.recording is None:
            return
        played, self.router.played = self.router.played, []  # the worker is gone: its last notes are taken here
        for t_seconds, channel, pitch, velocity in played:
            self.recording.recorder.player(t_seconds, channel, pitch, velocity)
        said = self.recording.finish(self.now())
        if said:
            sys.stderr.write(f"bachd: {said}\n")

    def input_dropped(self) -> int:
        """Input messages lost before bachd could read them (a flood past rtmidi's queue)."""
        return self.ports.dropped + (self.tap.queue_full if self.tap is not None else 0)

    def _watch(self) -> None:
        """The main thread while bachd plays: the MIDI system, a stalled output, a flood, the
        recording and the status line."""
        show = self.options.status if self.options.status is not None else sys.stderr.isatty()
        drawn, warned_count, warned_at, stuck_said, unheard_said = 0, 0, -1.0, False, False
        while not self.stopping.wait(WATCH_SECONDS):
            now = self.now()
            self.gone = self.ports.gone(now)
            if self.gone is not None:
                break
            if self.recording is not None:
                self.recording.keep(now, self.clock.bpm)
            stuck = self.output.stuck_seconds(now)
            if stuck >= STUCK_SECONDS and not stuck_said:
                _say(f"the MIDI output has not taken a message for {stuck:.1f} s (is the MIDI system stalled?); "
                     "bachd goes on once it does")
                stuck_said, drawn = True, 0
                self.output_stalls += 1
            stuck_said = stuck_said and stuck >= STUCK_SECONDS
            dropped = self.input_dropped()
            if dropped > warned_count and now - warned_at >= 1.0:
                _say(f"input flood: {dropped - warned_count:,} incoming messages lost ({dropped:,} since start)")
                warned_count, warned_at, drawn = dropped, now, 0
            if self.performer.unheard and not unheard_said:
                _say(f"notes are coming in, but the {self.clock.name} clock's transport is stopped: bachd plays "
                     "once the DAW sends Start (or Ableton Link plays); with a keyboard alone, run it with "
                     "--clock auto or internal")
                unheard_said, drawn = True, 0
            unheard_said = unheard_said and not self.clock.running
            if show:
                lines = self.view.panel(now, self.status_line())
                sys.stderr.write(redraw(drawn, lines))
                sys.stderr.flush()
                drawn = len(lines)
        self.stopping.set()
        if show:
            sys.stderr.write("\n")

    # --- what it says --------------------------------------------------------------------------
    def ready_line(self) -> str:
        return figures.ready_line(self, self._ready_extra)

    def figures(self) -> figures.Figures:
        return figures.read(self, self.now())

    def status_line(self) -> str:
        return figures.status_line(self.figures())

    def state(self, roll_steps: int = 64) -> dict[str, Any]:
        """What bachd is doing now, as data (the control surface, ``/api/state``). Read from
        any thread; touches nothing."""
        return figures.state(self.figures(), self, self.view.roll(self.now(), roll_steps))

    def stats(self) -> dict:
        return figures.stats(self.figures(), self)

    def _report(self, summary: bool = True) -> None:
        if self.options.stats_path:
            Path(self.options.stats_path).write_text(json.dumps(self.stats()))
        if summary:
            sys.stderr.write(figures.summary(self.figures()) + "\n")


def _say(text: str) -> None:
    sys.stderr.write(f"bachd: {text}\n")


def _start(
    stack: contextlib.ExitStack, target: Callable[..., None], name: str, args: tuple = (),
    before_join: Optional[Callable[[], None]] = None, join_seconds: float = 2.0,
) -> None:
    """Start a daemon thread now; on the way out, ``before_join`` (what makes it stop), then join it."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()

    def stop() -> None:
        if before_join is not None:
            before_join()
        thread.join(timeout=join_seconds)

    stack.callback(stop)


def _through_monitor(send: Callable, feed: Callable, now: Callable[[], float]) -> Callable:
    """A sink that sends each message to the output port, then to the monitor."""

    def sink(message: Any) -> None:
        send(message)
        feed(now(), message)

    return sink
