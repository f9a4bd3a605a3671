"""Standard MIDI files in and out: four voices on the 16th-note grid.

Reading quantizes any MIDI file to the grid and assigns its notes to S, A, T, B; writing
puts one voice per track and channel, holds held notes, re-strikes repeated ones and closes
every note it opens.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

from bachd.music.encoding import NUM_VOICES, SILENT, STEPS_PER_BEAT, VOICE_SLOTS, Note, tokens_to_notes
from bachd.errors import BachdError

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # channel 10, 0-based
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


def open_midi(path: str | Path) -> mido.MidiFile:
    """A parsed MIDI file, or a one-line error saying why not."""
    try:
        return mido.MidiFile(str(path))
    except FileNotFoundError:
        raise BachdError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise BachdError(f"{path}: not a readable MIDI file ({exc or type(exc).__name__})") from None


def read_midi(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a MIDI file as (pitches, attacks, voices_found) on the 16th grid.

    Voices come from tracks with notes, else channels; a single polyphonic stream is split
    top-down per step. With fewer than four voices the highest is the soprano and the
    lowest the bass; the voices not present are SILENT.
    """
    mid = open_midi(path)
    ticks_per_step = mid.ticks_per_beat / STEPS_PER_BEAT
    streams: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    drum_notes = 0
    for track_index, track in enumerate(mid.tracks):
        now = 0
        open_notes: dict[tuple[int, int], int] = {}
        for message in track:
            now += message.time
            if message.type not in ("note_on", "note_off"):
                continue
            if message.channel == DRUM_CHANNEL:  # General MIDI percussion: no pitches to read
                drum_notes += 1
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                if key in open_notes:  # re-struck without a note-off: close the old one
                    _add_note(streams, track_index, key, open_notes.pop(key), now)
                open_notes[key] = now
            elif key in open_notes:
                _add_note(streams, track_index, key, open_notes.pop(key), now)
        for key, start in open_notes.items():
            _add_note(streams, track_index, key, start, now)
    if not streams and drum_notes:
        raise BachdError(f"{path}: its only notes are drums (channel 10); give a file with a melody or parts on other channels")
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


def _add_note(streams, track_index: int, key: tuple[int, int], start: int, end: int) -> None:
    channel, pitch = key
    streams.setdefault((track_index, channel), []).append((pitch, start, end))


def _quantize(notes: list[tuple[int, int, int]], ticks_per_step: float) -> list[tuple[int, int, int]]:
    out = []
    for pitch, start, end in notes:
        start_step = int(round(start / ticks_per_step))
        end_step = max(start_step + 1, int(round(end / ticks_per_step)))
        out.append((pitch, start_step, end_step))
    return out


def _split_polyphonic(notes: list[tuple[int, int, int]], total_steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One stream of notes (maybe chords) → voices, top-down at every step."""
    sounding: list[list[tuple[int, int]]] = [[] for _ in range(total_steps)]
    for pitch, start, end in notes:
        for step in range(start, end):
            sounding[step].append((pitch, start))
    most = max(len(s) for s in sounding)
    count = min(most, NUM_VOICES)
    slots = VOICE_SLOTS[count]
    pitches = np.full((total_steps, NUM_VOICES), SILENT, dtype=np.int64)
    attacks = np.zeros((total_steps, NUM_VOICES), dtype=bool)
    for step, here in enumerate(sounding):
        here = sorted(set(here), key=lambda n: -n[0])
        if len(here) > count:  # keep the top voices and the bass
            here = here[: count - 1] + here[-1:]
        for (pitch, start), slot in zip(here, slots if len(here) == count else slots[: len(here)]):
            pitches[step, slot] = pitch
            attacks[step, slot] = start == step
    return pitches, attacks, count
