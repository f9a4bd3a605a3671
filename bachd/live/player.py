"""What the player is playing, as bachd believes it: notes held and notes recently released,
on the grid, and how they map onto voices.

A MIDI note-off can be lost (a muted track, a pulled cable, a stuck key), so a held note is
never trusted for ever: Stop, Start, CC 120/123 and the panic CC clear the whole ledger, and
held notes with no new note-on for ``max_hold_beats`` end by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bachd.music import encoding
from bachd.live.clock import Clock

V = encoding.NUM_VOICES
MAX_HELD_NOTES = 16  # a stuck keyboard or a note-on storm cannot grow this without bound


@dataclass
class PlayedNote:
    pitch: int  # folded into bachd's range
    on_step: int
    velocity: int
    off_step: Optional[int] = None


class PlayerInput:
    def __init__(self, clock: Clock, max_hold_beats: float):
        self.clock, self.max_hold_beats = clock, max_hold_beats
        self.last_velocity = 80
        self.expired = 0  # times held notes were ended for want of a note-off
        self.clear()

    def clear(self) -> None:
        """Forget everything: nothing is held, nothing was played."""
        self.held: dict[int, PlayedNote] = {}  # by incoming note number
        self.released: list[PlayedNote] = []
        self.last_on_seconds: Optional[float] = None

    def note_on(self, t_seconds: float, note: int, velocity: int) -> int:
        """Record a note-on; returns its grid step."""
        step = round(self.clock.step_at(t_seconds))
        if note in self.held:
            self.end(self.held.pop(note), step)
        if len(self.held) >= MAX_HELD_NOTES:
            self.end(self.held.pop(next(iter(self.held))), step)
        for ended in self.released:
            # A released note lasts at least one step, but never into a newer note's step:
            # a quick line stays a line instead of turning into two-note chords.
            if ended.off_step is not None and ended.off_step > step:
                ended.off_step = max(step, ended.on_step)
        self.held[note] = PlayedNote(encoding.fold_pitch(note), step, velocity)
        self.last_velocity = velocity
        self.last_on_seconds = t_seconds
        return step

    def note_off(self, t_seconds: float, note: int) -> Optional[PlayedNote]:
        """Record a note-off; the note it ends, or None (no such note held)."""
        played = self.held.pop(note, None)
        if played is not None:
            step = round(self.clock.step_at(t_seconds)) if self.clock.running else played.on_step + 1
            self.end(played, step)
        return played

    def end(self, note: PlayedNote, off_step: int) -> None:
        note.off_step = max(off_step, note.on_step + 1)
        self.released.append(note)

    def release_all(self, step: int) -> None:
        for note in list(self.held):
            self.end(self.held.pop(note), step)

    # --- held notes that outlive their note-off ----------------------------------------------
    def hold_expires_at(self) -> Optional[float]:
        """When the held notes stop counting as held (None: nothing is held)."""
        if not self.held or self.last_on_seconds is None:
            return None
        return self.last_on_seconds + self.max_hold_beats * encoding.STEPS_PER_BEAT * self.clock.step_seconds

    def expire(self, now_seconds: float) -> Optional[int]:
        """End the held notes if no note-on came for ``max_hold_beats``: the grid step they
        end on, or None if they did not."""
        expires = self.hold_expires_at()
        if expires is None or now_seconds < expires:
            return None
        step = round(self.clock.step_at(expires))
        self.release_all(step)
        self.expired += 1
        return step

    # --- onto voices --------------------------------------------------------------------------
    def known(self, step: int, last_tokens, voices: int = V) -> dict[int, int]:
        """The player's tokens at ``step``: sounding notes, highest first, onto at most
        ``voices`` voice slots (1: the melody alone). ``last_tokens`` are the previous step's
        tokens, which tell a held note from a new one."""
        notes = [n for n in (*self.held.values(), *self.released) if n.on_step <= step and (n.off_step is None or n.off_step > step)]
        if not notes:
            return {}
        by_pitch: dict[int, PlayedNote] = {}
        for note in sorted(notes, key=lambda n: (-n.pitch, -n.on_step)):
            by_pitch.setdefault(note.pitch, note)
        ordered = list(by_pitch.values())
        if voices < V:  # the melody (and the voices under it) from the top down
            ordered = ordered[:voices]
            slots = range(len(ordered))
        else:  # four or fewer parts: the top ones and the bass
            if len(ordered) > V:
                ordered = ordered[: V - 1] + ordered[-1:]
            slots = encoding.VOICE_SLOTS[len(ordered)]
        known = {}
        for voice, note in zip(slots, ordered):
            previous = int(last_tokens[voice])
            continues = encoding.is_pitch_token(previous) and encoding.token_pitch(previous) == note.pitch
            attack = note.on_step == step or not continues
            known[voice] = encoding.attack(note.pitch) if attack else encoding.hold(note.pitch)
        return known

    def forget_before(self, step: int) -> None:
        if len(self.released) > 8:
            self.released = [n for n in self.released if n.off_step >= step]
