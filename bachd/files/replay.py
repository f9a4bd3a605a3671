"""``bachd harmonize`` and ``bachd continue`` on files: a MIDI file played, at its own
times, into the live performer on a simulated clock (:class:`bachd.live.session.Session`), and
what bachd played back written as a MIDI file.

Nothing here looks ahead: the performer hears each note when its note-on comes, exactly
as from a DAW, so the file holds what ``bachd run`` would have played to the same notes at
the same times (with the same preset, settings and ``--rng-seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mido

from bachd.errors import BachdError
from bachd.live.modes import mode_class
from bachd.live.session import Session
from bachd.midi import DRUM_CHANNEL, NOTE_OFF, NOTE_ON, is_note_on
from bachd.music.midifile import TICKS_PER_BEAT
from bachd.music.midiread import MidiData, read_file
from bachd.outputs import MIDI_SUFFIXES, SCORE_SUFFIXES, check_output
from bachd.presets import LiveSettings
from bachd.settings import check

TRACK_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
TAIL_BEATS = 2  # run on this long after the last input note-off, for the harmony to end


@dataclass
class PlayedFile:
    events: list[tuple[float, tuple[int, int, int]]]  # (seconds, note-on or note-off), channel 1
    bpm: float
    seconds: float  # when the last note ends
    beats_per_bar: Optional[int] = None  # the file's time signature in quarter-note beats, if it has one

    def delayed(self, seconds: float) -> PlayedFile:
        """The same notes ``seconds`` later."""
        return PlayedFile([(t + seconds, m) for t, m in self.events], self.bpm, self.seconds + seconds,
                          self.beats_per_bar)


def quarter_beats(signature: Optional[tuple[int, int]]) -> Optional[int]:
    """A time signature's bar in quarter-note beats (6/8: 3, 2/2: 4), or None where its bar
    is no whole number of them (5/8) or there is none."""
    if signature is None:
        return None
    numerator, denominator = signature
    sixteenths = numerator * 16 / denominator if denominator else 0
    if sixteenths <= 0 or sixteenths % 4:
        return None
    return int(sixteenths // 4)


def read_line(path: Path, channel: Optional[int] = None, track: Optional[int] = None, top_line: bool = True,
              data: Optional[MidiData] = None) -> PlayedFile:
    """The notes of a MIDI file as timed events, on channel 1: all of them, or those of one
    channel (1-16) or track (0-based); with ``top_line``, only the highest note at any time
    (a new note-on ends the notes under it). Drums (channel 10) are left out unless asked for.
    ``data``: the file already read (by :func:`bachd.music.midiread.read_bytes`)."""
    data = data or read_file(path)
    if track is not None and not 0 <= track < data.tracks:
        raise BachdError(f"{path} has tracks 0-{data.tracks - 1}, not {track}")
    chosen = [n for n in data.notes
              if (track is None or n.track == track) and n.end > n.start  # a note of no length sounds nothing
              and (n.channel != DRUM_CHANNEL if channel is None else n.channel == channel - 1)]
    notes = [[data.seconds(n.start), data.seconds(n.end), n.pitch, n.velocity] for n in chosen]
    if top_line:
        notes = _top_line(notes)
    if not notes:
        where = (f" on channel {channel}" if channel else "") + (f" in track {track}" if track is not None else "")
        raise BachdError(f"{path}: no notes to play{where}")
    events: list[tuple[float, tuple[int, int, int]]] = []
    for start, end, pitch, velocity in notes:
        events.append((start, (NOTE_ON, int(pitch), int(velocity))))
        events.append((end, (NOTE_OFF, int(pitch), 0)))
    events.sort(key=lambda e: (e[0], e[1][0] == NOTE_ON))  # at one instant, note-offs first
    return PlayedFile(events, data.first_bpm or 120.0, max(end for _, end, _, _ in notes),
                      quarter_beats(data.time_signature))


def _top_line(notes: list[list]) -> list[list]:
    """The highest note at any time: a note starting under a sounding higher note is left
    out; a higher note starting ends the notes under it."""
    line: list[list] = []
    for start, end, pitch, velocity in sorted(notes, key=lambda n: (n[0], -n[2])):
        if line and line[-1][1] > start:
            if pitch <= line[-1][2] or start == line[-1][0]:
                continue
            line[-1][1] = start
        line.append([start, end, pitch, velocity])
    return [n for n in line if n[1] > n[0]]


def perform(engine, settings: LiveSettings, played: PlayedFile) -> Session:
    """Play the file's events into a fresh session, as from a DAW, and run on until bachd is
    done: the harmony's last beat, or (continue mode) the listening gap and the answer."""
    session = Session(engine, settings)
    beat_seconds = 60.0 / settings.bpm
    after = TAIL_BEATS + mode_class(settings.mode).beats_after(settings)
    session.play(played.events, played.seconds + after * beat_seconds)
    session.finish()
    return session


def write_performance(
    session: Session, played: PlayedFile, path: Path, settings: LiveSettings, player_track: str
) -> int:
    """The player's notes and bachd's, one track per channel, as a type-1 MIDI file;
    returns the note-ons bachd played."""
    mid, played_notes = performance(session, played, settings, player_track)
    mid.save(str(path))
    return played_notes


def performance(
    session: Session, played: PlayedFile, settings: LiveSettings, player_track: str
) -> tuple[mido.MidiFile, int]:
    """What :func:`write_performance` writes, in memory, and the note-ons bachd played."""
    ticks_per_second = TICKS_PER_BEAT * settings.bpm / 60.0
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack([
        mido.MetaMessage("track_name", name="bachd", time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(settings.bpm), time=0),
        mido.MetaMessage("time_signature", numerator=settings.beats_per_bar, denominator=4, time=0),
    ])
    mid.tracks.append(meta)
    tracks = {player_track: list(played.events)}
    played_notes = 0
    for t, message in session.sent:
        channel = message[0] & 0x0F
        name = TRACK_NAMES[channel] if channel < len(TRACK_NAMES) else f"Channel {channel + 1}"
        tracks.setdefault(name, []).append((t, message))
        played_notes += is_note_on(message)
    for name, events in tracks.items():
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        last = 0
        for t, (status, note, velocity) in sorted(events, key=lambda e: e[0]):  # stable: as sent
            tick = max(last, round(t * ticks_per_second))
            kind = "note_on" if is_note_on((status, 0, velocity)) else "note_off"
            track.append(mido.Message(kind, channel=status & 0x0F, note=note, velocity=velocity, time=tick - last))
            last = tick
        mid.tracks.append(track)
    return mid, played_notes


def _by_channel(mid: mido.MidiFile) -> mido.MidiFile:
    """A performance with one track per channel, 1 to 4 (soprano to bass)."""
    timed = []
    for track in mid.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type in ("note_on", "note_off") and message.channel < 4:
                timed.append((tick, message))
    out = mido.MidiFile(type=1, ticks_per_beat=mid.ticks_per_beat)
    for channel in range(4):
        track, last = mido.MidiTrack(), 0
        for tick, message in sorted((t for t in timed if t[1].channel == channel), key=lambda t: t[0]):
            track.append(message.copy(time=tick - last))
            last = tick
        out.tracks.append(track)
    return out


def write_performance_score(session: Session, played: PlayedFile, path: Path, settings: LiveSettings, player_track: str,
                            source: Path, analysis: bool = False) -> int:
    """What :func:`write_performance` writes, as a chorale score: bachd's four voices on the
    16th grid (the harmony under the melody, or the call and its answer); returns the
    note-ons bachd played."""
    from bachd.music.midifile import grid_of_midi
    from bachd.music.score import write_score

    mid, notes = performance(session, played, settings, player_track)
    pitches, attacks, _ = grid_of_midi(_by_channel(mid))  # the player's notes are channel 1's, the soprano's
    write_score(pitches, attacks, path, beats_per_bar=settings.beats_per_bar, bpm=settings.bpm,
                title=f"{source.stem}, {mode_class(settings.mode).done} by bachd", analysis=analysis)
    return notes


def replay_file(
    mode: str,
    source: Path,
    out: Path,
    settings: LiveSettings,
    model_path: Path,
    bpm: Optional[float] = None,
    channel: Optional[int] = None,
    track: Optional[int] = None,
    say: Callable[[str], None] = print,
    analysis: bool = False,
    beats_per_bar: Optional[int] = None,
    pickup: float = 0.0,
) -> Path:
    """What ``bachd harmonize`` (``mode="harmonize"``) and ``bachd continue`` do: the file at
    its own tempo (or ``bpm``) into the live performer of that mode, on the internal clock.
    Its bars are ``beats_per_bar`` long if given, else as the file's time signature says,
    else the settings'; with ``pickup``, its first note falls that many beats before a bar
    line (an upbeat the file writes on beat 1), so the strong beats fall where the melody's
    do."""
    from dataclasses import replace

    from bachd.live.launch import load_engine

    check_output(out, "--out", (*MIDI_SUFFIXES, *SCORE_SUFFIXES))
    if analysis and out.suffix.lower() not in SCORE_SUFFIXES:
        raise BachdError("--analysis goes with a MusicXML --out (.musicxml or .mxl)")
    kind = mode_class(mode)
    played = read_line(source, channel, track, top_line=kind.melody_only)
    beats = beats_per_bar or played.beats_per_bar or settings.beats_per_bar
    settings = replace(
        settings, mode=mode, clock="internal", bpm=check("bpm", bpm or round(played.bpm, 3), "the file's tempo"),
        beats_per_bar=check("beats_per_bar", beats, "the file's time signature"),
    )
    if pickup:
        if not 0 < pickup < settings.beats_per_bar:
            raise BachdError(f"--pickup {pickup:g}: an upbeat is more than 0 and less than a bar "
                             f"({settings.beats_per_bar} beats)")
        played = played.delayed((settings.beats_per_bar - pickup) * 60.0 / settings.bpm)
    session = perform(load_engine(model_path), settings, played)
    notes_in, figures = session.performer.stats.notes_in, session.performer.figures()
    player = kind.player_part
    if out.suffix.lower() in SCORE_SUFFIXES:
        notes = write_performance_score(session, played, out, settings, player, source, analysis)
    else:
        notes = write_performance(session, played, out, settings, player)
    say(f"wrote {out}: {kind.summary(notes_in, figures, notes)}")
    return out
