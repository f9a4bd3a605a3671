"""A live rig for the tests: the performer driven through the router by a manual clock."""

from bachd.clock import InternalClock, MidiClock
from bachd.performer import Performer
from bachd.presets import LiveSettings
from bachd.router import Router
from bachd.sampling import Sampler, SamplingConfig
from bachd.scheduler import OutputStage, Voicer
from bachd.stream import Stream
from jackprobe import hanging_notes

START, CONTINUE, STOP, TICK, SONG_POSITION = 0xFA, 0xFB, 0xFC, 0xF8, 0xF2
BPM = 120.0
TICK_SECONDS = 60 / (BPM * 24)


class LiveRig:
    """bachd's performer and router on the tiny model, a manual clock and a recording output.
    With ``clock="midi"`` a DAW sends MIDI clock (24 per quarter at 120 bpm) while its
    transport runs and, if ``ticks_when_stopped``, while it is stopped too (as many DAWs do).
    With ``ahead``, spare time is spent as the daemon spends it: computing chords ahead."""

    def __init__(self, model_path, ahead: bool = False, ticks_when_stopped: bool = True, **settings):
        from bachd.engine import make_engine

        self.settings = LiveSettings(**{"bpm": BPM, "rng_seed": 3, **settings})
        self.now = 0.0
        self.sent: list[tuple[float, tuple]] = []
        self.stage = OutputStage(lambda m: self.sent.append((self.now, tuple(m))), Voicer(self.settings.out_channels()), now=lambda: self.now)
        engine = make_engine(model_path, batch_size=1, backend="numpy")
        stream = Stream(engine, Sampler(SamplingConfig(temperature=1.0, top_p=0.95), rng_seed=3))
        self.clock = MidiClock(initial_bpm=BPM) if self.settings.clock == "midi" else InternalClock(BPM, origin_seconds=0.0)
        self.performer = Performer(stream, self.clock, self.stage, self.settings)
        self.router = Router(self.performer, self.clock, self.settings)
        self.ahead, self.ticks_when_stopped = ahead, ticks_when_stopped
        self.playing = False  # the DAW's transport
        self.next_tick = 0.0

    def send(self, *message: int) -> list[tuple]:
        """One message from the DAW now; the messages bachd sent in answer at once."""
        start = len(self.sent)
        self.router.handle(self.now, list(message))
        self.performer.update(self.now)  # as the daemon's worker does after each input batch
        if message[0] == START:
            self.playing, self.next_tick = True, self.now
        elif message[0] == CONTINUE:
            self.playing, self.next_tick = True, self.now
        elif message[0] == STOP:
            self.playing = False
        return [m for _, m in self.sent[start:]]

    def run_until(self, t_seconds: float) -> None:
        while self.now < t_seconds:
            self.now = min(t_seconds, self.now + 0.001)
            if (self.playing or self.ticks_when_stopped) and isinstance(self.clock, MidiClock) and self.now >= self.next_tick:
                self.router.handle(self.now, [TICK])
                self.next_tick += TICK_SECONDS
            wake = self.performer.next_wakeup(self.now)
            if wake is not None and wake <= self.now:
                self.performer.update(self.now)
            elif self.ahead:
                while self.performer.background(self.now):
                    pass
            self.stage.send_due(self.now)

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
        return self.stage.voicer.notes_sounding

    def hanging(self) -> dict:
        return hanging_notes([list(m) for _, m in self.sent])
