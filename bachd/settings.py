"""Every sampling and live setting, declared once: name, default, bounds, help.

The command line (its options' defaults, bounds and help), the TOML presets, the CC knobs and
the engine's sampler all read this table, so a setting means the same thing and is checked
the same way wherever it is set. :func:`check` is the one validation.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

from bachd.errors import BachdError
from bachd.registry import CLOCKS, MODES


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    kind: type = float  # float, int, bool or str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Collection[str] = ()  # a tuple, or a registry (bachd.registry) read as it is now
    optional: bool = False  # None is a value ("not set")
    also: tuple[str, ...] = ()  # other string values an int setting takes ("follow")
    cc_range: Optional[tuple[float, float]] = None  # what CC values 0..127 sweep, if a knob may set it
    offline: Any = None  # the default for music written offline (generate, eval --music), if it differs
    live: bool = False  # bachd run may change it while playing (a CC, the control surface)
    sampling: bool = False  # the sampler reads it (bachd.model.sampling.SamplingConfig)

    @property
    def label(self) -> str:
        """The setting's name as users see it on a control: "Rhythm temperature"."""
        return self.name.replace("_", " ").capitalize()

    def offline_default(self) -> Any:
        return self.default if self.offline is None else self.offline

    def problem(self, value: Any) -> Optional[str]:
        """What is wrong with ``value``, or None."""
        if value is None and self.optional:
            return None
        if isinstance(value, str) and value in self.also:
            return None
        if self.choices:
            return (
                None
                if isinstance(value, str) and value in self.choices
                else f"must be one of {', '.join(self.choices)}"
            )
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind is str:
            return None if isinstance(value, str) else "must be a string"
        numeric = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if self.also and (isinstance(value, bool) or not numeric or not self.low <= value <= self.high):
            return f"must be {self.low:g}-{self.high:g} or " + " or ".join(repr(a) for a in self.also)
        if isinstance(value, bool) or not numeric:
            return f"must be {'an integer' if self.kind is int else 'a number'}"
        if (
            not math.isfinite(value)
            or (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        ):
            return f"must be between {self.low:g} and {self.high:g}"
        return None

    def check(self, value: Any, source: str = "command line") -> Any:
        if self.also and isinstance(value, str) and value not in self.also:
            try:  # "80" on a command line that also takes "follow"
                value = int(value)
            except ValueError:
                pass
        problem = self.problem(value)
        if problem is None:
            return float(value) if self.kind is float and value is not None else value
        if source == "command line":
            raise BachdError(f"--{self.name.replace('_', '-')} {problem}, got {value!r}")
        raise BachdError(f"{source}: key '{self.name}' {problem}, got {value!r}")

    def from_cc(self, value: int) -> Any:
        """A CC value 0..127 onto this setting's knob range (the performer checks what it is
        given like any other value)."""
        if self.cc_range is None:
            raise BachdError(f"{self.name} has no CC knob")
        low, high = self.cc_range
        scaled = low + (high - low) * max(0, min(127, int(value))) / 127
        return round(scaled) if self.kind is int else scaled


def _declare(default: Any, help: str, kind: type = float, *args: Any, **options: Any) -> Any:
    """A setting's declaration, as the default of its field in :class:`Declared`."""
    return field(default=default, metadata={"setting": (default, help, kind, *args), "options": options})


@dataclass(frozen=True)
class Declared:
    """Every setting, declared once: its field is its name, type and default; the rest of its
    declaration (help, bounds, choices, whether it may change live) rides on the field."""

    description: str = _declare("", "What the preset is for.", str)
    mode: str = _declare(
        "continue",
        "continue (call and response) or harmonize (voices under your melody).",
        str,
        choices=MODES,
        live=True,
    )
    clock: str = _declare("internal", "internal (at --bpm), midi (follow the DAW's MIDI clock and transport), auto "
                                      "(the internal clock until the DAW sends MIDI clock, then that) or link (join an "
                                      "Ableton Link session: its tempo, beat phase and start/stop; --bpm is the tempo "
                                      "bachd proposes if it starts the session).", str, choices=CLOCKS)
    bpm: float = _declare(90.0, "Tempo in quarter-note beats per minute (the internal clock's, and the first guess "
                                "for MIDI clock).", float, 20, 320, live=True)
    beats_per_bar: int = _declare(4, "Quarter-note beats per bar (4 for 4/4, 3 for 3/4).", int, 2, 12)
    # The offline defaults were chosen on the musical checks (README, "Musical checks").
    temperature: float = _declare(
        0.7,
        "Sampling temperature of the pitch choice (lower is safer).",
        float,
        0.05,
        5.0,
        cc_range=(0.2, 1.8),
        live=True,
        sampling=True,
    )
    top_p: float = _declare(
        0.9,
        "Nucleus sampling: keep the most likely tokens up to this mass.",
        float,
        0.01,
        1.0,
        live=True,
        sampling=True,
    )
    # Offline it is raised so that chords change as often as Bach's (docs/figures.md).
    rhythm_temperature: float = _declare(1.0, "Temperature of each voice's hold-or-move choice, apart from pitch (1: "
                                              "the model's own odds; lower is plainer, higher is freer). Offline "
                                              "default 1.15.", float, 0.05, 5.0, offline=1.15, live=True, sampling=True)
    # As strong as keeps as many steps in the key as Bach's (docs/figures.md).
    key_pull: float = _declare(
        2.0,
        "How strongly (in nats) notes outside the key are held back: the opening key "
        "offline, the key of what the player has played so far live (0: not at all).",
        float,
        0.0,
        10.0,
        live=True,
        sampling=True,
    )
    # Offline mostly off: Bach's chromatic notes are mostly the inner voices' (docs/figures.md).
    inner_pull: float = _declare(1.0, "The share of key_pull that holds back the alto's and tenor's notes outside the "
                                      "key (1: as much as the soprano's and bass's; 0: not at all). Offline default "
                                      "0.15.", float, 0.0, 1.0, offline=0.15, live=True, sampling=True)
    minor_pull: float = _declare(
        1.0,
        "How strongly (in nats) the two notes that turn a minor key major are held "
        "back: its flat 7th (the relative major's leading tone) and its major 3rd (0: "
        "not at all). Offline default 1.5.",
        float,
        0.0,
        10.0,
        offline=1.5,
        live=True,
        sampling=True,
    )
    root_pull: float = _declare(1.0, "How strongly (in nats) the bass is drawn to the root of the chord above it on "
                                     "the beat (0: not at all).", float, 0.0, 10.0, live=True, sampling=True)
    max_chord_beats: float = _declare(
        0.0,
        "The longest a full chord may stand unchanged, in beats, before the bass "
        "has to move on the next beat (0: no limit). Offline generation only "
        "(generate, eval --music); default there 2, a beat more for a chord that closes a "
        "phrase.",
        float,
        0.0,
        64.0,
        offline=2.0,
        sampling=True,
    )
    cadence_hold: float = _declare(0.0, "How strongly (in nats) the soprano holds a note struck on a V-I or IV-I "
                                        "close in the piece's key on a strong beat, up to a half note, so the close "
                                        "ends a phrase; a third of it keeps other notes from lasting past a beat (0: "
                                        "not at all). Offline generation only (generate, eval --music); default there "
                                        "3.", float, 0.0, 10.0, offline=3.0, sampling=True)
    # So that phrase ends in other keys close as often as Bach's do (docs/figures.md).
    away_hold: float = _declare(
        0.0,
        "How strongly (in nats) the soprano holds a note struck on a V-I or IV-I close "
        "in another key than the piece's, on a strong beat, up to a half note, as "
        "cadence_hold does for the piece's own key (0: not at all). Offline generation "
        "only (generate, eval --music); default there 1.",
        float,
        0.0,
        10.0,
        offline=1.0,
        sampling=True,
    )
    # Bach's voices keep to about an octave (the bass an 11th) over 16 bars; the model's wander further.
    compass_pull: float = _declare(
        0.0,
        "How strongly (in nats per semitone) a voice's next note is held back from stretching its "
        "compass over the last 16 bars past Bach's (an octave for the soprano, alto and tenor, an "
        "11th for the bass) (0: not at all). Offline generation only (generate, eval --music); "
        "default there 0.5.",
        float,
        0.0,
        10.0,
        offline=0.5,
        sampling=True,
    )
    # Lines that move as Bach's: the model's own calibration, fit by bachd calibrate (bachd.model.calibration).
    interval_calibration: float = _declare(
        0.0,
        "How much of the model's melodic-interval calibration (bachd calibrate) each voice's "
        "next note takes, so lines leap and step as often as Bach's (1: all of it; 0: none; a "
        "model without one: none). Offline generation only (generate, eval --music); default "
        "there 1.",
        float,
        0.0,
        2.0,
        offline=1.0,
        sampling=True,
    )
    # One draw closes far fewer phrase ends than Bach does; the best of several, more (docs/figures.md).
    chord_draws: int = _declare(
        8,
        "Harmonize mode: chords drawn ahead under each likely next melody note on a strong "
        "beat (1 and 3 in 4/4, the downbeat otherwise); bachd plays the one that closes "
        "best: a complete chord, then a V-I or IV-I into a root-position triad from the "
        "chord on the beat before, then one on the key's tonic; of two alike, the one in "
        "the key. On the beat before a strong beat, as many under a melody note on the "
        "key's 2nd, 4th, 5th or 7th, keeping the key's dominant in root position, then any "
        "root-position chord; a dominant kept there stands until the strong beat while the "
        "melody holds, and the bass of a strong beat's chord stands for the beat while the "
        "melody holds (1: the model's own draws, nothing stands).",
        int,
        1,
        16,
        live=True,
        sampling=True,
    )
    response_bars: int = _declare(2, "Continue mode: bars in each answer.", int, 1, 64, cc_range=(1, 8), live=True)
    listen_gap: float = _declare(
        1.0, "Continue mode: beats of silence that end your call.", float, 0.25, 16.0, live=True
    )
    start_on: str = _declare(
        "beat", "Continue mode: answers start on the next beat or bar.", str, choices=("beat", "bar"), live=True
    )
    max_hold_beats: float = _declare(8.0, "A key held this many beats after its note-on stops counting as held, "
                                          "whatever else is played meanwhile (a lost note-off never wedges a call or "
                                          "the melody).", float, 1.0, 256.0, live=True)
    allow_overlap: bool = _declare(
        False, "Continue mode: keep answering when you play over an answer.", bool, live=True
    )
    allow_parallels: bool = _declare(False, "Let the lower voices move in parallel (or contrary) fifths and octaves "
                                            "with the upper ones.", bool, live=True, sampling=True)
    rng_seed: Optional[int] = _declare(
        None, "Random seed for sampling (same seed, same music).", int, 0, 2**63 - 1, optional=True
    )
    in_channel: int = _declare(0, "Listen to this channel only (1-16, channel 10 too if you name it); 0: every "
                                  "channel but 10 (General MIDI drums).", int, 0, 16, live=True)
    out_channel: int = _declare(
        0, "Send all voices on this channel (1-16; 0 = S, A, T, B on channels 1-4).", int, 0, 16, live=True
    )
    velocity: Union[int, str] = _declare(
        80, "Note velocity 1-127, or 'follow' to follow the player.", int, 1, 127, also=("follow",), live=True
    )
    soundfont: Optional[str] = _declare(None, "A General MIDI SoundFont (.sf2/.sf3) for what bachd plays as audio "
                                              "(the monitor, render, generate --wav); 'organ' for the built-in organ. "
                                              "Unset: the first General MIDI font found in the usual places, else the "
                                              "organ.", str, optional=True)
    record: Optional[str] = _declare(
        None,
        "bachd run: record the session (your notes, each voice, the tempo, a "
        "marker per answer) to this MIDI file, or to a new file named by the time "
        "in this folder; written at least once a bar. A .musicxml or .mxl name "
        "records the MIDI file beside it and writes the score when bachd stops.",
        str,
        optional=True,
    )


SETTINGS: dict[str, Setting] = {
    item.name: Setting(item.name, *item.metadata["setting"], **item.metadata["options"]) for item in fields(Declared)
}
# The settings the sampler reads (bachd.model.sampling.SamplingConfig has a field of each name).
SAMPLING = tuple(name for name, setting in SETTINGS.items() if setting.sampling)


SEED_BARS = 16  # of a long seed file, only the last bars are fed to the engine (twice the training windows)


def check(name: str, value: Any, source: str = "command line") -> Any:
    """``value`` for setting ``name``, checked (and a float where the setting is one)."""
    return SETTINGS[name].check(value, source)

