"""The live musician: follows the transport, keeps what the player plays, and lets the
current mode (:mod:`bachd.live.continuation` or :mod:`bachd.live.harmonizer`) play bachd's part over
one shared :class:`~bachd.live.stream.Stream` of model state.

Pure logic driven by timestamps. The daemon calls the event methods (notes, controls,
transport) as messages arrive and :meth:`Performer.update` when something is due; tests
and the offline file commands call the same methods with a manual clock. Nothing here reads
the time, sleeps, starts threads or touches MIDI ports.

Quantizing: a note belongs to the grid step nearest its note-on, and sounds until the step
nearest its note-off (at least one step).

Transport, as the MIDI 1.0 messages a DAW sends (on the MIDI clock; the internal clock
always runs):

- **Stop**: everything bachd sounds is released at once, an answer stops, a pending call and
  the held notes are forgotten; the position is kept.
- **Continue**: carry on from the kept position, or from a Song Position Pointer received
  while stopped.
- **Start**: Stop, then position 0 and a fresh start, exactly as at launch: an empty model
  context and the random draws started over from the seed. Start while running is
  Stop + Start (a DAW jumping to the top or looping).
- **Song Position Pointer** while running: the grid moves; nothing sounding is left on.
- Clock ticks while stopped do not move the position.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any, Optional

from bachd.errors import BachdError
from bachd.live.clock import Clock
from bachd.live.modes import LiveMode, mode_class, mode_figures
from bachd.live.player import PlayerInput
from bachd.live.scheduler import Output
from bachd.live.stream import Stream
from bachd.music import encoding
from bachd.presets import LiveSettings
from bachd.settings import SAMPLING, SETTINGS, check


@dataclass
class PerformerStats:
    """The performer's own figures; each mode keeps its own (:attr:`Performer.mode_counts`)."""

    notes_in: int = 0
    panics: int = 0
    starts: int = 0  # MIDI Start
    stops: int = 0  # MIDI Stop
    relocations: int = 0  # Song Position Pointer jumps
    input_resets: int = 0  # clean slates after input was lost


class Performer:
    """Any live mode (:data:`bachd.registry.MODES`) on any clock (:data:`bachd.registry.CLOCKS`)."""

    lookahead_seconds = 0.03  # compute a step this long before it is due

    def __init__(self, stream: Stream, clock: Clock, out: Output, settings: LiveSettings):
        self.stream, self.clock, self.out, self.settings = stream, clock, out, settings
        stream.bar_steps = encoding.bar_period(settings.steps_per_bar)  # grid step 0 is a downbeat
        self.stats = PerformerStats()
        self.player = PlayerInput(clock, settings.max_hold_beats)
        self.mode_counts: defaultdict[str, Counter[str]] = defaultdict(Counter)  # mode name -> its figures
        self.live_mode: LiveMode = self._new_mode(settings.mode)
        self._relocated = False  # a song position arrived while stopped
        self.unheard = 0  # notes played since the transport last ran, while it was stopped

    def _new_mode(self, name: str) -> LiveMode:
        return mode_class(name)(self, self.mode_counts[name])

    @property
    def mode(self) -> str:
        return self.live_mode.name

    def figures(self) -> dict[str, int]:
        """The modes' figures, every registered mode's names there (0 where unused)."""
        totals: Counter[str] = Counter()
        for counts in self.mode_counts.values():
            totals.update(counts)
        return {name: totals[name] for name in mode_figures()}

    @property
    def held(self) -> dict:
        return self.player.held

    @property
    def state(self) -> str:
        """The mode's activity (listening, answering, harmonizing) while the transport runs;
        stopped, or "waiting for Start" once notes come in while it is stopped."""
        if self.clock.running:
            return self.live_mode.activity
        return "waiting for Start" if self.unheard else "stopped"

    # --- notes and controls -------------------------------------------------------------------
    def note_on(self, t_seconds: float, note: int, velocity: int) -> None:
        if velocity == 0:
            self.note_off(t_seconds, note)
            return
        if not self.clock.running:
            self.unheard += 1  # the transport is stopped: said on the status line and the panel
            return
        self.stats.notes_in += 1
        step = self.player.note_on(t_seconds, note, velocity)
        self.live_mode.note_on(t_seconds, step, velocity)

    def note_off(self, t_seconds: float, note: int) -> None:
        played = self.player.note_off(t_seconds, note)
        if played is not None:  # a note-off with no note-on: nothing to do
            self.live_mode.note_off(t_seconds, played)

    def end_of_call(self) -> None:
        self.live_mode.end_of_call()

    def set_mode(self, mode: str) -> None:
        self.change("mode", mode)

    def panic(self) -> None:
        """Silence everything bachd sounds now and forget what the player held (CC 120,
        CC 123, the panic CC); a running answer ends."""
        self.stats.panics += 1
        self.out.silence()
        self.player.clear()
        self.stream.cut()
        self.live_mode.panic()

    def input_lost(self) -> None:
        """Input was lost before bachd could read it (a flood past the input queue), or came
        as a storm no player makes (see :data:`bachd.live.player.STORM_NOTES`): what bachd
        believes the player holds, and a call in progress, cannot be trusted. Everything
        bachd sounds is released, the held notes and the call are forgotten, and the model's
        context and random draws start afresh, as after Start, so the next clean call is
        answered like the first one after launch. The clock and the position stay."""
        self.stats.input_resets += 1
        self._halt()
        self.stream.restart()
        self.live_mode = self._new_mode(self.mode)

    def set_temperature(self, temperature: float) -> None:
        self.change("temperature", temperature, "CC")

    def set_response_bars(self, bars: int) -> None:
        self.change("response_bars", bars, "CC")

    def change(self, name: str, value: Any, source: str = "CC", now_seconds: Optional[float] = None) -> Any:
        """Set live setting ``name`` while playing: the one path for a CC knob, the control
        surface and a preset switched to. Checked like a flag or a preset key (a bad value
        raises :class:`~bachd.errors.BachdError` naming ``source``); returns the value kept.

        Sampling settings take effect from the next draw (chords drawn ahead under the old
        ones are dropped); a new mode or output channel first releases what bachd sounds; a
        tempo (internal clock only) keeps the grid position at ``now_seconds``."""
        setting = SETTINGS.get(name)
        if setting is None or not setting.live:
            live = ", ".join(s.name for s in SETTINGS.values() if s.live)
            raise BachdError(f"{source}: '{name}' cannot change while bachd plays (live settings: {live})")
        value = check(name, value, source)
        if value == getattr(self.settings, name):
            return value
        if name == "bpm":
            self.clock.set_bpm(value, now_seconds, source)  # refused on a clock that follows another
        self.settings = replace(self.settings, **{name: value})
        if name == "mode":
            self.out.silence()
            self.stream.cut()  # what the other mode sounded is released: nothing holds over
            self.live_mode = self._new_mode(value)
        elif name == "out_channel":
            self.out.set_channels(self.settings.out_channels())
        elif name == "max_hold_beats":
            self.player.max_hold_beats = value
        elif name in SAMPLING:
            self.stream.set_sampling(self.settings.sampling())  # chords drawn ahead under the old ones are dropped
        return value

    # --- transport ----------------------------------------------------------------------------
    def transport_stop(self, t_seconds: float) -> None:
        self.clock.stop(t_seconds)
        self.stats.stops += 1
        self._halt()

    def transport_start(self, t_seconds: float) -> None:
        if self.clock.running:
            self._halt()  # Start while running is Stop + Start
        self.clock.start(t_seconds)
        self.stats.starts += 1
        self.unheard = 0
        self._relocated = False
        self.stream.restart()
        self.live_mode = self._new_mode(self.mode)

    def transport_continue(self, t_seconds: float) -> None:
        if self.clock.running:
            return  # already playing: Continue changes nothing
        self.clock.resume(t_seconds)
        self.unheard = 0
        if self._relocated:
            self._relocated = False
            self.stream.relocate()
        self.live_mode.reset()

    def song_position(self, t_seconds: float, sixteenths: int) -> None:
        self.clock.song_position(sixteenths, t_seconds)
        self.stats.relocations += 1
        if self.clock.running:
            self._halt()
            self.stream.relocate()
        # Continue finds its place again from the clock's new position: also after a clock
        # that hands over to the DAW on this song position (the auto clock) has stopped.
        self._relocated = True

    def _halt(self) -> None:
        """Everything bachd sounds off at once; the held notes, a pending call and an answer
        forgotten. The model context and the position stay."""
        self.out.silence()
        self.player.clear()
        self.stream.cut()
        self.live_mode.reset()

    def shutdown(self, wait_seconds: Optional[float] = None) -> None:
        self.out.silence(wait_seconds)
        self.live_mode.reset()

    # --- time ---------------------------------------------------------------------------------
    def update(self, now_seconds: float) -> None:
        """Do whatever is due at ``now_seconds``."""
        if not self.clock.running:
            return
        storm_over = self.player.storm_over_at()
        if storm_over is not None and now_seconds >= storm_over:
            self.input_lost()
        self.live_mode.update(now_seconds)
        self.player.forget_before(self.live_mode.horizon())

    def background(self, now_seconds: float) -> bool:
        """Spare-time work, called when nothing is due (harmonize: chords ahead). True while
        more remains."""
        return self.clock.running and self.live_mode.background(now_seconds)

    def next_wakeup(self, now_seconds: float) -> Optional[float]:
        """The next time :meth:`update` has work to do (None: only input can create work)."""
        if not self.clock.running:
            return None
        wake = self.live_mode.next_wakeup(now_seconds)
        storm_over = self.player.storm_over_at()
        return storm_over if wake is None or (storm_over is not None and storm_over < wake) else wake
