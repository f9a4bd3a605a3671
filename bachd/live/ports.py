"""MIDI ports: the only module that opens them. python-rtmidi, one backend per OS.

- Linux: ALSA or JACK; macOS: CoreMIDI — virtual ports that a DAW connects to.
- Windows has no virtual ports: ``--in``/``--out`` name existing ports (e.g. loopMIDI).
On any backend, a name that matches an existing port of the other side is opened instead of
creating a virtual port, so bachd can also be wired straight to a keyboard or a synth.

Input is polled, not delivered by callback. With JACK, rtmidi runs its input callback inside
the client's process thread, and a Python callback there must take the GIL: while the
worker computes, that stalls JACK's whole cycle (measured: over a thousand xruns and lost
note-offs in a 200-note harmonize run). Polling leaves rtmidi's thread free of Python: it
only appends to rtmidi's own queue, which :meth:`MidiPorts.poll` drains and timestamps.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bachd.errors import BachdError, SetupError
from bachd.live.player import STORM_QUIET_SECONDS
from bachd.midi import BACKENDS
from bachd.quiet import quiet_fd2

_API_ATTRS = {
    "alsa": "API_LINUX_ALSA",
    "jack": "API_UNIX_JACK",
    "coremidi": "API_MACOSX_CORE",
    "windows": "API_WINDOWS_MM",
}
_VIRTUAL = {"alsa", "jack", "coremidi"}
INPUT_QUEUE_LIMIT = 65536
QUIET_SECONDS = STORM_QUIET_SECONDS  # a quiet spell in the input this long ends a flood's backlog
KEEPALIVE_SECONDS = 0.05
SETTLE_SECONDS = 0.05  # JACK, on closing: the port list unchanged this long counts as settled
KEEPALIVE_MESSAGE = [0xF0, 0x7D, 0x62, 0x64, 0xF7]  # 7D: the non-commercial manufacturer ID


def _rtmidi():
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never spawn a JACK server behind the user's back
    try:
        import rtmidi
    except ImportError as error:  # pragma: no cover - a broken install
        raise BachdError(f"python-rtmidi is not usable here ({error}); reinstall bachd") from None
    return rtmidi


def _quiet_native_stderr():
    """ALSA and libjack print their connection failures straight to fd 2; bachd reports
    what went wrong in one line of its own instead."""
    return quiet_fd2(replay_on_error=False)


def compiled_backends() -> list[str]:
    rtmidi = _rtmidi()
    apis = set(rtmidi.get_compiled_api())
    return [name for name in BACKENDS if getattr(rtmidi, _API_ATTRS[name]) in apis]


def _api(backend: str) -> int:
    return getattr(_rtmidi(), _API_ATTRS[backend])


def probe(backend: str) -> tuple[bool, str, list[str], list[str]]:
    """(works, why not, input ports, output ports) of one backend. Inputs are the sources
    bachd could read from; outputs the destinations it could write to."""
    rtmidi = _rtmidi()
    with _quiet_native_stderr():
        try:
            midi_in = rtmidi.MidiIn(_api(backend), name="bachd-probe")
            midi_out = rtmidi.MidiOut(_api(backend), name="bachd-probe")
            inputs, outputs = midi_in.get_ports(), midi_out.get_ports()
            midi_in.delete()
            midi_out.delete()
        except Exception as error:  # rtmidi raises its own SystemError for an absent backend
            return False, _why(backend, error), [], []
    return True, "", inputs, outputs


def _why(backend: str, error: Exception) -> str:
    if backend == "jack":
        return "no JACK server is running (start one, e.g. `jackd -d dummy` on a headless Linux box)"
    if backend == "alsa":
        return "the ALSA sequencer is not available (/dev/snd/seq missing; load snd-seq or use JACK)"
    return str(error).strip() or type(error).__name__


def no_backend_message() -> str:
    return (
        "no MIDI system is available. On Linux start a JACK server (`jackd -d dummy -r 48000 -p 64 &` "
        "on a headless machine; package jackd2) or enable ALSA's sequencer (snd-seq); "
        "on macOS CoreMIDI is always there; on Windows install loopMIDI and pass --in/--out"
    )


def _match(name: str, ports: list[str]) -> Optional[int]:
    """Index of the port called ``name``: the full name, its port part (JACK "client:port")
    or its name without ALSA's " 128:0" suffix."""
    for index, port in enumerate(ports):
        bare = port.rsplit(" ", 1)[0] if port.rsplit(" ", 1)[-1].replace(":", "").isdigit() else port
        candidates = {port, bare, bare.split(":", 1)[-1], bare.split(":", 1)[0]}
        if name in candidates:
            return index
    return None


class JackWatch:
    """Notices the JACK server going away. rtmidi offers no way to know (its ports keep
    answering from a dead client), so a client of bachd's own, without ports, asks libjack
    to call back on shutdown. It also keeps libjack's own complaints off stderr: bachd says
    what happened in one line."""

    def __init__(self, name: str):
        import ctypes
        import ctypes.util

        self.gone = False
        # python-rtmidi's wheels carry their own libjack: quiet every copy in the process.
        libraries = [ctypes.CDLL(path) for path in _loaded_libjacks()] or [
            ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
        ]
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        message_function = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
        # A C function that reads the string and does nothing with it (strlen), so libjack's
        # threads never wait for Python's interpreter lock to report a message.
        self._quiet = ctypes.cast(libc.strlen, message_function)
        for library in libraries:
            library.jack_set_error_function(self._quiet)
            library.jack_set_info_function(self._quiet)
        self._lib = lib = libraries[0]
        lib.jack_client_open.restype = ctypes.c_void_p
        lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        status = ctypes.c_int(0)
        self._client = lib.jack_client_open(name.encode(), 1, ctypes.byref(status))  # 1: JackNoStartServer
        if not self._client:
            raise OSError(f"cannot open a JACK client (status {status.value})")
        shutdown = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

        def on_shutdown(_arg) -> None:
            self.gone = True  # one assignment: libjack's thread holds the interpreter for no more

        self._on_shutdown = shutdown(on_shutdown)
        lib.jack_on_shutdown.argtypes = [ctypes.c_void_p, shutdown, ctypes.c_void_p]
        lib.jack_on_shutdown(ctypes.c_void_p(self._client), self._on_shutdown, None)

    def midi_ports(self, flags: int) -> list[str]:
        """The JACK MIDI ports with ``flags`` (1: inputs, that take MIDI; 2: outputs, that give
        it; 0: all)."""
        import ctypes

        lib = self._lib
        lib.jack_get_ports.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.jack_get_ports.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
        return self._names(lib.jack_get_ports(ctypes.c_void_p(self._client), None, b"8 bit raw midi", flags))

    def connections(self, port: str) -> list[str]:
        """The ports ``port`` is connected to."""
        import ctypes

        lib = self._lib
        lib.jack_port_by_name.restype = ctypes.c_void_p
        lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.jack_port_get_all_connections.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.jack_port_get_all_connections.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        handle = lib.jack_port_by_name(ctypes.c_void_p(self._client), port.encode())
        if not handle:
            return []
        return self._names(lib.jack_port_get_all_connections(ctypes.c_void_p(self._client), ctypes.c_void_p(handle)))

    def patch(self, source: str, destination: str, connect: bool) -> None:
        """Connect (or disconnect) two JACK ports, as a patchbay does."""
        import ctypes

        function = self._lib.jack_connect if connect else self._lib.jack_disconnect
        function.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        result = function(ctypes.c_void_p(self._client), source.encode(), destination.encode())
        if result not in (0, 17):  # 17: EEXIST, already connected
            raise BachdError(f"JACK could not {'connect' if connect else 'disconnect'} {source} → {destination} "
                             f"(error {result})")

    def _names(self, array) -> list[str]:
        import ctypes

        if not array:
            return []
        names = []
        index = 0
        while array[index]:
            names.append(array[index].decode(errors="replace"))
            index += 1
        self._lib.jack_free.argtypes = [ctypes.c_void_p]
        self._lib.jack_free(ctypes.cast(array, ctypes.c_void_p))
        return names

    def close(self) -> None:
        # Never activated, so no process thread of its own to deadlock against.
        if self._client and not self.gone:
            import ctypes

            self._lib.jack_client_close(ctypes.c_void_p(self._client))
        self._client = None


def _loaded_libjacks() -> list[str]:
    """The libjack files mapped into this process (Linux; empty elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps if "libjack" in line.rsplit("/", 1)[-1]}
    return sorted(path for path in paths if path.startswith("/"))


@dataclass
class MidiPorts:
    backend: str
    midi_in: Any  # rtmidi.MidiIn
    midi_out: Any  # rtmidi.MidiOut
    in_label: str
    out_label: str
    dropped: int = 0
    watch: Optional[JackWatch] = None
    keepalive_out: Any = None  # JACK: bachd's own SysEx into its input (see keepalive)
    opened: tuple[tuple[str, str], ...] = ()  # existing ports opened by name: (kind, port)
    jack_ports: tuple[str, str] = ("", "")  # JACK: bachd's own input and output port, "client:port"
    _next_keepalive: float = 0.0
    _next_check: float = 0.0
    _lost: Optional[str] = None
    # Indices in the last poll's batch of the messages that came after a quiet spell of at
    # least QUIET_SECONDS (by rtmidi's own delta times): where a flood's backlog ends and a
    # player's next notes begin, however late bachd reads them.
    quiet_before: tuple[int, ...] = ()
    _quiet_seconds: float = 0.0  # since the last message other than bachd's own keepalive

    def gone(self, now_seconds: float) -> Optional[str]:
        """What went away, if the MIDI system or an opened port did (None: all is well)."""
        if self._lost is None and self.watch is not None and self.watch.gone:
            self._lost = "the JACK server went away"
        if self._lost is None and self.opened and now_seconds >= self._next_check:
            self._next_check = now_seconds + 1.0
            with _quiet_native_stderr():
                listed = {"input": self.midi_in.get_ports(), "output": self.midi_out.get_ports()}
            for kind, port in self.opened:
                if port not in listed[kind]:
                    self._lost = f"the MIDI {kind} port '{port}' went away"
        return self._lost

    def keepalive(self, now_seconds: float) -> None:
        """python-rtmidi's JACK input appends every event after an unterminated SysEx (a
        controller unplugged mid-dump) to that SysEx, and delivers nothing until some event
        ends with F7: bachd would be deaf. So every ``KEEPALIVE_SECONDS`` bachd sends its own
        input a complete 5-byte SysEx, which ends any such SysEx; the parser then takes the
        glued messages apart (:mod:`bachd.live.midiparse`)."""
        if self.keepalive_out is None or now_seconds < self._next_keepalive:
            return
        self._next_keepalive = now_seconds + KEEPALIVE_SECONDS
        self.keepalive_out.send_message(KEEPALIVE_MESSAGE)

    def poll(self, limit: int = 512) -> list[tuple[float, list[int]]]:
        """Messages waiting in rtmidi's input queue, stamped with the monotonic time now."""
        now = time.monotonic()
        messages: list[tuple[float, list[int]]] = []
        quiet = []
        get = self.midi_in.get_message
        while len(messages) < limit:
            event = get()
            if event is None:
                break
            message, delta = event
            self._quiet_seconds += delta
            if message[:4] != KEEPALIVE_MESSAGE[:4]:
                if self._quiet_seconds >= QUIET_SECONDS:
                    quiet.append(len(messages))
                self._quiet_seconds = 0.0
            messages.append((now, message))
        self.quiet_before = tuple(quiet)
        return messages

    def send(self, message) -> None:
        self.midi_out.send_message(message)

    def close(self) -> None:
        for port in (self.midi_in, self.midi_out, self.keepalive_out):
            if port is None:
                continue
            self._settle()
            with contextlib.suppress(Exception):
                port.close_port()
            with contextlib.suppress(Exception):
                port.delete()
        if self.watch is not None:
            self.watch.close()

    def _settle(self, timeout: float = 2.0) -> None:
        """JACK: wait until the server's port list stops changing before a port is
        unregistered. libjack (jack2) walks a client's port list in its notification thread
        on every graph change while ``jack_port_unregister`` edits that list unlocked
        (jackaudio/jack2#216), so closing right after another client left (a keyboard
        unplugged) could crash bachd on its way out."""
        watch = self.watch
        if watch is None or watch.gone:
            return
        deadline = time.monotonic() + timeout
        before = watch.midi_ports(0)
        while time.monotonic() < deadline:
            time.sleep(SETTLE_SECONDS)
            now = watch.midi_ports(0)
            if now == before or watch.gone:
                return
            before = now


def port_map(ports: MidiPorts) -> dict:
    """bachd's own ports, the ports each could be connected to, and what is connected
    (JACK: read from the server's graph; elsewhere the DAW or the system makes the
    connections, and only the ports are listed)."""
    watch = ports.watch
    if ports.backend == "jack" and watch is not None and not watch.gone:
        own_in, own_out = ports.jack_ports
        clients = (own_in.split(":", 1)[0], own_out.split(":", 1)[0])  # and the keepalive's, named after the input
        mine = {name for name in watch.midi_ports(0) if name.split(":", 1)[0].startswith(clients)}
        return {
            "patchable": True,
            "input": own_in, "output": own_out,
            "sources": [p for p in watch.midi_ports(2) if p not in mine],
            "destinations": [p for p in watch.midi_ports(1) if p not in mine],
            "input_from": [p for p in watch.connections(own_in) if p not in mine],
            "output_to": [p for p in watch.connections(own_out) if p not in mine],
        }
    _, _, sources, destinations = probe(ports.backend)
    return {"patchable": False, "input": ports.in_label, "output": ports.out_label,
            "sources": sources, "destinations": destinations, "input_from": [], "output_to": []}


def patch(ports: MidiPorts, side: str, other: str, connect: bool) -> None:
    """Connect bachd's ``side`` ("input" or "output") to the port ``other`` (JACK only)."""
    watch = ports.watch
    if ports.backend != "jack" or watch is None or watch.gone:
        raise BachdError(f"bachd connects its ports itself on JACK only; on {ports.backend}, connect them in your DAW "
                         "or MIDI settings")
    listed = port_map(ports)
    choices = listed["sources"] if side == "input" else listed["destinations"]
    if other not in choices and other not in listed["input_from" if side == "input" else "output_to"]:
        raise BachdError(f"no MIDI port '{other}' to connect bachd's {side} to")
    if side == "input":
        watch.patch(other, ports.jack_ports[0], connect)
    else:
        watch.patch(ports.jack_ports[1], other, connect)


def open_ports(in_name: str = "bachd-in", out_name: str = "bachd-out", backend: str = "auto") -> MidiPorts:
    """Open bachd's input and output on ``backend`` (auto: the first that works)."""
    if backend != "auto" and backend not in BACKENDS:
        raise BachdError(f"unknown MIDI backend {backend!r} (auto, {', '.join(BACKENDS)})")
    compiled = compiled_backends()
    order = (
        [b for b in compiled if b != "windows"] + (["windows"] if "windows" in compiled else [])
        if backend == "auto"
        else [backend]
    )
    if backend != "auto" and backend not in compiled:
        raise SetupError(f"the {backend} MIDI backend is not available in this build of python-rtmidi (available: "
                         f"{', '.join(compiled) or 'none'})")
    reasons = []
    for name in order:
        works, why, _, _ = probe(name)
        if works:
            return _open(name, in_name, out_name)
        reasons.append(f"{name}: {why}")
    if backend == "auto":
        raise SetupError(no_backend_message())
    raise SetupError(f"cannot use the {backend} MIDI backend: {reasons[0].split(': ', 1)[1]}")


def _open(backend: str, in_name: str, out_name: str) -> MidiPorts:
    rtmidi = _rtmidi()
    api = _api(backend)
    with _quiet_native_stderr():
        try:
            midi_in = rtmidi.MidiIn(api, name=in_name, queue_size_limit=INPUT_QUEUE_LIMIT)
            midi_out = rtmidi.MidiOut(api, name=out_name)
        except Exception as error:
            raise SetupError(f"cannot open {backend} MIDI client: {error}") from None
    midi_in.ignore_types(sysex=False, timing=False, active_sense=True)
    ports = MidiPorts(backend, midi_in, midi_out, "", "")
    try:
        ports.in_label = _open_side(
            midi_in, in_name, backend, sources=midi_in.get_ports(), rivals=midi_out.get_ports(), kind="input"
        )
        ports.out_label = _open_side(
            midi_out, out_name, backend, sources=midi_out.get_ports(), rivals=midi_in.get_ports(), kind="output"
        )
    except BachdError:
        ports.close()
        raise

    if backend == "jack":
        ports.jack_ports = (f"{in_name}:{in_name}", f"{out_name}:{out_name}")
        _watch_jack(ports, in_name)
    ports.opened = tuple((kind, label.removeprefix("connected to ")) for kind, label in (
        ("input", ports.in_label), ("output", ports.out_label)) if label.startswith("connected to "))

    def on_error(kind, message, _data=None) -> None:
        # Only rtmidi's own errors land here (a full input queue in a note storm): count
        # them; raising from a MIDI system thread would help nobody.
        ports.dropped += 1

    for port in (midi_in, midi_out):
        port.set_error_callback(on_error)
    return ports


def _open_side(port, name: str, backend: str, sources: list[str], rivals: list[str], kind: str) -> str:
    """Connect to an existing port called ``name``, or create a virtual one.

    ``sources`` are the ports this side can connect to; ``rivals`` the other side's list,
    where another program's virtual port of the same name would show up."""
    existing = _match(name, sources)
    with _quiet_native_stderr():
        try:
            if existing is not None:
                port.open_port(existing, name=name)
                return f"connected to {sources[existing]}"
            if ":" in name:  # "client:port" names a port that exists; bachd never creates one so named
                listed = ", ".join(sources) or "none"
                raise BachdError(f"no MIDI {kind} port named '{name}' (ports: {listed}); give an existing port's "
                                 "name, or a name without ':' for a new virtual port")
            if backend not in _VIRTUAL:
                listed = ", ".join(sources) or "none"
                raise BachdError(f"no MIDI {kind} port named '{name}' (ports: {listed}); {backend} has no virtual "
                                 "ports, so create one (e.g. with loopMIDI) and pass its name")
            if _match(name, rivals) is not None:
                raise SetupError(f"a MIDI port named '{name}' already exists (is another bachd running?); choose "
                                 f"another name with {'--in' if kind == 'input' else '--out'}")
            port.open_virtual_port(name)
        except BachdError:
            raise
        except Exception as error:
            raise BachdError(f"cannot open MIDI {kind} '{name}' on {backend}: {error}") from None
    return f"{name}:{name}" if backend == "jack" else name


def _watch_jack(ports: MidiPorts, in_name: str) -> None:
    """The JACK server's shutdown watch and the SysEx keepalive into bachd's own input."""
    rtmidi = _rtmidi()
    try:
        ports.watch = JackWatch(f"{in_name}-watch")
    except (OSError, AttributeError):
        ports.watch = None  # no libjack to load: the ports still work, unwatched
    with _quiet_native_stderr():
        keepalive = rtmidi.MidiOut(_api("jack"), name=f"{in_name}-keepalive")
        own_input = _match(f"{in_name}:{in_name}", keepalive.get_ports())
        if own_input is None:
            keepalive.delete()
            return
        keepalive.open_port(own_input, name="keepalive")
    ports.keepalive_out = keepalive
