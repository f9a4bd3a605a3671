"""Standard MIDI files in and out: four voices on the 16th-note grid.

Reading quantizes any MIDI file to the grid and assigns its notes to S, A, T, B; writing
puts one voice per track and channel, holds held notes, re-strikes repeated ones and closes
every note it opens.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

from bachd.errors import BachdError
from bachd.midi import DRUM_CHANNEL
from bachd.music.encoding import NUM_VOICES, SILENT, STEPS_PER_BEAT, VOICE_SLOTS, Note, tokens_to_notes
from bachd.music.midiread import MidiData, read_file

TICKS_PER_BEAT = 480
TICKS_PER_STEP = TICKS_PER_BEAT // STEPS_PER_BEAT
VOICE_PROGRAMS = (52, 52, 52, 52)  # General MIDI choir aahs: a chorale is sung
TRACK_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


def write_midi(
    tokens: np.ndarray,
    path: str | Path,
    bpm: float = 90.0,
    velocity: int = 80,
    beats_per_bar: int = 4,
    marker_step: int | None = None,
    offset_steps: int = 0,
) -> list[Note]:
    """Write a (T, 4) token array as a type-1 MIDI file; returns the notes written.

    ``marker_step``, when given, puts a marker there (where a seed ends and bachd begins).
    ``offset_steps`` places step 0 that far into the first bar (a pickup: 12 in 4/4 puts it
    on the fourth beat), so the file's bar lines fall where the music's do.
    """
    notes = [
        Note(n.voice, n.pitch, n.start_step + offset_steps, n.end_step + offset_steps) for n in tokens_to_notes(tokens)
    ]
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name="bachd", time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4, time=0))
    if marker_step is not None:
        meta.append(mido.MetaMessage("marker", text="bachd", time=(marker_step + offset_steps) * TICKS_PER_STEP))
    mid.tracks.append(meta)
    for voice in range(NUM_VOICES):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=TRACK_NAMES[voice], time=0))
        track.append(mido.Message("program_change", channel=voice, program=VOICE_PROGRAMS[voice], time=0))
        events: list[tuple[int, int, mido.Message]] = []
        for note in notes:
            if note.voice != voice:
                continue
            # Sort key puts a note-off before a note-on at the same tick: a repeated note
            # is re-struck rather than cut off by its own predecessor's note-off.
            on = mido.Message("note_on", channel=voice, note=note.pitch, velocity=velocity)
            off = mido.Message("note_off", channel=voice, note=note.pitch, velocity=0)
            events.append((note.start_step * TICKS_PER_STEP, 1, on))
            events.append((note.end_step * TICKS_PER_STEP, 0, off))
        events.sort(key=lambda e: (e[0], e[1]))
        now = 0
        for tick, _, message in events:
            track.append(message.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return notes


def read_midi(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a MIDI file as (pitches, attacks, voices_found) on the 16th grid, within
    :data:`bachd.music.midiread.LIMITS`.

    Voices come from tracks with notes, else channels; a single polyphonic stream is split
    top-down per step. With fewer than four voices the highest is the soprano and the
    lowest the bass; the voices not present are SILENT.
    """
    return grid_of(read_file(path))


def grid_of_midi(mid: mido.MidiFile, name: str = "the performance") -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`read_midi` of a file bachd built in memory (through the same bounded reader)."""
    import io

    from bachd.music.midiread import read_bytes

    buffer = io.BytesIO()
    mid.save(file=buffer)
    return grid_of(read_bytes(buffer.getvalue(), name))


def grid_of(data: MidiData) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`read_midi` of a file already read."""
    path = data.name
    ticks_per_step = data.ticks_per_beat / STEPS_PER_BEAT
    streams: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for note in data.notes:
        if note.channel != DRUM_CHANNEL:  # General MIDI percussion: no pitches to read
            streams.setdefault((note.track, note.channel), []).append((note.pitch, note.start, note.end))
    if not streams and data.drum_notes:
        raise BachdError(f"{path}: its only notes are drums (channel 10); give a file with a melody or parts on other "
                         "channels")
    if not streams:
        raise BachdError(f"{path}: no notes in this MIDI file")
    by_track: dict[int, list] = {}
    for (track_index, _channel), notes in streams.items():
        by_track.setdefault(track_index, []).extend(notes)
    groups = list(by_track.values()) if len(by_track) > 1 else list(streams.values())
    quantized = [_quantize(notes, ticks_per_step) for notes in groups]
    total_steps = max(end for notes in quantized for _, start, end in notes)
    if len(groups) == 1:
        return _split_polyphonic(quantized[0], total_steps)
    if len(groups) > NUM_VOICES:
        groups_q = sorted(quantized, key=len, reverse=True)[:NUM_VOICES]
    else:
        groups_q = quantized
    groups_q.sort(key=lambda notes: -np.mean([pitch for pitch, _, _ in notes]))
    pitches = np.full((total_steps, NUM_VOICES), SILENT, dtype=np.int64)
    attacks = np.zeros((total_steps, NUM_VOICES), dtype=bool)
    for slot, notes in zip(VOICE_SLOTS[len(groups_q)], groups_q):
        for pitch, start, end in sorted(notes, key=lambda n: (n[1], -n[0])):
            pitches[start:end, slot] = pitch
            attacks[start, slot] = True
    return pitches, attacks, len(groups_q)


def _quantize(notes: list[tuple[int, int, int]], ticks_per_step: float) -> list[tuple[int, int, int]]:
    out = []
    for pitch, start, end in notes:
        start_step = int(round(start / ticks_per_step))
        end_step = max(start_step + 1, int(round(end / ticks_per_step)))
        out.append((pitch, start_step, end_step))
    return out


def _split_polyphonic(notes: list[tuple[int, int, int]], total_steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One stream of notes (maybe chords) → voices, top-down at every step.

    Each step sees the pitches sounding there (a pitch struck twice counts once, attacked
    if either strike is here), from a (steps, 128) table built in one pass: memory grows
    with the piece's length, never with how long or how stacked its notes are."""
    sounding = np.zeros((total_steps + 1, 128), dtype=np.int32)
    struck = np.zeros((total_steps, 128), dtype=bool)
    for pitch, start, end in notes:
        sounding[start, pitch] += 1
        sounding[end, pitch] -= 1
        struck[start, pitch] = True
    here_all = np.cumsum(sounding[:total_steps], axis=0) > 0
    count = min(int(np.max(here_all.sum(axis=1))), NUM_VOICES)
    slots = VOICE_SLOTS[count]
    pitches = np.full((total_steps, NUM_VOICES), SILENT, dtype=np.int64)
    attacks = np.zeros((total_steps, NUM_VOICES), dtype=bool)
    for step in range(total_steps):
        here = np.flatnonzero(here_all[step])[::-1]  # highest first
        if len(here) > count:  # keep the top voices and the bass
            here = np.concatenate([here[: count - 1], here[-1:]])
        for pitch, slot in zip(here, slots if len(here) == count else slots[: len(here)]):
            pitches[step, slot] = pitch
            attacks[step, slot] = struck[step, pitch]
    return pitches, attacks, count
