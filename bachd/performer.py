"""The live musician: turns what the player plays into model context and plays bachd's part.

Pure logic driven by timestamps. The daemon calls the event methods (``note_on``,
``note_off``, ``control``, transport) as messages arrive and :meth:`Performer.update` when
something is due; tests call the same methods with a manual clock. Nothing here reads the
time, sleeps, starts threads or touches MIDI ports; the engine is any object with the
:class:`bachd.engine.StreamingEngine` interface.

Quantizing: a note belongs to the grid step nearest its note-on, and sounds until the step
nearest its note-off (at least one step). In continue mode a step is fed to the model once
its window has closed (half a step after it); in harmonize mode every step is computed a
little ahead of time, and a melody note played into a step that is already computed rolls
that step back and plays the new harmony at once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from bachd import encoding
from bachd.clock import Clock
from bachd.presets import LiveSettings
from bachd.sampling import MAX_SILENT_STEPS, NO_REST, Sampler
from bachd.scheduler import Frame, OutputStage
from bachd.settings import check

V = encoding.NUM_VOICES
MAX_HELD_NOTES = 16  # a stuck keyboard or a note-on storm cannot grow this without bound


class Stream:
    """The model's running context: feeds whole steps (S, A, T, B) through the engine,
    taking the tokens it is given and sampling the rest, with snapshots for rolling back.

    The soprano's logits for the next step are computed ahead (:meth:`prepare`), so
    harmonizing a melody note costs three engine steps (alto, tenor, bass), or none when its
    chord was computed ahead (:meth:`chords_ahead`).

    A sampled soprano may not let all four voices rest for more than
    :data:`~bachd.sampling.MAX_SILENT_STEPS` in a row, as in offline generation: an answer
    that falls silent comes back in.
    """

    chord_group = 4  # candidates per batched engine step when computing chords ahead

    def __init__(self, engine, sampler: Sampler):
        self.engine, self.sampler = engine, sampler
        # Chords ahead need a second engine on the same weights, batched over candidates.
        self._chord_engine = engine.spawn(self.chord_group) if hasattr(engine, "spawn") else None
        self._versions = itertools.count()
        self.reset()

    def reset(self) -> None:
        self.engine.reset()
        self.prev = encoding.BOS
        self.last = np.full(V, encoding.REST, np.int64)
        self.grid_step: Optional[int] = None
        self.silent_steps = 0  # steps in a row, up to the last one, with all four voices resting
        self._base = self.engine.get_state()  # state before the previous token is consumed
        self._logits0: Optional[np.ndarray] = None
        self._beat0 = -1
        self._after0: Optional[list] = None
        self.version = next(self._versions)  # names the context; a restore brings its version back
        self._chords: dict[tuple[int, int], dict[int, tuple]] = {}

    def snapshot(self) -> tuple:
        return (
            self._base, self.prev, self.last.copy(), self.grid_step, self.silent_steps,
            self._logits0, self._beat0, self._after0, self.version,
        )

    def restore(self, snapshot: tuple) -> None:
        (
            self._base, self.prev, last, self.grid_step, self.silent_steps,
            self._logits0, self._beat0, self._after0, self.version,
        ) = snapshot
        self.last = last.copy()
        self.engine.set_state(self._after0 if self._logits0 is not None else self._base)

    def prepare(self, beat: Optional[int] = None) -> None:
        """Compute the next step's soprano logits now, off the critical path."""
        if beat is None:
            beat = ((self.grid_step if self.grid_step is not None else -1) + 1) % encoding.STEPS_PER_BEAT
        if self._logits0 is not None and self._beat0 == beat:
            return
        if self._logits0 is not None:
            self.engine.set_state(self._base)
        self._logits0 = self.engine.step(np.array([self.prev]), 0, beat)[0]
        self._beat0 = beat
        self._after0 = self.engine.get_state()

    def feed(
        self, grid_step: int, known: dict[int, int], restrict: Optional[np.ndarray] = None,
        pad: str = "rest", max_pad: int = 16,
    ) -> np.ndarray:
        """Feed one step at ``grid_step``: known voices take their token, the rest are
        sampled (under ``restrict`` if given). Missing steps since the last one are padded
        (rests or held notes, at most ``max_pad``, keeping the beat position consistent)."""
        if self.grid_step is not None and grid_step > self.grid_step + 1:
            gap = grid_step - self.grid_step - 1
            count = gap if gap <= max_pad else gap % encoding.STEPS_PER_BEAT
            count = count if count <= max_pad else 0
            filler = {v: _continuation(int(self.last[v])) if pad == "hold" else encoding.REST for v in range(V)}
            for k in range(grid_step - count, grid_step):
                self._feed_one(k, filler, None)
        return self._feed_one(grid_step, known, restrict)

    def _feed_one(self, grid_step: int, known: dict[int, int], restrict: Optional[np.ndarray]) -> np.ndarray:
        beat = grid_step % encoding.STEPS_PER_BEAT
        self.prepare(beat)
        tokens = np.empty(V, np.int64)
        logits = self._logits0
        for voice in range(V):
            if voice:
                logits = self.engine.step(np.array([tokens[voice - 1]]), voice, beat)[0]
            if voice in known:
                tokens[voice] = known[voice]
            else:
                rule = restrict
                if voice == 0 and self.silent_steps >= MAX_SILENT_STEPS:
                    rule = NO_REST if restrict is None else restrict & NO_REST
                tokens[voice] = self.sampler.sample(
                    logits[None], voice, self.last[voice : voice + 1], rule, before=self.last, above=tokens[:voice]
                )[0][0]
        self._advance(grid_step, tokens, self.engine.get_state())
        return tokens

    def _advance(self, grid_step: int, tokens: np.ndarray, base: list) -> None:
        self.silent_steps = self.silent_steps + 1 if (tokens == encoding.REST).all() else 0
        self.prev = int(tokens[-1])
        self.last = tokens
        self.grid_step = grid_step
        self._base = base
        self._logits0 = self._after0 = None
        self.version = next(self._versions)

    # --- chords ahead -----------------------------------------------------------------------
    # In harmonize mode a melody note would cost three engine steps (alto, tenor, bass) on
    # the critical path. Between notes there is time to spare, so the chord the model would
    # sample under each likely next melody note is computed ahead, batched over candidates.
    # A chord is the model's own sample given the melody note, so using it changes nothing
    # about the music; it is keyed by the context's version and beat, so a stale one is
    # never used.

    def chords_ahead(self, soprano_tokens: list[int], restrict: Optional[np.ndarray]):
        """A generator that computes, one batched engine step per ``next()``, the chord
        sampled under each of ``soprano_tokens`` at the next step (None when there is nothing
        to do). The caller interleaves it with its real work."""
        if self._chord_engine is None or self.grid_step is None:
            return None
        beat = (self.grid_step + 1) % encoding.STEPS_PER_BEAT
        table = self._chords.get((self.version, beat))
        todo = [t for t in soprano_tokens if table is None or t not in table]
        return self._compute_chords(todo, restrict, beat) if todo else None

    def _compute_chords(self, todo: list[int], restrict: Optional[np.ndarray], beat: int):
        self.prepare(beat)
        key, start, last = (self.version, beat), self._after0, self.last.copy()
        table = self._chords.setdefault(key, {})
        while len(self._chords) > 4:  # the current context and a few it may be rolled back to
            del self._chords[next(iter(self._chords))]
        engine, group = self._chord_engine, self.chord_group
        for first in range(0, len(todo), group):
            chunk = todo[first : first + group]
            tokens = np.empty((group, V), np.int64)
            tokens[:, 0] = chunk + chunk[-1:] * (group - len(chunk))
            engine.set_state(start)
            before = np.broadcast_to(last, (group, V))
            for voice in range(1, V):
                logits = engine.step(tokens[:, voice - 1], voice, beat)
                yield
                previous = np.full(group, last[voice], np.int64)
                tokens[:, voice] = self.sampler.sample(logits, voice, previous, restrict, before=before, above=tokens[:, :voice])[0]
            state = engine.get_state()
            for row, soprano in enumerate(chunk):
                table[soprano] = (tokens[row].copy(), [a[row : row + 1].copy() for a in state])

    def chord_for(self, grid_step: int, soprano_token: int) -> Optional[tuple]:
        """The chord computed ahead for ``soprano_token`` at ``grid_step``, if there is one
        for the current context."""
        if self.grid_step is None or grid_step != self.grid_step + 1:
            return None
        table = self._chords.get((self.version, grid_step % encoding.STEPS_PER_BEAT))
        return None if table is None else table.get(soprano_token)

    def feed_chord(self, grid_step: int, chord: tuple) -> np.ndarray:
        """Feed a step whose chord was computed ahead: no engine step at all."""
        tokens, base = chord
        self.engine.set_state(base)
        self._advance(grid_step, tokens.copy(), base)
        return self.last

    def discard_chords(self) -> None:
        self._chords.clear()


def _continuation(token: int) -> int:
    return encoding.hold(encoding.token_pitch(token)) if encoding.is_pitch_token(token) else encoding.REST


@dataclass
class PlayedNote:
    pitch: int  # folded into bachd's range
    on_step: int
    velocity: int
    off_step: Optional[int] = None


@dataclass
class Answer:
    start: int
    end: int
    next: int
    velocity: int
    snapshots: dict[int, tuple] = field(default_factory=dict)
    closed: bool = False  # the final note-offs are scheduled


@dataclass
class PerformerStats:
    notes_in: int = 0
    answers: int = 0
    interrupted: int = 0
    panics: int = 0
    rollbacks: int = 0
    melody_chords: int = 0  # harmonize: chords struck under a new melody note
    chords_ahead: int = 0  # ... of which were computed ahead


class Performer:
    """Continue (call and response) and harmonize, on any :class:`~bachd.clock.Clock`."""

    lookahead_seconds = 0.03  # compute a step this long before it is due
    min_lead_seconds = 0.03  # an answer never starts sooner than this after the call ends

    def __init__(self, stream: Stream, clock: Clock, out: OutputStage, settings: LiveSettings):
        self.stream, self.clock, self.out, self.settings = stream, clock, out, settings
        self.mode = settings.mode
        self.stats = PerformerStats()
        self.held: dict[int, PlayedNote] = {}  # by incoming note number
        self.released: list[PlayedNote] = []
        self.last_velocity = 80
        self._restrict_silent = _holds_or_rest_mask()
        self._restrict_attack = _attacks_mask()
        self._reset_mode_state()

    # --- state ------------------------------------------------------------------------------
    def _reset_mode_state(self) -> None:
        self.answer: Optional[Answer] = None
        self._finalized: Optional[int] = None  # continue: last step whose window is closed
        self._call_active = False
        self._call_velocities: list[int] = []
        self._last_release_seconds = -math.inf
        self._trigger = False
        self._interrupt = False
        self._changed_step: Optional[int] = None  # harmonize: earliest step whose input changed
        self._urgent_step: Optional[int] = None  # harmonize: the step of a new melody note awaiting harmony
        self._urgent_since: Optional[float] = None  # when that note arrived
        self._harmony: Optional[tuple[int, tuple]] = None  # the last computed step, and the snapshot before it
        self._silent_from: Optional[int] = None
        self._muted = False  # after a panic, harmonize waits for the next melody note
        self._ahead = None  # harmonize: (stream version, generator) computing chords ahead

    @property
    def state(self) -> str:
        if not self.clock.running:
            return "stopped"
        if self.mode == "harmonize":
            return "harmonizing"
        return "answering" if self.answer is not None else "listening"

    # --- events -------------------------------------------------------------------------------
    def note_on(self, t_seconds: float, note: int, velocity: int) -> None:
        if velocity == 0:
            self.note_off(t_seconds, note)
            return
        if not self.clock.running:
            return
        self.stats.notes_in += 1
        step = round(self.clock.step_at(t_seconds))
        if note in self.held:
            self._end_note(self.held.pop(note), step)
        if len(self.held) >= MAX_HELD_NOTES:
            oldest = next(iter(self.held))
            self._end_note(self.held.pop(oldest), step)
        for ended in self.released:
            # A released note lasts at least one step, but never into a newer note's step:
            # a quick line stays a line instead of turning into two-note chords.
            if ended.off_step is not None and ended.off_step > step:
                ended.off_step = max(step, ended.on_step)
        self.held[note] = PlayedNote(encoding.fold_pitch(note), step, velocity)
        self.last_velocity = velocity
        if self.mode == "harmonize":
            self._mark_changed(step, urgent=True)
            self._urgent_since = t_seconds
            self._muted = False
        else:
            self._call_velocities.append(velocity)
            if self.answer is not None and not self.settings.allow_overlap:
                self._interrupt = True

    def note_off(self, t_seconds: float, note: int) -> None:
        played = self.held.pop(note, None)
        if played is None:
            return  # a note-off with no note-on: nothing to do
        step = round(self.clock.step_at(t_seconds)) if self.clock.running else played.on_step + 1
        self._end_note(played, step)
        self._last_release_seconds = t_seconds
        if self.mode == "harmonize":
            self._mark_changed(played.off_step, urgent=False)

    def end_of_call(self) -> None:
        if self.mode == "continue" and self.answer is None:
            self._trigger = True

    def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.out.silence()
        self.mode = mode
        self._reset_mode_state()

    def panic(self) -> None:
        """Silence everything bachd sounds now; a running answer ends."""
        self.stats.panics += 1
        self.out.silence()
        if self.answer is not None:
            self.answer = None
            self._finalized = None
        self._muted = self.mode == "harmonize"

    def set_temperature(self, temperature: float) -> None:
        temperature = check("temperature", temperature, "CC")
        self.stream.sampler.config = replace(self.stream.sampler.config, temperature=temperature)
        self.stream.discard_chords()  # they were sampled at the old temperature
        self._ahead = None

    def set_response_bars(self, bars: int) -> None:
        self.settings = replace(self.settings, response_bars=check("response_bars", bars, "CC"))

    def transport_stopped(self) -> None:
        self.out.silence()
        self._reset_mode_state()

    def transport_started(self) -> None:
        self._reset_mode_state()

    def shutdown(self) -> None:
        self.out.silence()
        self.answer = None

    # --- time -----------------------------------------------------------------------------------
    def update(self, now_seconds: float) -> None:
        """Do whatever is due at ``now_seconds``: feed closed steps, start, step or end an
        answer, compute harmony."""
        if not self.clock.running:
            return
        if self.mode == "harmonize":
            self._update_harmonize(now_seconds)
        else:
            self._update_continue(now_seconds)
        self._forget_old_notes()

    speculate_semitones = 12  # chords are computed ahead for melody notes this close to the last

    quiet_before_send_seconds = 0.002  # no spare-time work this close to a scheduled send

    def background(self, now_seconds: float) -> bool:
        """Spare-time work, called when nothing is due: in harmonize mode, one batched engine
        step towards the chords under the likely next melody notes (see
        :meth:`Stream.chords_ahead`). True while more remains."""
        if self.mode != "harmonize" or not self.clock.running or self.stream.grid_step is None:
            return False
        due = self.out.next_due()
        if due is not None and due - now_seconds < self.quiet_before_send_seconds:
            return False  # the output thread is about to need the interpreter
        version = self.stream.version
        if self._ahead is None or self._ahead[0] != version:
            job = self.stream.chords_ahead(self._melody_candidates(), self._restrict_attack)
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
        last = int(self.stream.last[0])
        if encoding.is_pitch_token(last):
            centre = encoding.token_pitch(last)
        else:
            held = [n.pitch for n in (*self.held.values(), *self.released[-1:])]
            centre = max(held) if held else 72
        span = self.speculate_semitones
        pitches = sorted(range(max(encoding.PITCH_LOW, centre - span), min(encoding.PITCH_HIGH, centre + span) + 1), key=lambda p: (abs(p - centre), p))
        return [encoding.attack(p) for p in pitches]

    def next_wakeup(self, now_seconds: float) -> Optional[float]:
        """The next time :meth:`update` has work to do (None: only input can create work)."""
        if not self.clock.running:
            return None
        if self._trigger or self._interrupt or self._urgent_step is not None or self._changed_step is not None:
            return now_seconds
        lead = self.lookahead_seconds
        if self.mode == "harmonize":
            step = self.stream.grid_step
            return now_seconds if step is None else self.clock.step_time(step + 1) - lead
        times = []
        if self.answer is not None:
            a = self.answer
            times.append(self.clock.step_time(a.end) if a.next >= a.end else self.clock.step_time(a.next) - lead)
        else:
            finalized = self._finalized if self._finalized is not None else math.floor(self.clock.step_at(now_seconds) - 0.5)
            times.append(self.clock.step_time(finalized + 1.5))
            if self._call_active and not self.held:
                times.append(self._last_release_seconds + self._gap_seconds())
        return min(times)

    # --- continue mode --------------------------------------------------------------------------
    def _update_continue(self, now: float) -> None:
        if self.answer is not None:
            if self._interrupt:
                self._interrupt_answer(now)
            else:
                self._step_answer(now)
                return
        self._interrupt = False
        self._finalize_steps(now)
        gap_over = self._call_active and not self.held and now >= self._last_release_seconds + self._gap_seconds()
        if self._trigger or gap_over:
            self._trigger = False
            if self._call_active or self.stream.grid_step is not None:
                self._start_answer(now)

    def _gap_seconds(self) -> float:
        """The silence after the last note-off that ends a call."""
        return self.settings.meter.beats(self.settings.listen_gap) * self.clock.step_seconds

    def _finalize_steps(self, now: float, through: Optional[int] = None) -> None:
        closed = math.floor(self.clock.step_at(now) - 0.5) if through is None else through
        if self._finalized is None or closed - self._finalized > 64:
            self._finalized = closed - 1
        for step in range(self._finalized + 1, closed + 1):
            known = self._known(step)
            if known:
                self.stream.feed(step, known, pad="rest", max_pad=self.settings.steps_per_bar)
                self._call_active = True
        self._finalized = max(self._finalized, closed)

    def _start_answer(self, now: float) -> None:
        # The call is over: whatever is still held ends now, and the open step is fed too.
        current = round(self.clock.step_at(now))
        for note in list(self.held):
            self._end_note(self.held.pop(note), current)
        self._finalize_steps(now, through=current if self._known(current) else current - 1)
        unit = self.settings.steps_per_bar if self.settings.start_on == "bar" else encoding.STEPS_PER_BEAT
        first = math.ceil(self.clock.step_at(now + self.min_lead_seconds))
        first = -(-first // unit) * unit
        if self.settings.velocity == "follow":
            velocity = int(np.mean(self._call_velocities)) if self._call_velocities else self.last_velocity
        else:
            velocity = int(self.settings.velocity)
        steps = self.settings.response_bars * self.settings.steps_per_bar
        self.answer = Answer(first, first + steps, first, velocity)
        self._call_active = False
        self._call_velocities = []
        self.stats.answers += 1
        self._compute_answer_step(now)  # the first step is ready long before it is due
        self.stream.prepare()

    def _step_answer(self, now: float) -> None:
        a = self.answer
        while a.next < a.end and self.clock.step_time(a.next) - self.lookahead_seconds <= now:
            self._compute_answer_step(now)
        if a.next >= a.end and not a.closed:
            rests = [Frame(v, encoding.REST) for v in range(V)]
            self.out.schedule(self.clock.step_time(a.end), rests, "answer")
            a.closed = True
        if a.next > a.start:
            self.stream.prepare()
        if now >= self.clock.step_time(a.end):
            self.answer = None
            self._finalized = a.end - 1
            # notes the player holds over the end of an overlapped answer start afresh
            for note in self.held.values():
                note.on_step = max(note.on_step, a.end)

    def _compute_answer_step(self, now: float) -> None:
        a = self.answer
        a.snapshots[a.next] = self.stream.snapshot()
        tokens = self.stream.feed(a.next, {}, pad="hold", max_pad=encoding.STEPS_PER_BEAT - 1)
        frames = [Frame(v, int(tokens[v]), a.velocity) for v in range(V)]
        self.out.schedule(self.clock.step_time(a.next), frames, "answer", watch=a.next == a.start)
        a.next += 1

    def _interrupt_answer(self, now: float) -> None:
        """The player came back in: stop the answer cleanly and keep only what sounded."""
        a = self.answer
        self._interrupt = False
        self.stats.interrupted += 1
        self.out.cancel("answer")
        self.out.release(range(V))
        unsounded = [s for s in sorted(a.snapshots) if self.clock.step_time(s) > now]
        if unsounded:
            self.stream.restore(a.snapshots[unsounded[0]])
        self.answer = None
        self._finalized = math.floor(self.clock.step_at(now) - 0.5) - 1
        self._finalize_steps(now)

    # --- harmonize mode -------------------------------------------------------------------------
    def _mark_changed(self, step: int, urgent: bool) -> None:
        self._changed_step = step if self._changed_step is None else min(self._changed_step, step)
        if urgent:
            self._urgent_step = step if self._urgent_step is None else max(self._urgent_step, step)

    def _update_harmonize(self, now: float) -> None:
        present = math.floor(self.clock.step_at(now))
        last = self.stream.grid_step
        if last is None or last < present - encoding.STEPS_PER_BEAT:
            # The first step, or after a stall: start from the present instead of catching up.
            last = present - 1
            self._harmony = None
        nxt = last + 1
        changed, urgent = self._changed_step, self._urgent_step
        self._changed_step = self._urgent_step = None
        if changed is not None and self._harmony is not None and changed <= self._harmony[0]:
            # The player changed a step that is already computed: roll it back and redo it.
            step, snapshot = self._harmony
            self.stats.rollbacks += 1
            self.out.cancel(f"h{step}")
            self.stream.restore(snapshot)
            self._harmonize_step(step, now, play_now=urgent is not None and urgent <= step)
            nxt = step + 1
        if urgent is not None:
            while nxt <= urgent:  # a melody note for a step not computed yet: answer it now
                self._harmonize_step(nxt, now, play_now=nxt == urgent)
                nxt += 1
        while self.clock.step_time(nxt) - self.lookahead_seconds <= now:
            self._harmonize_step(nxt, now, play_now=False)
            nxt += 1
        self.stream.prepare()

    def _harmonize_step(self, step: int, now: float, play_now: bool) -> None:
        known = self._known(step)
        if known:
            self._silent_from = None
        elif self._silent_from is None or self._silent_from > step:
            self._silent_from = step
        restrict = None
        if encoding.is_attack(known.get(0, encoding.REST)):
            restrict = self._restrict_attack  # every melody note gets a chord struck under it
        if not known:
            if step - self._silent_from >= encoding.STEPS_PER_BEAT:
                known = {v: encoding.REST for v in range(V)}  # the player stopped: so does the harmony
            else:
                restrict = self._restrict_silent  # the melody rests: harmony may hold, not move
        if 0 not in known:
            known[0] = encoding.REST  # the soprano is the player's: bachd never sings it
        snapshot = self.stream.snapshot()
        chord = None
        if restrict is self._restrict_attack and len(known) == 1:
            self.stats.melody_chords += 1
            chord = self.stream.chord_for(step, known[0])
        if chord is not None:
            self.stats.chords_ahead += 1
            tokens = self.stream.feed_chord(step, chord)
        else:
            tokens = self.stream.feed(step, known, restrict=restrict, pad="rest", max_pad=0)
        self._harmony = (step, snapshot)
        if self._muted:
            return
        velocity = self.last_velocity if self.settings.velocity == "follow" else int(self.settings.velocity)
        frames = []
        for voice in range(V):
            token = encoding.REST if voice in known else int(tokens[voice])  # the player's voices
            frames.append(Frame(voice, token, velocity))
        due = self.clock.step_time(step)
        if play_now:
            self.out.play_now(frames, since_seconds=self._urgent_since)
        elif due <= now:
            self.out.play_now(frames)
        else:
            self.out.schedule(due, frames, f"h{step}")

    # --- input bookkeeping ---------------------------------------------------------------------
    def _end_note(self, note: PlayedNote, off_step: int) -> None:
        note.off_step = max(off_step, note.on_step + 1)
        self.released.append(note)

    def _known(self, step: int) -> dict[int, int]:
        """The player's tokens at ``step``: sounding notes, highest first, onto voice slots."""
        notes = [n for n in (*self.held.values(), *self.released) if n.on_step <= step and (n.off_step is None or n.off_step > step)]
        if not notes:
            return {}
        by_pitch: dict[int, PlayedNote] = {}
        for note in sorted(notes, key=lambda n: (-n.pitch, -n.on_step)):
            by_pitch.setdefault(note.pitch, note)
        ordered = list(by_pitch.values())
        if len(ordered) > V:
            ordered = ordered[: V - 1] + ordered[-1:]
        known = {}
        for voice, note in zip(encoding.VOICE_SLOTS[len(ordered)], ordered):
            previous = int(self.stream.last[voice])
            continues = encoding.is_pitch_token(previous) and encoding.token_pitch(previous) == note.pitch
            attack = note.on_step == step or not continues
            known[voice] = encoding.attack(note.pitch) if attack else encoding.hold(note.pitch)
        return known

    def _forget_old_notes(self) -> None:
        horizon = self.stream.grid_step if self.stream.grid_step is not None else 0
        if self._finalized is not None:
            horizon = min(horizon, self._finalized)
        if len(self.released) > 8:
            self.released = [n for n in self.released if n.off_step >= horizon]


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
