"""What the player is playing, as bachd believes it: notes held and notes recently released,
on the grid, and how they map onto voices.

A MIDI note-off can be lost (a muted track, a pulled cable, a stuck key, a flood of input),
so a held note is never trusted for ever: Stop, Start, CC 120/123, the panic CC and lost input
clear the whole ledger, and a key held ``max_hold_beats`` after its note-on ends by itself,
whatever else is played meanwhile (a key whose note-off was lost among new notes would
otherwise stay the melody, or hold a call open, for as long as the player goes on).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from bachd.live.clock import Clock
from bachd.music import encoding

V = encoding.NUM_VOICES
MAX_HELD_NOTES = 16  # a stuck keyboard or a note-on storm cannot grow this without bound
# More note-ons than this within STORM_SECONDS is no player but a flood (a stuck arpeggiator, a
# feedback loop, a burst), whose note-offs cannot be trusted to have all arrived; the storm is
# over after STORM_QUIET_SECONDS without a note-on.
STORM_NOTES, STORM_SECONDS, STORM_QUIET_SECONDS = 200, 1.0, 0.25


@dataclass
class PlayedNote:
    pitch: int  # folded into bachd's range
    on_step: int
    velocity: int
    off_step: Optional[int] = None
    on_seconds: float = 0.0


class PlayerInput:
    def __init__(self, clock: Clock, max_hold_beats: float):
        self.clock, self.max_hold_beats = clock, max_hold_beats
        self.last_velocity = 80
        self.expired = 0  # held keys ended for want of a note-off
        self.clear()

    def clear(self) -> None:
        """Forget everything: nothing is held, nothing was played."""
        self.held: dict[int, PlayedNote] = {}  # by incoming note number
        self.released: list[PlayedNote] = []
        self._recent_ons: deque[float] = deque()  # note-on times within STORM_SECONDS
        self.storm = False  # a storm of note-ons came since the ledger was last cleared
        self._last_on_seconds: Optional[float] = None

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
        self.held[note] = PlayedNote(encoding.fold_pitch(note), step, velocity, on_seconds=t_seconds)
        self._last_on_seconds = t_seconds
        recent = self._recent_ons
        recent.append(t_seconds)
        while recent[0] < t_seconds - STORM_SECONDS:
            recent.popleft()
        if len(recent) >= STORM_NOTES:
            self.storm = True
            recent.clear()
        self.last_velocity = velocity
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
    def storm_over_at(self) -> Optional[float]:
        """When the storm of note-ons counts as over (None: there was none)."""
        if not self.storm or self._last_on_seconds is None:
            return None
        return self._last_on_seconds + STORM_QUIET_SECONDS

    def _hold_seconds(self) -> float:
        return self.max_hold_beats * encoding.STEPS_PER_BEAT * self.clock.step_seconds

    def hold_expires_at(self) -> Optional[float]:
        """When the oldest held key stops counting as held (None: nothing is held)."""
        if not self.held:
            return None
        return min(n.on_seconds for n in self.held.values()) + self._hold_seconds()

    def expire(self, now_seconds: float) -> Optional[int]:
        """End every key held ``max_hold_beats`` after its note-on: the earliest grid step
        one ends on, or None if none did."""
        hold = self._hold_seconds()
        due = [(note, played) for note, played in self.held.items() if played.on_seconds + hold <= now_seconds]
        if not due:
            return None
        steps = []
        for note, played in due:
            step = round(self.clock.step_at(played.on_seconds + hold))
            self.end(self.held.pop(note), step)
            steps.append(step)
        self.expired += len(due)
        return min(steps)

    # --- onto voices --------------------------------------------------------------------------
    def known(self, step: int, last_tokens, voices: int = V) -> dict[int, int]:
        """The player's tokens at ``step``: sounding notes, highest first, onto at most
        ``voices`` voice slots (1: the melody alone). ``last_tokens`` are the previous step's
        tokens, which tell a held note from a new one."""
        notes = [
            n
            for n in (*self.held.values(), *self.released)
            if n.on_step <= step and (n.off_step is None or n.off_step > step)
        ]
        if not notes:
            return {}
        by_pitch: dict[int, PlayedNote] = {}
        for note in sorted(notes, key=lambda n: (-n.pitch, -n.on_step)):
            by_pitch.setdefault(note.pitch, note)
        ordered = list(by_pitch.values())
        if voices < V:  # the melody (and the voices under it) from the top down
            ordered = ordered[:voices]
            slots: Sequence[int] = range(len(ordered))
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
            self.released = [n for n in self.released if n.off_step is None or n.off_step >= step]
