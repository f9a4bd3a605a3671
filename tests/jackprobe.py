"""A real JACK server with the dummy driver, and a separate JACK MIDI client that plays into
bachd and records what comes out. Shared by the end-to-end tests and benchmarks/live.py.

Each server gets its own name (``JACK_DEFAULT_SERVER``), so tests never touch a JACK server
the user may be running, and two runs never share one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class JackUnavailable(RuntimeError):
    pass


class JackServer:
    """``jackd -d dummy -r RATE -p PERIOD`` under a private server name."""

    def __init__(self, rate: int = 48000, period: int = 64, realtime: bool | None = None, name: str | None = None):
        self.rate, self.period = rate, period
        # Realtime scheduling where the system allows it (root, or an rtprio limit), as JACK
        # is normally run; otherwise --no-realtime, which on a busy machine drops MIDI
        # events whenever a cycle overruns.
        self.realtime = _can_realtime() if realtime is None else realtime
        # A server that is killed leaves its slot in JACK's shared registry (eight in all),
        # reclaimed only by a server of the same name: a test that kills one names it.
        self.name = name or f"bachd-test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "JackServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise JackUnavailable("jackd is not installed (apt-get install jackd2)")
        # jackd logs every xrun; a pipe nobody reads would fill up and wedge the server.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [jackd, "-n", self.name, "--realtime" if self.realtime else "--no-realtime",
             "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env(),
        )
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_START_SERVER"] = "1"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise JackUnavailable(f"jackd exited: {self.log.read().decode(errors='replace')[-400:]}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.__exit__()
        raise JackUnavailable("jackd did not come up within 10 s")

    def _answers(self) -> bool:
        import rtmidi

        try:
            probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bachd-test-probe")
            probe.get_ports()
            probe.delete()
            return True
        except Exception:
            return False

    def env(self) -> dict:
        env = dict(os.environ)
        env["JACK_DEFAULT_SERVER"] = self.name
        env["JACK_NO_START_SERVER"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        return env

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        os.environ.pop("JACK_DEFAULT_SERVER", None)


def _can_realtime() -> bool:
    try:
        return subprocess.run(["chrt", "-f", "10", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Received:
    t_seconds: float
    message: list[int]


class MidiProbe:
    """A JACK MIDI client of its own: its output feeds ``bachd-in``, its input hears ``bachd-out``.

    What it hears is polled by a thread of its own, never delivered by callback: rtmidi runs
    a JACK input callback inside the client's process thread, where a Python callback must
    wait for the interpreter lock. On a loaded machine that thread then misses JACK cycles and
    every event of those cycles is lost to the probe (seen as notes bachd "left on" that
    bachd had released). Polled, rtmidi's thread only appends to its own queue.

    Arrival times come from rtmidi's deltas (JACK's clock, stamped in the process thread), not
    from when the poll ran: a message's time is its offset from the first message plus the
    smallest (poll time - offset) seen so far, so a late poll never makes bachd look late.
    """

    POLL_SECONDS = 0.0005

    def __init__(self, to_port: str = "bachd-in", from_port: str = "bachd-out"):
        import rtmidi

        self.to_port, self.from_port = to_port, from_port
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="probe-player")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="probe-listener", queue_size_limit=1 << 16)
        self.inp.ignore_types(sysex=False, timing=False, active_sense=True)
        self.out.open_port(self._index(self.out.get_ports(), self.to_port))
        self.inp.open_port(self._index(self.inp.get_ports(), self.from_port))
        # What the listening port holds before its connection is made is not bachd's: a port
        # can take over a closed port's buffer (its last events included) and read it for a
        # cycle or two. Drop it, a few cycles after connecting, and keep count.
        time.sleep(0.02)
        self.junk = 0
        while self.inp.get_message() is not None:
            self.junk += 1
        self._offsets: list[float] = []  # each message's seconds since the first, on JACK's clock
        self._base = float("inf")  # monotonic time of the first message (best estimate so far)
        self._running = True
        self._reader = threading.Thread(target=self._read, name="probe-listener", daemon=True)
        self._reader.start()

    @staticmethod
    def _index(ports: list[str], name: str) -> int:
        for index, port in enumerate(ports):
            if port.split(":", 1)[0] == name:
                return index
        raise AssertionError(f"no JACK port of client {name} among {ports}")

    def _read(self) -> None:
        since_first = 0.0
        while self._running:
            now = time.monotonic()
            batch = []
            while (event := self.inp.get_message()) is not None:
                message, delta = event
                since_first += delta if self._offsets or batch else 0.0
                batch.append((since_first, list(message)))
            if batch:
                with self._arrived:
                    base = min(self._base, now - batch[0][0])
                    if base < self._base:  # a quicker poll: a better estimate for all
                        self._base = base
                        for record, offset in zip(self.received, self._offsets):
                            record.t_seconds = base + offset
                    for offset, message in batch:
                        self._offsets.append(offset)
                        self.received.append(Received(base + offset, message))
                    self._arrived.notify_all()
            time.sleep(self.POLL_SECONDS)

    def send(self, *message: int) -> float:
        t = time.monotonic()
        self.out.send_message(list(message))
        return t

    def wait_for(self, predicate, count: int = 1, timeout: float = 2.0, since: int = 0) -> list[Received]:
        """Wait until ``count`` received messages from index ``since`` satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                hits = [r for r in self.received[since:] if predicate(r.message)]
                if len(hits) >= count or time.monotonic() >= deadline:
                    return hits
                self._arrived.wait(max(0.0, deadline - time.monotonic()))

    def quiet(self, timeout: float = 1.0) -> dict[tuple[int, int], int]:
        """The notes still on once every note heard has been released, or after ``timeout``:
        the last note-offs bachd sent may still be on their way through JACK."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                hanging = hanging_notes([r.message for r in self.received])
                if not hanging or time.monotonic() >= deadline:
                    return hanging
                self._arrived.wait(max(0.0, deadline - time.monotonic()))

    def hold(self, seconds: float) -> None:
        """The player's timing: ``seconds`` pass in the music (a key held down, a rest between
        notes, a DAW's transport left running). Not a wait for bachd: what bachd does is
        waited for by :meth:`wait_for`, :meth:`nothing`, :meth:`answer_over` and :meth:`quiet`."""
        time.sleep(seconds)

    def nothing(self, seconds: float, since: int | None = None, predicate=None) -> list:
        """What arrives (``predicate``: a note-on) from index ``since`` (default: now) within
        ``seconds``. Returns at the first such message, so a test that expects silence fails
        the moment it is broken; an empty list when all stayed silent."""
        predicate = predicate or is_note_on
        return self.wait_for(predicate, since=len(self.received) if since is None else since, timeout=seconds)

    def answer_over(self, since: int, quiet_seconds: float = 0.5, timeout: float = 8.0) -> list[Received]:
        """Wait until what came after index ``since`` has ended: every note it struck released
        and nothing more for ``quiet_seconds`` (counted from now at the earliest). Returns what
        came (as far as it had come at ``timeout``)."""
        called = time.monotonic()
        deadline = called + timeout
        with self._arrived:
            while True:
                now = time.monotonic()
                came = self.received[since:]
                last = max([called, *(r.t_seconds for r in came)])
                released = not hanging_notes([r.message for r in came])
                if (released and now - last >= quiet_seconds) or now >= deadline:
                    return list(came)
                wake = min(deadline, last + quiet_seconds) if released else deadline
                self._arrived.wait(max(0.001, wake - now))

    def story(self, notes) -> str:
        """What was heard of the given (channel, pitch) notes, with times: for a failure's message."""
        with self._arrived:
            lines = [f"{r.t_seconds - self.received[0].t_seconds:8.4f} {r.message}" for r in self.received
                     if len(r.message) == 3 and r.message[0] & 0xE0 == 0x80 and (r.message[0] & 0x0F, r.message[1]) in notes]
        return "\n".join(lines) + f"\n({len(self.received)} messages in all)"

    SETTLE_SECONDS = 0.05
    CONNECT_SECONDS = 0.3

    def settle(self) -> None:
        """Once both probe ports are connected: JACK takes new connections into its process
        graph over the next cycles, and nothing a client can ask says when; events sent sooner
        may be dropped. So a fixed settling time, the one wait here on no event."""
        time.sleep(self.CONNECT_SECONDS)

    def close(self) -> None:
        """Unregister the probe's two clients, one at a time, each once the graph has settled.

        libjack (jack2) walks a client's port list in that client's notification thread
        whenever the graph changes (its latency recomputation), while ``jack_port_unregister``
        edits the same list unlocked (jackaudio/jack2#216): a port unregistered while another
        client is leaving (a bachd just killed) can crash this process. So wait until the
        server's port list has stopped changing, and let the last notification run out, before
        each unregister; the first close is itself a graph change the second waits out."""
        self._running = False
        self._reader.join(timeout=1.0)
        for port in (self.out, self.inp):
            try:
                self._settle(port)
                port.close_port()
                port.delete()
            except Exception:
                pass

    def _settle(self, port, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        before = port.get_ports()
        while time.monotonic() < deadline:
            time.sleep(self.SETTLE_SECONDS)
            now = port.get_ports()
            if now == before:
                return
            before = now


def wait_until(condition, timeout: float, every: float = 0.02) -> bool:
    """Whether ``condition()`` came true within ``timeout`` (looked at every ``every`` seconds:
    for what no message announces, such as a file bachd writes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


def is_note_on(message: list[int]) -> bool:
    return len(message) == 3 and message[0] & 0xF0 == 0x90 and message[2] > 0


def is_note_off(message: list[int]) -> bool:
    return len(message) == 3 and (message[0] & 0xF0 == 0x80 or (message[0] & 0xF0 == 0x90 and message[2] == 0))


def unmatched_notes(messages: list[list[int]]) -> dict[tuple[int, int], int]:
    """(channel, note) → count of note-ons without a note-off, from messages as bachd sent
    them (in-process, nothing in between): every note-on needs a note-off of its own."""
    open_notes: dict[tuple[int, int], int] = {}
    for message in messages:
        if is_note_on(message):
            key = (message[0] & 0x0F, message[1])
            open_notes[key] = open_notes.get(key, 0) + 1
        elif is_note_off(message):
            key = (message[0] & 0x0F, message[1])
            if open_notes.get(key):
                open_notes[key] -= 1
    return {k: v for k, v in open_notes.items() if v}


def hanging_notes(messages: list[list[int]]) -> dict[tuple[int, int], int]:
    """(channel, note) → 1 for each note left on in a received stream, as a synth hears it: a
    note-on of a key already sounding strikes it again, and a note-off releases the key.

    bachd never sends a second note-on for a key it is sounding (its voicer shares one note
    between voices, see :class:`bachd.live.scheduler.Voicer`, whose tests count every message), so
    a repeated note-on can only be the MIDI system delivering an event twice: JACK hands a
    client the previous cycle's events again when their sender missed a cycle (an xrun on a
    loaded machine)."""
    sounding: dict[tuple[int, int], bool] = {}
    for message in messages:
        if is_note_on(message):
            sounding[(message[0] & 0x0F, message[1])] = True
        elif is_note_off(message):
            sounding[(message[0] & 0x0F, message[1])] = False
    return {k: 1 for k, on in sounding.items() if on}


class Bachd:
    """``bachd run`` as a subprocess on a given JACK server; waits for its ready line."""

    def __init__(self, server: JackServer, *args: str, timeout: float = 60.0):
        self.args = [sys.executable, "-m", "bachd", "run", "--backend", "jack", *args]
        self.launched = time.monotonic()
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.env(), cwd=ROOT, text=True)
        self.ready_line = self.process.stdout.readline()
        self.ready_seconds = time.monotonic() - self.launched
        if "ready" not in self.ready_line:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"bachd did not get ready: {self.ready_line!r} {err[-2000:]}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def play_call(probe: "MidiProbe", rng, answer_timeout: float = 1.5) -> bool:
    """Play a four-note call of eighth notes (at 120 bpm) and wait for an answer's first
    note-on; True when one came. Shared by the benchmarks' continue-mode runs."""
    for pitch in rng.sample([67, 69, 71, 72, 74, 76, 77, 79], 4):
        probe.send(0x90, pitch, 90)
        time.sleep(0.12)
        probe.send(0x80, pitch, 0)
        time.sleep(0.01)
    since = len(probe.received)
    # gap 0.5 beat + up to a beat to the grid + one 4/4 bar at 120 bpm, then a little
    return bool(probe.wait_for(is_note_on, since=since, timeout=answer_timeout))
