"""Sound from a General MIDI SoundFont (.sf2/.sf3) through FluidSynth.

The synthesizer is FluidSynth, the maintained SoundFont synthesizer that Linux distributions,
Homebrew and MuseScore ship, through its ``pyfluidsynth`` binding (pure Python over the
library's C API: nothing to compile). :class:`SoundFontSynth` has the organ's interface
(:class:`bachd.sound.synth.Synth`), so the monitor, ``bachd render`` and ``generate --wav``
take either. Each part plays a General MIDI program (0-based, as MIDI sends it: 19 is the
Church Organ, 52 Choir Aahs) on a MIDI channel of its own.

Without ``--soundfont``, bachd takes the first General MIDI font it finds in the usual
places; with none (or without the FluidSynth library) it plays the built-in organ.
A file that is missing, unreadable or not a SoundFont is a one-line error before anything
starts.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.errors import BachdError
from bachd.sound.synth import NoteRenderer

PARTS = ("soprano", "alto", "tenor", "bass", "player")
# Church Organ for the four voices, a Reed Organ for the player's own notes (quieter, apart).
DEFAULT_PROGRAMS = (19, 19, 19, 19, 20)
SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "~/.local/share/soundfonts")
GM_PROGRAMS_NEEDED = 100  # a General MIDI font has (nearly) all 128 melodic programs in bank 0


def check_programs(programs, source: str = "--programs") -> tuple[int, ...]:
    """Five General MIDI programs 0-127 (soprano, alto, tenor, bass, player); four take the
    last voice's for the player."""
    values = list(programs)
    if len(values) == 4:
        values.append(DEFAULT_PROGRAMS[4])
    if len(values) != 5 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 127 for v in values):
        raise BachdError(f"{source} must be General MIDI programs 0-127 for soprano, alto, tenor, bass[, player], got "
                         f"{programs!r}")
    return tuple(values)


def parse_programs(text: str) -> tuple[int, ...]:
    try:
        return check_programs([int(part) for part in text.split(",")])
    except ValueError:
        raise BachdError(f"--programs must be comma-separated General MIDI programs 0-127, got {text!r}") from None


# --- the file ------------------------------------------------------------------------------------
def melodic_programs(path: Path) -> set[int]:
    """The programs of bank 0 a SoundFont holds, read from its preset headers (RIFF 'sfbk',
    LIST 'pdta', chunk 'phdr'): without loading a sample. BachdError if it is not a SoundFont."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
                raise BachdError(f"{path} is not a SoundFont (.sf2/.sf3)")
            end = 8 + struct.unpack("<I", header[4:8])[0]
            position = 12
            while position + 8 <= end:
                handle.seek(position)
                chunk = handle.read(12)
                if len(chunk) < 8:
                    break
                size = struct.unpack("<I", chunk[4:8])[0]
                if chunk[:4] == b"LIST" and chunk[8:12] == b"pdta":
                    inner, stop = position + 12, position + 8 + size
                    while inner + 8 <= stop:
                        handle.seek(inner)
                        sub = handle.read(8)
                        sub_size = struct.unpack("<I", sub[4:8])[0]
                        if sub[:4] == b"phdr":
                            records = handle.read(sub_size)
                            programs = set()
                            for k in range(0, len(records) - 38, 38):  # the last record is the terminal one
                                program, bank = struct.unpack("<HH", records[k + 20:k + 24])
                                if bank == 0 and program < 128:
                                    programs.add(program)
                            return programs
                        inner += 8 + sub_size + (sub_size & 1)
                position += 8 + size + (size & 1)
    except OSError as error:
        raise BachdError(f"cannot read the SoundFont {path}: {error.strerror or error}") from None
    raise BachdError(f"{path} is not a SoundFont: it has no preset headers")


def check_soundfont(path: str | Path) -> Path:
    """``path`` if it is a readable SoundFont, else a one-line BachdError."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise BachdError(f"no SoundFont at {path}")
    melodic_programs(path)
    return path


def find_soundfont(places: Optional[Iterable[str]] = None) -> Optional[Path]:
    """The first General MIDI SoundFont in $BACHD_SOUNDFONT (a file or folder) and the usual
    places, or in ``places`` (files or folders) if given (None: there is none)."""
    places = [os.environ.get("BACHD_SOUNDFONT", ""), *SEARCH_DIRS] if places is None else list(places)
    for name in filter(None, places):
        place = Path(os.path.expanduser(name))
        candidates = [place] if place.is_file() else sorted(
            p for p in (place.iterdir() if place.is_dir() else ()) if p.suffix.lower() in (".sf2", ".sf3"))
        for candidate in candidates:
            try:
                if len(melodic_programs(candidate)) >= GM_PROGRAMS_NEEDED:
                    return candidate.resolve()
            except BachdError:
                continue
    return None


def _fluidsynth():
    try:
        # The binding prints where it found the library when CI is set; bachd's stdout is
        # its ready line and its files' reports.
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except ImportError as error:  # pyfluidsynth raises ImportError when libfluidsynth is missing too
        raise BachdError("SoundFonts need the FluidSynth library: apt-get install libfluidsynth3 (Debian, Ubuntu), "
                         f"brew install fluid-synth (macOS) ({error})") from None
    return fluidsynth


def fluidsynth_available() -> bool:
    try:
        _fluidsynth()
    except BachdError:
        return False
    return True


# --- the synthesizer -------------------------------------------------------------------------------
class SoundFontSynth(NoteRenderer):
    """The organ's interface on FluidSynth: ``registration`` 0-3 are soprano to bass, 4 the
    player's notes, each on its own channel with its program."""

    release_seconds = 0.95  # a SoundFont's notes ring on longer than the organ's

    def __init__(self, path: str | Path, sample_rate: int = 48000, programs: tuple[int, ...] = DEFAULT_PROGRAMS,
                 gain: float = 1.0):
        fluidsynth = _fluidsynth()
        path = check_soundfont(path)
        self.path, self.sample_rate = path, int(sample_rate)
        self.programs = check_programs(programs)
        self._synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        self._font = self._synth.sfload(str(path))
        if self._font < 0:
            raise BachdError(f"FluidSynth cannot load the SoundFont {path}")
        for channel, program in enumerate(self.programs):
            self._synth.program_select(channel, self._font, 0, program)
        self._keys: dict[object, tuple[int, int]] = {}  # key → (channel, pitch)
        self._sounding: Counter[tuple[int, int]] = Counter()  # keys on one (channel, pitch)

    @property
    def active_notes(self) -> int:
        return len(self._keys)

    def note_on(self, key, pitch: int, velocity: int = 90, registration: int = 0) -> None:
        self.note_off(key)
        channel = min(max(int(registration), 0), len(self.programs) - 1)
        note = (channel, int(pitch))
        if self._sounding[note]:
            self._synth.noteoff(*note)  # strike it again
        self._sounding[note] += 1
        self._keys[key] = note
        self._synth.noteon(channel, int(pitch), min(max(int(velocity), 1), 127))

    def note_off(self, key) -> None:
        note = self._keys.pop(key, None)
        if note is None:
            return
        self._sounding[note] -= 1
        if self._sounding[note] <= 0:
            del self._sounding[note]
            self._synth.noteoff(*note)

    def all_notes_off(self) -> None:
        for key in list(self._keys):
            self.note_off(key)

    def render(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples, (frames, 2) float32."""
        if frames <= 0:
            return np.zeros((0, 2), np.float32)
        samples = np.asarray(self._synth.get_samples(frames), dtype=np.float32)
        return (samples.reshape(frames, 2) / 32768.0).astype(np.float32)

    def close(self) -> None:
        self._synth.delete()


# --- which sound ----------------------------------------------------------------------------------
def resolve_sound(soundfont: Optional[str]) -> Optional[Path]:
    """The SoundFont to play (None: the built-in organ), checked before anything starts.
    ``soundfont``: a path (it must be a readable SoundFont, and FluidSynth there), 'organ',
    or None: the first General MIDI font found, if FluidSynth is there to play it."""
    if soundfont == "organ":
        return None
    if soundfont:
        path = check_soundfont(soundfont)
        _fluidsynth()
        return path
    found = find_soundfont()
    return found if found is not None and fluidsynth_available() else None


def make_synth(
    soundfont: Optional[Path], sample_rate: int, programs: tuple[int, ...] = DEFAULT_PROGRAMS
) -> NoteRenderer:
    from bachd.sound.synth import Synth

    return Synth(sample_rate) if soundfont is None else SoundFontSynth(soundfont, sample_rate, programs)


def sound_name(soundfont: Optional[Path]) -> str:
    return "the built-in organ" if soundfont is None else f"the SoundFont {soundfont}"
