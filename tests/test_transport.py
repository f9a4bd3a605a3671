"""What a DAW does to bachd all day, with a manual clock: the MIDI transport (Start, Stop,
Continue, Song Position Pointer, clock), lost note-offs, panic controls, and reproducible
draws. Every message goes through the router, as from a real port."""

import pytest

from bachd import encoding as enc
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


class DawRig:
    """bachd's performer and router on the tiny model, a manual clock, a recording output,
    and a DAW that sends MIDI clock (24 per quarter at 120 bpm) while its transport runs,
    and, if ``ticks_when_stopped``, while it is stopped too (as many DAWs do)."""

    def __init__(self, model_path, ahead: bool = False, ticks_when_stopped: bool = True, **settings):
        from bachd.engine import make_engine

        self.settings = LiveSettings(**{"clock": "midi", "bpm": BPM, "rng_seed": 3, **settings})
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

    def note(self, pitch: int, seconds: float, channel: int = 0) -> list[tuple]:
        answered = self.send(0x90 | channel, pitch, 90)
        self.wait(seconds)
        self.send(0x80 | channel, pitch, 0)
        return answered

    def note_ons(self, since: int = 0) -> list[tuple[float, tuple]]:
        return [(t, m) for t, m in self.sent[since:] if m[0] & 0xF0 == 0x90 and m[2] > 0]

    @property
    def sounding(self) -> int:
        return self.stage.voicer.notes_sounding

    def hanging(self) -> dict:
        return hanging_notes([list(m) for _, m in self.sent])


def harmony_channels(messages) -> list[int]:
    return sorted(m[0] & 0x0F for m in messages if m[0] & 0xF0 == 0x90 and m[2] > 0)


# --- Stop, Continue, Song Position -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["continue", "harmonize"])
def test_stop_silences_at_once_keeps_the_position_and_ticks_do_not_move_it(tiny_model_path, mode):
    rig = DawRig(tiny_model_path, mode=mode, response_bars=4, listen_gap=0.5)
    rig.send(START)
    rig.wait(0.3)
    if mode == "continue":
        rig.note(72, 0.2)
        rig.wait(1.5)  # the call ended: bachd is answering
    else:
        rig.send(0x90, 72, 90)  # a held melody note: the harmony sounds
        rig.wait(0.3)
    assert rig.sounding > 0
    position = rig.clock.tick
    rig.send(STOP)
    assert rig.sounding == 0 and len(rig.stage.scheduler) == 0  # on the Stop itself, not a later tick
    assert rig.performer.state == "stopped" and rig.performer.held == {}
    count = len(rig.sent)
    rig.wait(1.0)  # the DAW keeps sending clock while stopped
    assert rig.clock.tick == position
    assert rig.note_ons(count) == []
    assert rig.hanging() == {}


def test_continue_resumes_from_the_kept_position_or_a_song_position_sent_while_stopped(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize")
    rig.send(START)
    rig.wait(1.0)  # two beats at 120 bpm
    rig.send(STOP)
    kept = rig.clock.tick
    rig.wait(0.5)
    rig.send(CONTINUE)
    rig.wait(0.001)
    assert rig.clock.tick == kept + 1  # the next tick carries on from where the DAW stopped
    rig.send(STOP)
    rig.send(SONG_POSITION, 64, 0)  # bar 5 (16ths)
    rig.send(CONTINUE)
    rig.wait(0.001)
    assert round(rig.clock.step_at(rig.now)) == 64
    answered = rig.note(74, 0.2)  # the melody is harmonized at the new position
    assert harmony_channels(answered) == [1, 2, 3]
    assert rig.performer.stream.grid_step >= 64


# --- Start --------------------------------------------------------------------------------------
def test_after_stop_and_start_the_very_next_melody_note_is_harmonized(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize")
    rig.send(START)
    for pitch in (72, 74, 76, 77, 79, 77, 76, 74):
        rig.note(pitch, 0.4)
    assert rig.performer.stream.grid_step > 20
    rig.send(STOP)
    rig.wait(0.5)
    rig.send(START)
    assert round(rig.clock.step_at(rig.now)) == 0
    answered = rig.note(72, 0.3)  # right on the downbeat, before the first tick is processed
    assert harmony_channels(answered) == [1, 2, 3]
    answered = rig.note(74, 0.3)
    assert harmony_channels(answered) == [1, 2, 3]
    rig.send(STOP)
    assert rig.hanging() == {}


def _answer_after_start(rig, call):
    """Start, play ``call`` (pitches, a beat apart), end it, and return the answer: its
    messages with their times from the Start."""
    rig.send(START)
    started = rig.now
    rig.wait(0.25)
    for pitch in call:
        rig.note(pitch, 0.2)
        rig.wait(0.05)
    rig.send(0xB0, rig.settings.cc["end_of_call"], 127)
    count = len(rig.sent)
    rig.wait(3.0)
    return [(round(t - started, 4), m) for t, m in rig.sent[count:]]


def test_the_first_call_after_start_is_answered_exactly_as_the_first_call_after_launch(tiny_model_path):
    settings = dict(mode="continue", response_bars=1, listen_gap=0.5, start_on="beat")
    fresh = DawRig(tiny_model_path, **settings)
    expected = _answer_after_start(fresh, [67, 71, 74])
    assert any(m[0] & 0xF0 == 0x90 for _, m in expected)
    used = DawRig(tiny_model_path, **settings)
    _answer_after_start(used, [72, 69, 65, 64])  # another performance first
    used.note(60, 0.3)  # and a call left hanging when the DAW stops
    used.send(STOP)
    used.wait(0.4)
    assert _answer_after_start(used, [67, 71, 74]) == expected
    assert used.performer.stats.answers == 2 and used.hanging() == {}


def test_start_while_running_in_harmonize_mode_releases_the_harmony_and_starts_afresh(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize")
    rig.send(START)
    rig.note(72, 0.4)
    rig.send(0x90, 74, 90)
    rig.wait(0.3)
    assert rig.sounding > 0
    rig.send(START)
    assert rig.sounding == 0 and rig.performer.held == {}
    assert round(rig.clock.step_at(rig.now)) == 0
    count = len(rig.sent)
    rig.wait(1.0)  # the key held over the Start is forgotten: no harmony until a new note
    assert rig.note_ons(count) == []
    assert harmony_channels(rig.note(76, 0.3)) == [1, 2, 3]


def test_song_position_while_running_stops_an_answer_in_progress(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="continue", response_bars=4, listen_gap=0.5)
    rig.send(START)
    rig.wait(0.2)
    rig.note(72, 0.3)
    rig.send(0xB0, rig.settings.cc["end_of_call"], 127)
    rig.wait(1.0)
    assert rig.performer.state == "answering" and rig.sounding > 0
    rig.send(SONG_POSITION, 32, 0)
    assert rig.sounding == 0 and rig.performer.state == "listening"
    count = len(rig.sent)
    rig.wait(3.0)
    assert rig.note_ons(count) == []
    assert _call_is_answered(rig)  # and the next call is answered at the new position
    rig.send(STOP)
    assert rig.hanging() == {}


def test_start_while_running_is_stop_then_start_and_no_answer_comes_unasked(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="continue", response_bars=4, listen_gap=0.5)
    rig.send(START)
    rig.wait(0.2)
    rig.note(72, 0.3)
    rig.send(0x90, 76, 90)  # still held when the DAW jumps back to the top
    rig.wait(0.2)
    rig.send(0xB0, rig.settings.cc["end_of_call"], 127)
    rig.wait(1.0)
    assert rig.performer.state == "answering" and rig.sounding > 0
    rig.send(START)  # the DAW loops back to the top while playing
    assert rig.sounding == 0 and len(rig.stage.scheduler) == 0
    assert rig.performer.state == "listening" and rig.performer.held == {}
    count = len(rig.sent)
    rig.wait(4.0)  # nobody plays: nothing is answered
    assert rig.note_ons(count) == []
    assert rig.performer.stats.starts == 2 and rig.performer.stats.answers == 1
    assert rig.hanging() == {}


def test_song_position_while_running_moves_the_grid_without_stale_notes(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize")
    rig.send(START)
    rig.wait(0.2)
    rig.send(0x90, 72, 90)
    rig.wait(0.4)
    assert rig.sounding > 0
    rig.send(SONG_POSITION, 0, 1)  # 128 16ths: bar 9
    assert rig.sounding == 0
    rig.wait(0.3)
    assert round(rig.clock.step_at(rig.now)) in range(128, 131)
    assert harmony_channels(rig.note(74, 0.2)) == [1, 2, 3]
    rig.send(STOP)
    assert rig.hanging() == {}


# --- held input -----------------------------------------------------------------------------
def _call_is_answered(rig, pitches=(67, 69, 71)) -> bool:
    answers = rig.performer.stats.answers
    count = len(rig.sent)
    for pitch in pitches:
        rig.note(pitch, 0.2)
    rig.wait(3.0)
    return rig.performer.stats.answers == answers + 1 and bool(rig.note_ons(count))


@pytest.mark.parametrize("clear", ["cc123", "cc120", "panic", "stop-start"])
def test_a_lost_note_off_is_cleared_by_the_controls_and_the_transport(tiny_model_path, clear):
    rig = DawRig(tiny_model_path, mode="continue", response_bars=1, listen_gap=0.5, max_hold_beats=64)
    rig.send(START)
    rig.send(0x90, 60, 90)  # its note-off never comes
    rig.wait(0.5)
    if clear == "cc123":
        rig.send(0xB0, 123, 0)
    elif clear == "cc120":
        rig.send(0xB0, 120, 0)
    elif clear == "panic":
        rig.send(0xB0, rig.settings.cc["panic"], 127)
    else:
        rig.send(STOP)
        rig.send(START)
    assert rig.performer.held == {}
    assert _call_is_answered(rig)
    assert rig.hanging() == {}


def test_a_held_key_with_no_new_note_on_stops_holding_the_call_open(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="continue", response_bars=1, listen_gap=0.5, max_hold_beats=4)
    rig.send(START)
    rig.wait(0.2)
    rig.note(67, 0.2)
    rig.send(0x90, 71, 90)  # its note-off is lost
    rig.wait(1.9)  # under four beats at 120 bpm: still held, still listening
    assert rig.performer.stats.answers == 0 and rig.performer.held
    rig.wait(1.5)  # past four beats and the half-beat gap
    assert rig.performer.stats.answers == 1 and rig.performer.player.expired == 1
    assert rig.note_ons()


def test_drums_never_hold_a_call_open(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="continue", response_bars=1, listen_gap=0.5)
    rig.send(START)
    rig.send(0x99, 36, 100)  # a kick on channel 10, never released
    assert rig.performer.stats.notes_in == 0 and rig.router.ignored == 1
    assert _call_is_answered(rig)


def test_harmonize_sounds_three_voices_whatever_else_is_held(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize", clock="internal")
    rig.send(0x90, 48, 90)  # a low key whose note-off is lost
    rig.send(0x90, 55, 90)
    rig.wait(0.3)
    for pitch in (72, 74, 76, 74):
        answered = rig.note(pitch, 0.3)
        assert harmony_channels(answered) == [1, 2, 3]  # the melody is the top note; no voice is taken


# --- reproducible draws ----------------------------------------------------------------------
def test_chords_ahead_draw_from_their_own_generator(tiny_model_path):
    from bachd.harmonizer import ATTACKS

    rig = DawRig(tiny_model_path, mode="harmonize", clock="internal")
    stream = rig.performer.stream
    for step, pitch in enumerate([72, 72, 74, 76]):
        stream.feed(step, {0: enc.attack(pitch)})
    before = stream.sampler.rng.bit_generator.state
    job = stream.chords_ahead([enc.attack(p) for p in (76, 77, 74, 79, 72)], ATTACKS)
    assert sum(1 for _ in job) == 6
    assert stream.sampler.rng.bit_generator.state == before  # the foreground's draws are untouched


@pytest.mark.parametrize("ahead", [False, True], ids=["on-demand", "ahead"])
def test_the_same_notes_on_the_same_grid_give_the_same_harmony(tiny_model_path, ahead):
    def perform():
        rig = DawRig(tiny_model_path, ahead=ahead, mode="harmonize")
        rig.send(START)
        rig.wait(0.1)
        for pitch in (72, 74, 76, 74, 72, 71, 72):
            rig.note(pitch, 0.23)
            rig.wait(0.05)
        rig.send(STOP)
        return rig.sent

    first = perform()
    assert harmony_channels([m for _, m in first])
    assert perform() == first
