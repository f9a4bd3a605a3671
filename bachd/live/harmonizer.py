"""Harmonize mode: the player plays a melody; bachd plays alto, tenor and bass under each
note as it is played.

Every step is computed a little ahead of time. A melody note played into a step that is
already computed rolls that step back and plays the new harmony at once. The melody is the
highest note the player sounds; whatever else they hold never takes a voice, so the three
voices always sound. In spare time the chord under each likely next melody note is computed
ahead (:meth:`bachd.live.stream.Stream.chords_ahead`), so a melody note usually costs a lookup.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Optional

import numpy as np

from bachd.live.modes import ModeHost
from bachd.live.player import PlayedNote
from bachd.live.ranking import Preparing, arrival
from bachd.live.scheduler import Frame
from bachd.live.stream import Context
from bachd.music import encoding
from bachd.presets import LiveSettings

V = encoding.NUM_VOICES


def _attacks_mask() -> np.ndarray:
    mask = np.zeros(encoding.VOCAB_SIZE, bool)
    for pitch in range(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1):
        mask[encoding.attack(pitch)] = True
    return mask


def _holds_or_rest_mask() -> np.ndarray:
    """Tokens allowed to a generated voice while the melody rests: no new notes."""
    mask = np.zeros(encoding.VOCAB_SIZE, bool)
    mask[encoding.REST] = True
    for pitch in range(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1):
        mask[encoding.hold(pitch)] = True
    return mask


ATTACKS, HOLDS_OR_REST = _attacks_mask(), _holds_or_rest_mask()


class HarmonizeMode:
    name = "harmonize"
    # Chords struck under a new melody note; of which were computed ahead; steps computed
    # before a note came into them, taken back and computed again.
    figures = ("melody_chords", "chords_ahead", "rollbacks")
    player_part, done, melody_only = "Melody", "harmonized", True

    @classmethod
    def beats_after(cls, settings: LiveSettings) -> float:
        return 0.0

    @classmethod
    def summary(cls, notes_in: int, figures: dict[str, int], notes_out: int) -> str:
        return (f"{notes_in} melody notes, {figures['melody_chords']} with a chord struck under them, "
                f"{notes_out} notes by bachd")
    activity = "harmonizing"
    speculate_semitones = 12  # chords are computed ahead for melody notes this close to the last
    quiet_before_send_seconds = 0.002  # no spare-time work this close to a scheduled send

    def __init__(self, host: ModeHost, counts: Counter[str]):
        self.host, self.counts = host, counts
        self.reset()

    def reset(self) -> None:
        self._changed_step: Optional[int] = None  # earliest step whose input changed
        self._urgent_step: Optional[int] = None  # the step of a new melody note awaiting harmony
        self._urgent_since: Optional[float] = None  # when that note arrived
        self._harmony: Optional[tuple[int, Context]] = None  # the last computed step, and the snapshot before it
        self._silent_from: Optional[int] = None
        self._muted = False  # after a panic, wait for the next melody note
        self._ahead: Optional[tuple[int, Iterator[None]]] = None  # (stream version, generator) computing chords ahead
        # (from, to step, masks): a prepared dominant, or a strong beat's bass, standing
        self._standing: Optional[tuple[int, int, np.ndarray]] = None

    # --- events -------------------------------------------------------------------------------
    def note_on(self, t_seconds: float, step: int, velocity: int) -> None:
        self._mark_changed(step, urgent=True)
        self._urgent_since = t_seconds
        self._muted = False

    def note_off(self, t_seconds: float, note: PlayedNote) -> None:
        self._mark_changed(note.off_step if note.off_step is not None else note.on_step, urgent=False)

    def end_of_call(self) -> None:
        pass

    def panic(self) -> None:
        self._muted = True

    def horizon(self) -> int:
        return self.host.stream.grid_step if self.host.stream.grid_step is not None else 0

    def _mark_changed(self, step: int, urgent: bool) -> None:
        self._changed_step = step if self._changed_step is None else min(self._changed_step, step)
        if urgent:
            self._urgent_step = step if self._urgent_step is None else max(self._urgent_step, step)

    def _known(self, step: int) -> dict[int, int]:
        return self.host.player.known(step, self.host.stream.last, voices=1)

    # --- time ---------------------------------------------------------------------------------
    def next_wakeup(self, now: float) -> Optional[float]:
        if self._urgent_step is not None or self._changed_step is not None:
            return now
        step = self.host.stream.grid_step
        return now if step is None else self.host.clock.step_time(step + 1) - self.host.lookahead_seconds

    def update(self, now: float) -> None:
        p = self.host
        ended = p.player.expire(now)
        if ended is not None:  # a lost note-off: the melody ends
            self._mark_changed(ended, urgent=False)
        present = math.floor(p.clock.step_at(now))
        last = p.stream.grid_step
        if last is not None and last > present + encoding.STEPS_PER_BEAT:
            p.stream.relocate()  # the grid went back: start from the present
            last = None
        if last is None or last < present - encoding.STEPS_PER_BEAT:
            # The first step, or after a stall: start from the present instead of catching up.
            last = present - 1
            self._harmony = None
        nxt = last + 1
        changed, urgent = self._changed_step, self._urgent_step
        self._changed_step = self._urgent_step = None
        if changed is not None and self._harmony is not None and changed <= self._harmony[0] and (
            urgent is not None or p.clock.step_time(self._harmony[0]) > now
        ):
            # The player changed a step that is already computed: roll it back and redo it.
            # Not for a note-off once that step has sounded: what was struck stays (taking
            # it back would only click), and the melody's end counts from the next step.
            step, snapshot = self._harmony
            self.counts["rollbacks"] += 1
            p.out.cancel(f"h{step}")
            p.stream.restore(snapshot)
            self._harmonize_step(step, now, play_now=urgent is not None and urgent <= step)
            nxt = step + 1
        if urgent is not None:
            while nxt <= urgent:  # a melody note for a step not computed yet: answer it now
                self._harmonize_step(nxt, now, play_now=nxt == urgent)
                nxt += 1
        while p.clock.step_time(nxt) - p.lookahead_seconds <= now:
            self._harmonize_step(nxt, now, play_now=False)
            nxt += 1
        p.stream.prepare()

    def _harmonize_step(self, step: int, now: float, play_now: bool) -> None:
        p = self.host
        known = self._known(step)
        if known:
            self._silent_from = None
        elif self._silent_from is None or self._silent_from > step:
            self._silent_from = step
        restrict = None
        if encoding.is_attack(known.get(0, encoding.REST)):
            restrict = ATTACKS  # every melody note gets a chord struck under it
            if self._standing is not None and step > self._standing[0]:
                self._standing = None  # a new melody note: its own chord, and nothing stands
        if not known:
            assert self._silent_from is not None
            if step - self._silent_from >= encoding.STEPS_PER_BEAT:
                known = {v: encoding.REST for v in range(V)}  # the player stopped: so does the harmony
            else:
                restrict = HOLDS_OR_REST  # the melody rests: harmony may hold, not move
        elif restrict is None and self._standing is not None and self._standing[0] < step < self._standing[1]:
            restrict = self._standing[2]  # a prepared dominant, or a strong beat's bass, stands
        if 0 not in known:
            known[0] = encoding.REST  # the soprano is the player's: bachd never sings it
        snapshot = p.stream.snapshot()
        chord = None
        if restrict is ATTACKS and len(known) == 1:
            self.counts["melody_chords"] += 1
            chord = p.stream.ahead.chord_for(step, known[0])
        if chord is not None:
            self.counts["chords_ahead"] += 1
            tokens = p.stream.feed_chord(step, chord)
        else:
            tokens = p.stream.feed(step, known, restrict=restrict, pad="rest", max_pad=0)
        self._harmony = (step, snapshot)
        if not self._muted:
            self._play(step, known, tokens, now, play_now)
        self._prepared(step, known, tokens)  # after the chord is out: off the melody note's path

    def _play(self, step: int, known: dict[int, int], tokens: np.ndarray, now: float, play_now: bool) -> None:
        p = self.host
        velocity = p.player.last_velocity if p.settings.velocity == "follow" else int(p.settings.velocity)
        frames = []
        for voice in range(V):
            token = encoding.REST if voice in known else int(tokens[voice])  # the player's voices
            frames.append(Frame(voice, token, velocity))
        due = p.clock.step_time(step)
        if play_now:
            p.out.play_now(frames, since_seconds=self._urgent_since)
        elif due <= now:
            p.out.play_now(frames)
        else:
            p.out.schedule(due, frames, f"h{step}")

    def _prepared(self, step: int, known: dict[int, int], tokens: np.ndarray) -> None:
        """After the chord under a melody note struck on the beat before a strong beat: if it
        is the root-position dominant :class:`Preparing` keeps, it stands to the strong beat.
        After one struck on a strong beat: if it is a root-position triad, its bass stands
        for the beat while the melody holds (:func:`arrival`), so a phrase that ends there
        is heard to end."""
        stream = self.host.stream
        beat = step % stream.bar_steps
        if stream.strong_beat(beat) and encoding.is_attack(known.get(0, encoding.REST)):
            masks = arrival(tokens) if stream.sampler.config.chord_draws > 1 else None
            self._standing = None if masks is None else (step, step + encoding.STEPS_PER_BEAT, masks)
            return
        if not stream.upbeat(beat):
            return
        self._standing = None
        preparing = Preparing(stream.keys.key)
        if (
            encoding.is_attack(known.get(0, encoding.REST))
            and preparing.prepares(known[0])
            and stream.sampler.config.chord_draws > 1
        ):
            masks = preparing.standing(tokens)
            if masks is not None:
                self._standing = (step, step + encoding.STEPS_PER_BEAT, masks)

    # --- spare time: chords ahead ---------------------------------------------------------------
    def background(self, now_seconds: float) -> bool:
        """One batched engine step towards the chords under the likely next melody notes.
        True while more remains."""
        p = self.host
        if p.stream.grid_step is None:
            return False
        due = p.out.next_due()
        if due is not None and due - now_seconds < self.quiet_before_send_seconds:
            return False  # the output thread is about to need the interpreter
        version = p.stream.version
        if self._ahead is None or self._ahead[0] != version:
            job = p.stream.ahead.compute(self._melody_candidates(), ATTACKS)
            if job is None:
                self._ahead = None
                return False
            self._ahead = (version, job)
        try:
            next(self._ahead[1])
            return True
        except StopIteration:
            self._ahead = None
            return False

    def _melody_candidates(self) -> list[int]:
        """Melody attacks nearest the last melody pitch first, within the model's range."""
        p = self.host
        last = int(p.stream.last[0])
        if encoding.is_pitch_token(last):
            centre = encoding.token_pitch(last)
        else:
            held = [n.pitch for n in (*p.player.held.values(), *p.player.released[-1:])]
            centre = max(held) if held else 72
        span = self.speculate_semitones
        pitches = sorted(
            range(max(encoding.PITCH_LOW, centre - span), min(encoding.PITCH_HIGH, centre + span) + 1),
            key=lambda q: (abs(q - centre), q),
        )
        return [encoding.attack(q) for q in pitches]
