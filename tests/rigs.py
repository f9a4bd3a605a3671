"""A live rig for the tests: bachd's performer through a :class:`bachd.live.session.Session` (the
router, performer and output that ``bachd run`` builds) on a manual clock, with a DAW
that sends MIDI clock while its transport runs."""

from bachd.presets import LiveSettings
from bachd.live.session import Session
from jackprobe import unmatched_notes

START, CONTINUE, STOP, TICK, SONG_POSITION = 0xFA, 0xFB, 0xFC, 0xF8, 0xF2
BPM = 120.0
TICK_SECONDS = 60 / (BPM * 24)


class LiveRig(Session):
    """The tiny model at 120 bpm, rng seed 3, temperature 1 and top-p 0.95 unless told
    otherwise. With ``clock="midi"`` a DAW sends MIDI clock (24 per quarter) while its
    transport runs and, if ``ticks_when_stopped``, while it is stopped too (as many DAWs
    do). With ``ahead``, spare time is spent as the daemon spends it: chords ahead."""

    def __init__(self, model_path, ahead: bool = False, ticks_when_stopped: bool = True, **settings):
        from bachd.model.engine import make_engine

        settings = LiveSettings(**{"bpm": BPM, "rng_seed": 3, "temperature": 1.0, "top_p": 0.95, **settings})
        super().__init__(make_engine(model_path, batch_size=1, backend="numpy"), settings, ahead=ahead)
        self.ticks_when_stopped = ticks_when_stopped
        self.playing = False  # the DAW's transport
        self.next_tick = 0.0

    def send(self, *message: int) -> list[tuple]:
        answered = super().send(*message)
        if message[0] in (START, CONTINUE):
            self.playing, self.next_tick = True, self.now
        elif message[0] == STOP:
            self.playing = False
        return answered

    def _daw_clock(self, now: float) -> None:
        if (self.playing or self.ticks_when_stopped) and self.clock.follows_midi and now >= self.next_tick:
            self.router.handle(now, [TICK])
            self.next_tick += TICK_SECONDS

    def run_until(self, t_seconds: float) -> None:
        super().run_until(t_seconds, each_tick=self._daw_clock)

    def wait(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def note(self, pitch: int, seconds: float, channel: int = 0, velocity: int = 90) -> list[tuple]:
        """Play a note; the messages bachd sent at once in answer to its note-on."""
        answered = self.send(0x90 | channel, pitch, velocity)
        self.wait(seconds)
        self.send(0x80 | channel, pitch, 0)
        return answered

    def messages(self) -> list[list[int]]:
        return [list(m) for _, m in self.sent]

    def note_ons(self, since: int = 0) -> list[tuple[float, tuple]]:
        return [(t, m) for t, m in self.sent[since:] if m[0] & 0xF0 == 0x90 and m[2] > 0]

    @property
    def sounding(self) -> int:
        return self.output.voicer.notes_sounding

    def hanging(self) -> dict:
        return unmatched_notes(self.messages())
