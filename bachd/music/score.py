"""Four voices on the 16th grid as a chorale score: MusicXML for notation programs.

Two staves as a choir reads them (soprano and alto on the treble staff, tenor and bass on
the bass staff, stems up for the upper voice of each), or four with ``staves=4``; the key
signature of the key the music is in, its time signature, the pickup as an upbeat; note
values spelled from the grid (a note is cut at each bar line and tied over, and within a bar
takes the longest values that start where such a value may start: a half note on beat 1 or
3, a dotted quarter on a beat, never across the middle of a 4/4 bar); accidentals spelled in
the key (a raised degree as a sharp, G sharp in A minor, the flattened seventh of a major key
and the Neapolitan second of a minor one as flats); fermatas at the phrase ends bachd's own
phrase measure hears (:func:`bachd.music.analysis.heard_phrase_ends`); a tempo mark, a title
and "bachd" as composer. Written with music21.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from bachd.errors import BachdError
from bachd.music.analysis import detect_key, heard_phrase_ends, key_signature
from bachd.music.encoding import NUM_VOICES, SILENT, STEPS_PER_BEAT
from bachd.outputs import SCORE_SUFFIXES

VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
LETTERS = "CDEFGAB"
NATURAL = (0, 2, 4, 5, 7, 9, 11)


def spelling(key: tuple[int, bool]) -> list[tuple[str, int]]:
    """For each pitch class, (letter, alteration) in ``key`` (tonic pitch class, minor)."""
    from music21 import key as m21key

    tonic, minor = key
    mode = "minor" if minor else "major"
    named = m21key.Key(m21key.KeySignature(key_signature(key)).asKey(mode).tonic.name, mode)
    scale = [(p.step, int(p.alter)) for p in named.getScale(mode).getPitches()[:7]]  # from the tonic
    names: dict[int, tuple[str, int]] = {}
    for letter, alter in scale:
        names[(NATURAL[LETTERS.index(letter)] + alter) % 12] = (letter, alter)
    for letter, alter in scale:
        raised = (NATURAL[LETTERS.index(letter)] + alter + 1) % 12
        if raised not in names and alter < 1:  # never a double sharp
            names[raised] = (letter, alter + 1)
    lowered = {(tonic + 10) % 12: 6} if not minor else {(tonic + 1) % 12: 1}  # major's flat 7th, minor's flat 2nd
    for pc, degree in lowered.items():
        letter, alter = scale[degree]
        if (NATURAL[LETTERS.index(letter)] + alter - 1) % 12 == pc:
            names[pc] = (letter, alter - 1)
    for pc in range(12):  # left over in keys of many sharps or flats: a natural, else the sharp of the letter below
        if pc not in names:
            below = max(i for i, n in enumerate(NATURAL) if n <= pc)
            names[pc] = (LETTERS[below], pc - NATURAL[below])
    return [names[pc] for pc in range(12)]


def _values(position: int, length: int, bar_steps: int) -> list[int]:
    """The note values (in steps) that notate ``length`` steps from ``position`` in a bar."""
    beat = STEPS_PER_BEAT
    out = []
    while length > 0:
        for value in (16, 12, 8, 6, 4, 3, 2, 1):
            if value > length or position + value > bar_steps:
                continue
            if value in (16, 8, 4, 2, 1) and position % value:
                continue
            if value == 12 and position % (2 * beat):  # a dotted half from beat 1 or 3 (or 2 in 3/4)
                if not (bar_steps == 3 * beat and position == 0):
                    continue
            if value == 6 and position % beat:
                continue
            if value == 3 and position % beat and position % beat != 1:
                continue
            if bar_steps == 4 * beat and position < 2 * beat < position + value and value not in (12, 16):
                continue  # never hide the middle of a 4/4 bar
            break
        out.append(value)
        position += value
        length -= value
    return out


def _events(pitches: np.ndarray, attacks: np.ndarray, voice: int) -> list[tuple[int, int, int]]:
    """(start, end, pitch or SILENT) runs of one voice."""
    runs = []
    start = 0
    for step in range(1, len(pitches) + 1):
        if step == len(pitches) or pitches[step, voice] != pitches[start, voice] or (
                attacks[step, voice] and pitches[step, voice] != SILENT):
            runs.append((start, step, int(pitches[start, voice])))
            start = step
    return runs


def build_score(pitches: np.ndarray, attacks: np.ndarray, offset_steps: int = 0, beats_per_bar: int = 4,
                bpm: float = 90.0, title: str = "Chorale", staves: int = 2, key: Optional[tuple[int, bool]] = None,
                analysis: bool = False):
    """A music21 Score of the (T, 4) grid (pitches, attacks), step 0 that far into its bar;
    with ``analysis``, each beat's chord as a Roman numeral under the bass and the cadence
    at each phrase end on a second line (:mod:`bachd.music.roman`)."""
    from music21 import clef, expressions, instrument, layout, metadata, meter, note, pitch, stream, tempo, tie
    from music21 import key as m21key

    pitches, attacks = np.asarray(pitches), np.asarray(attacks, dtype=bool)
    if pitches.ndim != 2 or pitches.shape[1] != NUM_VOICES or not len(pitches):
        raise BachdError("a score needs some music in four voices")
    bar_steps = beats_per_bar * STEPS_PER_BEAT
    offset_steps %= bar_steps
    key = key or detect_key(pitches)
    names = spelling(key)
    ends = set(heard_phrase_ends(pitches, attacks, phase=offset_steps, bar_steps=bar_steps))
    labels: dict[int, tuple[str, Optional[str]]] = {}
    if analysis:
        from bachd.music.roman import analyse

        labels = analyse(pitches, attacks, key, names, offset_steps, bar_steps)
    total = offset_steps + len(pitches)
    bars = -(-total // bar_steps)
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title, composer="bachd")
    layout_staves = [(0, 1), (2, 3)] if staves == 2 else [(0,), (1,), (2,), (3,)]
    parts = []
    for index, voices in enumerate(layout_staves):
        part = stream.PartStaff(id=f"staff{index + 1}") if staves == 2 else stream.Part(id=VOICE_NAMES[voices[0]])
        part.partName = "Choir" if staves == 2 else VOICE_NAMES[voices[0]]
        low = min(voices) >= 2
        measures = []
        for bar in range(bars):
            measure = stream.Measure(number=bar + (0 if offset_steps else 1))
            if bar == 0:
                if staves == 4 or index == 0:  # the instrument a notation program plays it with
                    singer = (instrument.Choir() if staves == 2 else
                              (instrument.Soprano, instrument.Alto, instrument.Tenor, instrument.Bass)[voices[0]]())
                    part.insert(0, singer)
                measure.insert(0, clef.BassClef() if low else clef.TrebleClef())
                measure.insert(0, m21key.KeySignature(key_signature(key)))
                measure.insert(0, meter.TimeSignature(f"{beats_per_bar}/4"))
                if index == 0:
                    measure.insert(
                        0, tempo.MetronomeMark(number=round(bpm), referent=note.Note(type="quarter").duration)
                    )
            measures.append(measure)
        for order, voice in enumerate(voices):
            lines = [stream.Voice(id=str(order + 1)) for _ in range(bars)]
            for start, end, midi in _events(pitches, attacks, voice):
                pieces = []  # (bar, value, the step it starts on)
                position = start + offset_steps
                while position < end + offset_steps:
                    bar, inside = divmod(position, bar_steps)
                    span = min(end + offset_steps, (bar + 1) * bar_steps) - position
                    at = position - offset_steps
                    for value in _values(inside, span, bar_steps):
                        pieces.append((bar, value, at))
                        at += value
                    position += span
                for number, (bar, value, at) in enumerate(pieces):
                    item: Any
                    if midi == SILENT:
                        item = note.Rest(quarterLength=value / STEPS_PER_BEAT)
                    else:
                        letter, alter = names[midi % 12]
                        octave = (midi - NATURAL[LETTERS.index(letter)] - alter) // 12 - 1
                        item = note.Note(pitch.Pitch(step=letter, accidental=alter or None, octave=octave),  # type: ignore[arg-type]
                                         quarterLength=value / STEPS_PER_BEAT)
                        if len(pieces) > 1:
                            item.tie = tie.Tie(
                                "start" if number == 0 else "stop" if number == len(pieces) - 1 else "continue"
                            )
                        if number == 0 and any(start <= e < end for e in ends):
                            item.expressions.append(expressions.Fermata())
                        if len(voices) == 2:
                            item.stemDirection = "up" if order == 0 else "down"
                        if voice == NUM_VOICES - 1 and at in labels:  # the analysis, under the bass
                            label, closing = labels[at]
                            item.addLyric(label)
                            if closing:
                                item.addLyric(closing, lyricNumber=2)
                    lines[bar].append(item)
            for bar, line in enumerate(lines):
                measures[bar].insert(0, line)
        if offset_steps:
            measures[0].paddingLeft = offset_steps / STEPS_PER_BEAT  # the pickup: an upbeat, not rests
        last_fill = total % bar_steps
        if last_fill:
            measures[-1].paddingRight = (bar_steps - last_fill) / STEPS_PER_BEAT
        for measure in measures:
            part.append(measure)
        parts.append(part)
    for part in parts:
        score.insert(0, part)
    if staves == 2:
        score.insert(0, layout.StaffGroup(parts, name="Choir", symbol="brace"))
    return score


def write_score(pitches: np.ndarray, attacks: np.ndarray, path: str | Path, **options) -> Path:
    """Write the grid as MusicXML (``.musicxml``, or compressed ``.mxl``)."""
    path = Path(path)
    if path.suffix.lower() not in SCORE_SUFFIXES:
        raise BachdError(f"a score is written as {' or '.join(SCORE_SUFFIXES)}, not {path.suffix or 'no suffix'}")
    score = build_score(pitches, attacks, **options)
    score.write("mxl" if path.suffix.lower() == ".mxl" else "musicxml", fp=str(path))
    return path
