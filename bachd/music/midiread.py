"""The one reader for every MIDI file bachd is handed, on the command line or in the pages.

A MIDI file is untrusted input: 37 bytes can declare a note billions of ticks long, and a
file of tempo changes can make a naive tempo map quadratic. So every file is read within
:data:`LIMITS`, declared here once: its size before it is parsed, then its tracks, notes,
tempo changes, length in beats and in seconds as they are met. A file past a limit, or
malformed, is refused with one line that names the file and the limit; one that passes
comes back as :class:`MidiData`, notes and a tempo map in linear time, which the grid
reader (:func:`bachd.music.midifile.read_midi`), the file performances, the studio and the
renderer all read.
"""

from __future__ import annotations

import io
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import mido

from bachd.errors import BachdError
from bachd.midi import DRUM_CHANNEL

DEFAULT_TEMPO = 500_000  # microseconds per beat (120 bpm) until a file says otherwise


@dataclass(frozen=True)
class Limits:
    """What bachd reads of a MIDI file at most. A chorale is a few kB, a minute or two,
    a few hundred notes; these leave room for a long piece and bound the time and memory
    any file can take (parsing, the 16th-note grid, a performance, a render)."""

    size: int = 2 * 1024 * 1024  # bytes
    tracks: int = 64
    notes: int = 20_000
    tempo_changes: int = 4_096
    beats: int = 4_000  # the grid has four steps a beat
    seconds: float = 600.0
    ticks_per_beat: int = 32_767  # the header's 15 bits


LIMITS = Limits()


@dataclass(frozen=True)
class MidiNote:
    track: int
    channel: int  # 0-15
    pitch: int
    velocity: int
    start: int  # ticks
    end: int


@dataclass
class MidiData:
    """A MIDI file within the limits: its notes (in each track's order), its tempo changes
    from every track, and what else bachd reads."""

    name: str
    ticks_per_beat: int
    tracks: int
    notes: list[MidiNote] = field(default_factory=list)
    tempos: list[tuple[int, int]] = field(default_factory=list)  # (tick, microseconds per beat), sorted
    track_names: list[Optional[str]] = field(default_factory=list)
    all_off: list[tuple[int, int]] = field(default_factory=list)  # (tick, channel): All Sound/Notes Off
    drum_notes: int = 0
    end_tick: int = 0
    time_signature: Optional[tuple[int, int]] = None  # (numerator, denominator) of the first one, if any

    def __post_init__(self) -> None:
        self._marks = [(0, 0.0, DEFAULT_TEMPO)]  # (tick, seconds there, tempo from there)
        for tick, tempo in self.tempos:
            last_tick, last_seconds, last_tempo = self._marks[-1]
            self._marks.append(
                (tick, last_seconds + (tick - last_tick) * last_tempo / 1e6 / self.ticks_per_beat, tempo)
            )
        self._mark_ticks = [mark[0] for mark in self._marks]

    def seconds(self, tick: int) -> float:
        """Ticks → seconds under the tempo changes: a binary search, so a whole file is
        mapped in n log n, whatever its tempo changes."""
        mark_tick, mark_seconds, tempo = self._marks[bisect_right(self._mark_ticks, tick) - 1]
        return mark_seconds + (tick - mark_tick) * tempo / 1e6 / self.ticks_per_beat

    @property
    def length_seconds(self) -> float:
        return self.seconds(self.end_tick)

    @property
    def first_bpm(self) -> Optional[float]:
        return mido.tempo2bpm(self.tempos[0][1]) if self.tempos else None


Source = Union[str, Path]


def read_bytes(data: bytes, name: str = "the file", limits: Limits = LIMITS) -> MidiData:
    """A MIDI file's bytes, read within ``limits``; a :class:`BachdError` of one line
    naming ``name`` and the limit otherwise."""
    if len(data) > limits.size:
        raise BachdError(f"{name}: {_size(len(data))}; bachd reads MIDI files of at most {_size(limits.size)}")
    if len(data) < 14 or data[:4] != b"MThd":
        raise BachdError(f"{name}: not a readable MIDI file (it does not start with a MIDI header)")
    _check_header(data, name, limits)
    try:
        mid = mido.MidiFile(file=io.BytesIO(data))
    except EOFError:
        raise BachdError(f"{name}: not a readable MIDI file (it ends in the middle of a track)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
        raise BachdError(f"{name}: not a readable MIDI file ({_one_line(exc)})") from None
    return _scan(mid, name, limits)


def read_file(path: Source, limits: Limits = LIMITS) -> MidiData:
    """A MIDI file on disk, read within ``limits`` (its size is checked before it is read)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.size:
            raise BachdError(f"{path}: {_size(size)}; bachd reads MIDI files of at most {_size(limits.size)}")
        with open(path, "rb") as handle:
            data = handle.read(limits.size + 1)
    except FileNotFoundError:
        raise BachdError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BachdError(f"{path}: a folder, not a MIDI file") from None
    except OSError as exc:
        raise BachdError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return read_bytes(data, str(path), limits)


def _check_header(data: bytes, name: str, limits: Limits) -> None:
    """The header's division before mido sees it: SMPTE time and zero ticks make no beats."""
    header_size = struct.unpack(">L", data[4:8])[0]
    if header_size < 6:
        raise BachdError(f"{name}: not a readable MIDI file (its header is {header_size} bytes, not 6)")
    _, tracks, division = struct.unpack(">HHH", data[8:14])
    if division & 0x8000:
        raise BachdError(f"{name}: its times are in SMPTE frames, not beats; bachd reads files timed in beats")
    if division == 0:
        raise BachdError(f"{name}: ticks_per_beat is 0; a MIDI file needs 1 or more ticks per beat")
    if tracks > limits.tracks:
        raise BachdError(f"{name}: {tracks} tracks; bachd reads files of at most {limits.tracks} tracks")


def _scan(mid: mido.MidiFile, name: str, limits: Limits) -> MidiData:
    """One pass over every message: notes paired, tempo changes gathered, limits checked as
    they are met (so a refusal costs no more than the file's own size)."""
    ticks_per_beat = mid.ticks_per_beat
    max_tick = limits.beats * ticks_per_beat
    tempos: list[tuple[int, int]] = []
    notes: list[MidiNote] = []
    names: list[Optional[str]] = []
    all_off: list[tuple[int, int]] = []
    drum_notes = end_tick = 0
    signature: Optional[tuple[int, int, int]] = None  # (tick, numerator, denominator) of the earliest
    for index, track in enumerate(mid.tracks):
        tick = 0
        track_name: Optional[str] = None
        sounding: dict[tuple[int, int], tuple[int, int]] = {}  # (channel, pitch) -> (start, velocity)
        for message in track:
            tick += message.time
            if tick > max_tick:
                raise BachdError(f"{name}: longer than {limits.beats:,} beats; bachd reads files of at most "
                                 f"{limits.beats:,} beats")
            kind = message.type
            if kind == "note_on" or kind == "note_off":
                if message.channel == DRUM_CHANNEL:
                    drum_notes += kind == "note_on" and message.velocity > 0
                key = (message.channel, message.note)
                if key in sounding:  # a note-off, or a re-strike without one: the note ends
                    start, velocity = sounding.pop(key)
                    notes.append(MidiNote(index, key[0], key[1], velocity, start, tick))
                if kind == "note_on" and message.velocity > 0:
                    sounding[key] = (tick, message.velocity)
                    if len(notes) + len(sounding) > limits.notes:
                        raise BachdError(f"{name}: more than {limits.notes:,} notes; bachd reads files of at most "
                                         f"{limits.notes:,}")
            elif kind == "set_tempo":
                if message.tempo <= 0:
                    raise BachdError(f"{name}: a tempo of 0 at tick {tick}; a tempo must be above 0")
                tempos.append((tick, message.tempo))
                if len(tempos) > limits.tempo_changes:
                    raise BachdError(f"{name}: more than {limits.tempo_changes:,} tempo changes; "
                                     f"bachd reads files of at most {limits.tempo_changes:,}")
            elif kind == "time_signature" and (signature is None or tick < signature[0]):
                signature = (tick, message.numerator, message.denominator)
            elif kind == "track_name" and track_name is None:
                track_name = message.name
            elif kind == "control_change" and message.control in (120, 123):
                all_off.append((tick, message.channel))
        for (channel, pitch), (start, velocity) in sounding.items():  # never ended: ends with its track
            notes.append(MidiNote(index, channel, pitch, velocity, start, tick))
        names.append(track_name)
        end_tick = max(end_tick, tick)
    tempos.sort(key=lambda t: t[0])  # stable: at one tick, the later change wins
    data = MidiData(name, ticks_per_beat, len(mid.tracks), notes, tempos, names, all_off, drum_notes, end_tick,
                    None if signature is None else signature[1:])
    length = data.length_seconds
    if length > limits.seconds:
        raise BachdError(f"{name}: {_clock(length)} long; bachd reads files of at most {_clock(limits.seconds)}")
    return data


def _size(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} kB"


def _clock(seconds: float) -> str:
    if seconds >= 360_000:
        return f"{seconds / 3600:,.0f} hours"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:120] or type(exc).__name__)
