"""The live path's pure logic with a manual clock and a recording output: clocks, the note
ledger, the scheduler, presets, input routing and the performer in both modes."""

import math

import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.live.clock import InternalClock, MidiClock
from bachd.live.router import Router
from bachd.errors import BachdError
from bachd.live.performer import Performer
from bachd.live.stream import Stream
from bachd.presets import LiveSettings, describe, resolve
from bachd.model.sampling import Sampler, SamplingConfig
from bachd.live.scheduler import Frame, Output, Scheduler, Voicer
from fakes import FakeClimbingEngine, FakePorts, FakeRestingEngine, FakeWhiteKeyEngine
from jackprobe import unmatched_notes
from rigs import LiveRig


# --- clocks ---------------------------------------------------------------------------------
def test_internal_clock_grid_and_tempo_change():
    clock = InternalClock(120, origin_seconds=10.0)
    assert clock.step_time(4) == pytest.approx(10.5)  # a beat at 120 bpm
    assert clock.step_at(10.25) == pytest.approx(2.0)
    clock.set_bpm(60, now_seconds=10.5)
    assert clock.step_at(10.5) == pytest.approx(4.0)  # the position does not jump
    assert clock.step_time(8) == pytest.approx(11.5)
    with pytest.raises(ValueError):
        InternalClock(1000, 0.0)


def _ticks(clock, start, bpm, count, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    period = 60 / (bpm * 24)
    for n in range(count):
        clock.midi_tick(start + n * period + rng.uniform(-jitter, jitter))
    return start + count * period


def test_midi_clock_follows_tempo_through_jitter_and_a_tempo_change():
    clock = MidiClock(initial_bpm=90)
    clock.start(0.0)
    end = _ticks(clock, 0.0, 120, 24 * 8, jitter=0.0015)
    assert clock.bpm == pytest.approx(120, rel=0.01)
    assert clock.step_at(end - 60 / (120 * 24)) == pytest.approx(8 * 4 - 1 / 6, abs=0.1)
    _ticks(clock, end, 100, 24 * 8, jitter=0.001)
    assert clock.bpm == pytest.approx(100, rel=0.02)


def test_midi_clock_transport_song_position_and_storms():
    clock = MidiClock(initial_bpm=120)
    assert not clock.running
    clock.song_position(16)  # bar 2 in 16ths
    clock.resume(1.0)
    clock.midi_tick(1.0)
    assert round(clock.step_at(1.0)) == 16
    period, tick = clock.period, clock.tick
    for k in range(1000):  # a burst of ticks 1 µs apart: ignored
        clock.midi_tick(1.0 + 1e-6 * (k + 1))
    assert clock.tick == tick and round(clock.step_at(1.0)) == 16
    assert clock.period == pytest.approx(period)
    clock.stop(2.0)
    assert not clock.running


# --- ledger and scheduler ----------------------------------------------------------------------
def test_voicer_pairs_every_note_on_with_a_note_off():
    voicer = Voicer()
    sent = []
    for frame in [Frame(1, enc.attack(60)), Frame(1, enc.hold(60)), Frame(1, enc.attack(60)), Frame(1, enc.attack(62)),
                  Frame(2, enc.hold(55)), Frame(1, enc.REST), Frame(3, enc.attack(40))]:
        sent += voicer.frame(frame)
    assert (0x90 | 1, 60, 80) in sent and sent.count((0x80 | 1, 60, 0)) == 2  # re-struck, not stacked
    assert voicer.notes_sounding == 2  # tenor (hold after nothing starts a note) and bass
    sent += voicer.release_all()
    assert unmatched_notes([list(m) for m in sent]) == {}
    assert voicer.notes_sounding == 0


def test_voices_sharing_a_channel_never_cut_each_other():
    voicer = Voicer(channels=(0, 0, 0, 0))
    sent = voicer.frame(Frame(1, enc.attack(60))) + voicer.frame(Frame(2, enc.attack(60)))
    assert sent == [(0x90, 60, 80)]
    assert voicer.frame(Frame(1, enc.REST)) == []  # the tenor still sings it
    assert voicer.frame(Frame(2, enc.REST)) == [(0x80, 60, 0)]


def test_scheduler_orders_cancels_and_records_lateness():
    now = [0.0]
    sent = []
    stage = Output(sent.append, Voicer(), now=lambda: now[0])
    stage.schedule(0.2, [Frame(1, enc.attack(64))], "b")
    stage.schedule(0.1, [Frame(1, enc.attack(62))], "a")
    stage.schedule(0.3, [Frame(2, enc.attack(55))], "b")
    now[0] = 0.1005
    stage.send_due(now[0])
    assert sent == [(0x91, 62, 80)]
    stage.cancel("b")
    now[0] = 1.0
    assert stage.send_due(now[0]) == 0
    assert stage.lateness.count == 1 and stage.lateness.percentiles_ms(50)[0] == pytest.approx(0.5)
    stage.schedule(2.0, [Frame(3, enc.attack(40))], "c")
    stage.silence()
    assert sent[-1] == (0x81, 62, 0) and len(stage.scheduler) == 0
    assert unmatched_notes([list(m) for m in sent]) == {}


def test_scheduler_pop_due_is_time_ordered():
    scheduler = Scheduler()
    for due in (3.0, 1.0, 2.0):
        scheduler.push(due, [Frame(0, enc.REST)], "x")
    assert [due for due, _ in scheduler.pop_due(2.5)] == [1.0, 2.0]
    assert scheduler.next_due() == 3.0


# --- presets ------------------------------------------------------------------------------------
def test_preset_precedence_defaults_preset_flags(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('mode = "harmonize"\nbpm = 100\n[cc]\npanic = "off"\n')
    settings = resolve(str(path), {"bpm": 72.0, "temperature": None})
    assert settings.mode == "harmonize" and settings.bpm == 72.0  # the flag wins over the file
    assert settings.temperature == LiveSettings().temperature
    assert settings.cc["panic"] is None and settings.cc["mode"] == 23
    assert "mode = \"harmonize\"" in describe(settings)


@pytest.mark.parametrize("flag", [None, False, True])
def test_the_daemon_samples_with_the_parallels_rule_when_asked(tiny_model_path, flag):
    from pathlib import Path

    from bachd.live.daemon import Daemon, RunOptions
    from bachd.model.engine import make_engine

    settings = resolve(None, {"allow_parallels": flag, "rhythm_temperature": None if flag is None else 1.4})
    engine = make_engine(tiny_model_path, batch_size=1, backend="numpy")
    daemon = Daemon(RunOptions(settings=settings, model_path=Path(tiny_model_path)), FakePorts(), engine)
    assert daemon.stream.sampler.config.allow_parallels is (flag is True)  # live default: the rule holds
    assert daemon.stream.sampler.config.rhythm_temperature == (1.0 if flag is None else 1.4)
    daemon.performer.set_temperature(0.5)  # the temperature knob leaves the rhythm alone
    assert daemon.stream.sampler.config.rhythm_temperature == (1.0 if flag is None else 1.4)


@pytest.mark.parametrize("text, message", [
    ("tempo = 90\n", r"mine.toml: unknown key 'tempo'"),
    ("bpm = 9000\n", r"mine.toml: key 'bpm' must be between"),
    ('mode = "solo"\n', r"key 'mode' must be one of continue, harmonize"),
    ("[cc]\nvolume = 7\n", r"unknown key 'cc.volume'"),
    ("bpm = \n", r"not valid TOML"),
    ("rhythm_temperature = 0\n", r"key 'rhythm_temperature' must be between"),
])
def test_bad_presets_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(BachdError, match=message):
        resolve(str(path))


def test_builtin_presets_are_valid_and_user_presets_shadow_them(tmp_path, monkeypatch):
    from bachd.presets import available

    builtin = available()
    assert {"chorale", "harmonizer", "adventurous"} <= set(builtin)
    for name in builtin:
        resolve(name)
    monkeypatch.setenv("BACHD_CONFIG_DIR", str(tmp_path))
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "chorale.toml").write_text("bpm = 61\n")
    assert resolve("chorale").bpm == 61
    with pytest.raises(BachdError, match="no preset named 'nope'"):
        resolve("nope")


# --- the performer ------------------------------------------------------------------------------
@pytest.mark.parametrize("ahead", [False, True], ids=["computed-on-demand", "computed-ahead"])
def test_harmonize_answers_every_melody_note_at_once_with_three_lower_voices(tiny_model_path, ahead):
    rig = LiveRig(tiny_model_path, ahead=ahead, mode="harmonize")
    rig.run_until(0.3)
    for note in [72, 74, 76, 77, 79, 77, 76, 74, 72]:
        answered = rig.note(note, 0.2)
        ons = [m for m in answered if m[0] & 0xF0 == 0x90]
        assert sorted(m[0] & 0x0F for m in ons) == [1, 2, 3], answered  # alto, tenor, bass; never the soprano
        for m in ons:
            low, high = enc.VOICE_RANGES[m[0] & 0x0F]
            assert low <= m[1] <= high
        rig.run_until(rig.now + 0.05)
    # The player stops: within about a beat the harmony stops too.
    rig.run_until(rig.now + 1.0)
    assert rig.output.voicer.notes_sounding == 0
    assert unmatched_notes(rig.messages()) == {}
    figures = rig.performer.figures()
    assert figures["melody_chords"] == 9
    assert figures["chords_ahead"] == (9 if ahead else 0)  # with spare time, no note waits for the model


def test_a_wider_model_steps_its_chords_ahead_in_smaller_bites_with_the_same_draws():
    """A melody note waits for the batched step under way: a 2x448 model steps its eight
    candidates four at a time, whose step costs about what eight cost a 2x320 one; wider,
    fewer still. The eight are still drawn together, so the chords are the same."""
    from bachd.model.engine import make_engine
    from bachd.live.harmonizer import ATTACKS
    from bachd.live.ahead import rows_per_step
    from bachd.model.streaming import lstm_row_cost
    from bachd.paths import MODELS_DIR

    assert [rows_per_step(lstm_row_cost(units)) for units in (64, 320, 448, 512, 1024)] == [8, 8, 4, 2, 1]
    engine = make_engine(MODELS_DIR / "default.keras", backend="numpy")
    assert engine.config.lstm_units == 448

    def chords(rows):
        stream = Stream(engine, Sampler(SamplingConfig(temperature=1.0), rng_seed=3))
        if rows != stream.ahead.step_rows:  # the same stream, stepped in other bites
            stream.ahead.set_step_rows(rows)
        for step, pitch in enumerate([72, 72, 74, 76]):
            stream.feed(step, {0: enc.attack(pitch)})
        melody = [enc.attack(p) for p in (76, 77, 74, 79, 72, 75, 78, 73, 80, 71)]
        bites = sum(1 for _ in stream.ahead.compute(melody, ATTACKS))
        return stream, bites, {m: stream.ahead.chord_for(4, m)[0].tolist() for m in melody}

    stream, bites, four = chords(4)
    assert (stream.ahead.group, stream.ahead.step_rows, len(stream.ahead.engines)) == (8, 4, 2)
    assert bites == 2 * 3 * (2 + 1)  # two batches, three voices: two steps of four and a draw
    _, bites, eight = chords(8)
    assert bites == 2 * 3 * 2 and eight == four


def test_a_chord_computed_ahead_is_the_one_the_model_would_play_from_the_same_context(tiny_model_path):
    from bachd.model.engine import make_engine
    from bachd.live.harmonizer import ATTACKS

    engine = make_engine(tiny_model_path, batch_size=1, backend="numpy")
    stream = Stream(engine, Sampler(SamplingConfig(temperature=1.0), rng_seed=5))
    for step, pitch in enumerate([72, 72, 74, 76]):
        stream.feed(step, {0: enc.attack(pitch)})
    before = stream.snapshot()
    melody = [enc.attack(p) for p in (76, 77, 74, 79, 72, 75, 78, 73, 80, 71)]  # more than one batch of candidates
    job = stream.ahead.compute(melody, ATTACKS)
    steps = sum(1 for _ in job)
    # two batches of eight, three voices each, each voice's batched step and batched draw apart
    assert (stream.ahead.group, stream.ahead.step_rows) == (8, 8) and steps == 2 * 3 * 2
    assert stream.ahead.compute(melody, ATTACKS) is None  # nothing left to do
    assert stream.ahead.chord_for(5, enc.attack(77)) is None  # only for the next step
    chord = stream.ahead.chord_for(4, enc.attack(77))
    tokens = stream.feed_chord(4, chord).copy()
    assert tokens[0] == enc.attack(77)
    for voice in (1, 2, 3):
        low, high = enc.VOICE_RANGES[voice]
        assert enc.is_attack(int(tokens[voice])) and low <= enc.token_pitch(int(tokens[voice])) <= high
    stream.prepare()
    ahead_state, ahead_logits = engine.get_state(), stream._logits0.copy()
    # The same tokens fed the ordinary way from the same context end in the same state.
    stream.restore(before)
    assert stream.ahead.chord_for(4, enc.attack(77)) is not None  # the context came back, so did its chords
    stream.feed(4, {v: int(t) for v, t in enumerate(tokens)})
    assert stream.ahead.chord_for(5, enc.attack(77)) is None  # a new context has no chords yet
    stream.prepare()
    for a, b in zip(ahead_state, engine.get_state()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ahead_logits, stream._logits0, atol=1e-4)


def test_harmonize_late_note_rolls_the_step_back_and_out_of_range_notes_fold(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="harmonize")
    rig.run_until(0.5 + 0.02)  # just after a step boundary that was computed ahead
    answered = rig.note(108, 0.3)  # C8: folded into range, still harmonized
    assert len([m for m in answered if m[0] & 0xF0 == 0x90]) == 3
    assert rig.performer.figures()["rollbacks"] >= 1
    rig.performer.shutdown()
    assert unmatched_notes(rig.messages()) == {}


def test_continue_answers_after_the_gap_on_the_grid_for_the_asked_length(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="continue", response_bars=1, listen_gap=1.0, start_on="beat")
    rig.run_until(0.1)
    for note in [67, 69, 71, 72]:
        assert rig.note(note, 0.2) == []  # listening is silent
    released = rig.now
    rig.run_until(released + 0.4)  # less than the gap plus a beat: nothing yet
    assert rig.sent == []
    rig.run_until(released + 4.0)
    ons = [(t, m) for t, m in rig.sent if m[0] & 0xF0 == 0x90]
    assert ons, "no answer"
    first = ons[0][0]
    step = rig.clock.step_at(first)
    assert abs(step - round(step)) < 0.01 and round(step) % 4 == 0  # on a beat (the rig ticks in 1 ms)
    assert rig.output.first_lateness and max(rig.output.first_lateness) <= 0.001
    assert first >= released + 0.5  # after the one-beat gap
    last_off = max(t for t, m in rig.sent)
    assert last_off <= first + 2.0 + 1e-6  # one 4/4 bar at 120 bpm
    assert rig.performer.figures()["answers"] == 1 and rig.performer.state == "listening"
    assert unmatched_notes(rig.messages()) == {}


@pytest.mark.parametrize("beats_per_bar", [3, 4])
def test_a_three_four_preset_answers_in_three_four(tiny_model_path, tmp_path, beats_per_bar):
    """A preset in 3/4: the answer starts on a bar line of 3 beats and lasts its bars of 3."""
    preset = tmp_path / "waltz.toml"
    preset.write_text(f'mode = "continue"\nbeats_per_bar = {beats_per_bar}\nresponse_bars = 2\nstart_on = "bar"\nlisten_gap = 0.5\n')
    settings = resolve(str(preset), {"bpm": 120.0, "rng_seed": 3})
    rig = LiveRig(tiny_model_path, **{k: getattr(settings, k) for k in ("mode", "beats_per_bar", "response_bars", "start_on", "listen_gap")})
    rig.run_until(0.1)
    rig.note(72, 0.3)
    rig.performer.end_of_call()
    rig.run_until(rig.now + 6.0)
    bar_steps = beats_per_bar * enc.STEPS_PER_BEAT
    steps = sorted({round(rig.clock.step_at(t)) for t, _ in rig.sent})
    assert steps[0] % bar_steps == 0  # on a bar line of this meter
    assert steps[-1] - steps[0] == 2 * bar_steps  # two bars of this meter, then the final note-offs
    assert rig.performer.figures()["answers"] == 1 and unmatched_notes(rig.messages()) == {}


def test_playing_over_an_answer_stops_it_cleanly(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="continue", response_bars=4, listen_gap=0.5)
    rig.run_until(0.1)
    rig.note(72, 0.3)
    rig.performer.end_of_call()
    rig.run_until(rig.now + 1.5)
    assert rig.performer.state == "answering"
    rig.note(74, 0.1)
    assert rig.performer.figures()["interrupted"] == 1
    assert rig.output.voicer.notes_sounding == 0
    sent_before = len(rig.sent)
    rig.run_until(rig.now + 0.2)
    assert not [m for _, m in rig.sent[sent_before:] if m[0] & 0xF0 == 0x90]
    assert unmatched_notes(rig.messages()) == {}


@pytest.mark.parametrize("action", ["panic", "mode", "stop", "cc123"])
def test_panic_mode_switch_transport_stop_and_cc123_silence_an_answer(tiny_model_path, action):
    rig = LiveRig(tiny_model_path, mode="continue", response_bars=4)
    router = Router(rig.performer)
    rig.run_until(0.1)
    rig.note(72, 0.3)
    router.handle(rig.now, [0xB0, rig.settings.cc["end_of_call"], 127])
    rig.run_until(rig.now + 1.5)
    assert rig.output.voicer.notes_sounding > 0
    if action == "panic":
        router.handle(rig.now, [0xB0, rig.settings.cc["panic"], 127])
    elif action == "mode":
        router.handle(rig.now, [0xB0, rig.settings.cc["mode"], 127])
        assert rig.performer.mode == "harmonize"
    elif action == "stop":
        rig.performer.transport_stop(rig.now)
    else:
        router.handle(rig.now, [0xB3, 123, 0])
    assert rig.output.voicer.notes_sounding == 0 and len(rig.output.scheduler) == 0
    assert unmatched_notes(rig.messages()) == {}


def test_router_survives_bad_input_and_maps_controls(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="harmonize", in_channel=2)
    router = Router(rig.performer)
    junk = [[], [0xF0, 1, 2, 3, 0xF7], [0x90, 200, 100], [0x90, 60], [0x42], [0xE0, 0, 64], [0x80, 61, 0], [0x90, 60, 100]]
    for message in junk:  # everything but the SysEx is on channels that are not ours
        router.handle(rig.now, message)
    # The SysEx, a program change (0xC8 cut the note-on short), the note-on completed across
    # two deliveries, the pitch bend and the last two notes: ignored. The cut note-on: dropped.
    assert router.ignored == 6 and router.parser.stats.dropped_messages == 1
    assert rig.performer.stats.notes_in == 0
    router.handle(rig.now, [0xB1, rig.settings.cc["temperature"], 127])
    assert rig.performer.stream.sampler.config.temperature == pytest.approx(1.8)
    router.handle(rig.now, [0xB1, rig.settings.cc["response_bars"], 0])
    assert rig.performer.settings.response_bars == 1
    rig.run_until(0.3)
    for k in range(3000):  # a note-on storm
        router.handle(rig.now, [0x91, 40 + k % 60, 100])
    rig.performer.update(rig.now)
    assert len(rig.performer.held) <= 16
    for k in range(60):
        router.handle(rig.now, [0x81, 40 + k, 0])
    rig.run_until(rig.now + 1.0)
    rig.performer.shutdown()
    assert unmatched_notes(rig.messages()) == {}


def test_sampling_restrict_keeps_only_allowed_tokens():
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=1.0), rng_seed=0)
    restrict = np.zeros(enc.VOCAB_SIZE, bool)
    restrict[enc.attack(60)] = True
    logits = np.zeros((1, enc.VOCAB_SIZE))
    tokens = {int(sampler.sample(logits, 1, np.array([enc.REST]), restrict)[0][0]) for _ in range(20)}
    assert tokens == {enc.attack(60)}
    restrict[:] = False  # nothing allowed at all: REST
    assert sampler.sample(logits, 1, np.array([enc.REST]), restrict)[0][0] == enc.REST
    assert math.isfinite(sampler.sample(logits, 1, np.array([enc.REST]))[1][0])


def test_live_harmony_stays_at_or_under_the_melody():
    from bachd.live.harmonizer import ATTACKS

    def pitches(tokens):
        return [enc.token_pitch(int(t)) for t in tokens]

    stream = Stream(FakeClimbingEngine(), Sampler(SamplingConfig(temperature=1.0), rng_seed=4))
    stream.feed(0, {0: enc.attack(74)})
    assert pitches(stream.last)[1] == 74  # the highest the model may: the melody's own pitch
    stream.feed(1, {0: enc.hold(74)})  # a held melody note keeps the harmony under it too
    assert max(pitches(stream.last)[1:]) <= 74
    stream.feed(2, {0: enc.attack(62)}, restrict=ATTACKS)
    soprano, *lower = pitches(stream.last)
    assert soprano == 62 and all(0 < p <= 62 for p in lower)
    # A melody under the alto's whole range: the alto still sounds, the others stay under it.
    stream.feed(3, {0: enc.attack(50)}, restrict=ATTACKS)
    alto, tenor, bass = pitches(stream.last)[1:]
    assert alto > 50 and 0 < tenor <= 50 and 0 < bass <= 50
    # Chords computed ahead keep the same rule, each under its own melody note.
    melody = [enc.attack(p) for p in (60, 67, 72, 79, 64)]
    for _ in stream.ahead.compute(melody, ATTACKS):
        pass
    for token in melody:
        soprano, *lower = pitches(stream.ahead.chord_for(4, token)[0])
        assert all(0 < p <= soprano for p in lower), (soprano, lower)
    # Without the rule this model puts the alto at the top of its range, over most of them.
    free = Sampler(SamplingConfig(temperature=1.0), rng_seed=4)
    logits = FakeClimbingEngine().step(None, 1, 0)
    assert enc.token_pitch(int(free.sample(logits, 1, np.array([enc.REST]))[0][0])) == enc.VOICE_RANGES[1][1]


def test_a_chord_closes_best_as_a_root_position_cadence_on_the_tonic():
    from bachd.live.ranking import Closing

    def chord(*pitches):
        return np.array([enc.attack(p) for p in pitches])

    g7 = (chord(65, 62, 59, 43),)  # the beat before: G B D F over G
    key = (0, False)  # C major
    c = chord(72, 67, 64, 48)
    assert Closing(g7, key).rank(c)[0] == 3  # V7-I in C
    assert Closing(g7, (7, False)).rank(c)[0] == 2  # ... in another key
    assert Closing((chord(72, 65, 57, 53),), key).rank(c)[0] == 3  # IV-I
    assert Closing((chord(69, 64, 60, 45),), key).rank(c)[0] == 1  # vi-I: no close
    assert Closing(g7, key).rank(chord(72, 67, 60, 52))[0] == 1  # I6: a complete chord, but no close
    assert Closing(g7, key).rank(chord(72, 64, 60, 48))[0] == 0  # no fifth: not a complete triad
    assert Closing(g7, key).rank(chord(72, 65, 57, 50))[0] == 1  # D minor 7th over D: complete, no close
    assert Closing((chord(67, 62, 59, 47),), key).rank(c)[0] == 3  # V6-I: heard as a close too
    assert Closing((np.full(4, enc.REST),), key).rank(c)[0] == 1
    assert Closing((), key).rank(c)[0] == 1  # nothing before it
    assert Closing(g7, key).rank(np.array([enc.attack(72), enc.REST, enc.attack(64), enc.attack(48)]))[0] == 0
    # The chord a close comes from is the last one on a beat that is another chord: the
    # same chord struck again on the beat before (C in another spacing) does not hide the G7
    # before it, and a rest there is passed over; a vi chord in between breaks the close.
    c_again = chord(76, 67, 60, 48)
    assert Closing((c_again, np.full(4, enc.REST), *g7), key).rank(c)[0] == 3
    assert Closing((chord(69, 64, 60, 45), *g7), key).rank(c)[0] == 1
    # Of two chords that close alike, the one in the key's scale ranks first: A minor over
    # D major (F sharp) after a C chord in C major; in E minor, the other way round.
    a_minor, d_major = chord(72, 69, 64, 45), chord(74, 69, 66, 50)
    assert Closing((c,), key).rank(a_minor)[0] == Closing((c,), key).rank(d_major)[0] == 1
    assert Closing((c,), key).rank(a_minor) == (1, True) and Closing((c,), key).rank(d_major) == (1, False)
    assert Closing((c,), (4, True)).rank(a_minor) == (1, True) and Closing((c,), (4, True)).rank(d_major) == (1, True)
    assert Closing(g7, key).rank(c) == (3, True) > Closing(g7, key).rank(a_minor)
    assert Closing((c,), None).rank(a_minor) == (1, False)  # no key named yet


def test_the_stream_remembers_the_chords_on_the_last_beats_and_rolls_them_back():
    stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(), rng_seed=0))
    rows = [np.array([enc.attack(72 - step), enc.attack(60), enc.attack(55), enc.attack(48)]) for step in range(24)]
    for step in range(9):
        stream.feed(step, dict(enumerate(rows[step])))
    assert [int(t[0]) for t in stream.beats] == [enc.attack(64), enc.attack(68), enc.attack(72)]  # steps 8, 4, 0
    before = stream.snapshot()
    for step in range(9, 21):
        stream.feed(step, dict(enumerate(rows[step])))
    assert [int(t[0]) for t in stream.beats] == [enc.attack(72 - s) for s in (20, 16, 12, 8)]  # the last four
    stream.restore(before)
    assert [int(t[0]) for t in stream.beats] == [enc.attack(64), enc.attack(68), enc.attack(72)]
    stream.relocate()
    assert stream.beats == ()


def test_chords_ahead_on_a_strong_beat_keep_the_draw_that_closes_best():
    from bachd.live.harmonizer import ATTACKS
    from bachd.live.ranking import Closing

    def chords(draws, upto):
        """Chords under the melody note C5 at step ``upto`` + 1, one per seed."""
        kept = []
        for seed in range(30):
            stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(temperature=1.0, top_p=1.0, chord_draws=draws), rng_seed=seed))
            for step in range(upto + 1):
                stream.feed(step, {0: enc.attack(72), 1: enc.attack(67), 2: enc.attack(64), 3: enc.attack(48)})
            for _ in stream.ahead.compute([enc.attack(72), enc.attack(76)], ATTACKS):
                pass
            kept.append((stream.ahead.chord_for(upto + 1, enc.attack(72))[0], Closing(stream.beats, stream.keys.key)))
        return kept

    one, eight = chords(1, 7), chords(8, 7)  # step 8: beat 3 of a 4/4 bar
    closing = [sum(c.rank(t)[0] >= 1 for t, c in kept) for kept in (one, eight)]
    assert closing[1] >= max(closing[0] + 8, 27), closing  # a complete chord: 14 of 30 seeds with one draw, 30 with eight
    # Off the beat nothing changes: the chord is the first draw, as with one draw.
    weak_one, weak_eight = chords(1, 4), chords(8, 4)
    assert all((a == b).all() for (a, _), (b, _) in zip(weak_one, weak_eight))
    stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(), rng_seed=0))
    assert [b for b in range(16) if stream.strong_beat(b)] == [0, 8]
    stream.bar_steps = 12
    assert [b for b in range(12) if stream.strong_beat(b)] == [0]


def test_before_a_strong_beat_a_melody_note_on_the_2nd_4th_5th_or_7th_gets_a_dominant_that_can_close():
    from bachd.live.harmonizer import ATTACKS
    from bachd.live.ranking import Preparing

    def chord(*pitches):
        return np.array([enc.attack(p) for p in pitches])

    f_major = (5, False)
    assert Preparing(f_major).rank(chord(67, 64, 60, 48)) == (2, True)  # C major over C: V of F
    assert Preparing(f_major).rank(chord(67, 64, 60, 52)) == (0, True)  # ... over E: no
    assert Preparing(f_major).rank(chord(72, 64, 57, 45)) == (1, True)  # A minor over A: root position
    a_major = chord(69, 64, 61, 45)  # the dominant of D minor, in F major outside the key
    assert Preparing(f_major).rank(a_major) == (1, False) and Preparing((2, True)).rank(a_major) == (2, True)
    # E (7th), G (2nd), B-flat (4th), C (5th)
    assert [p for p in range(60, 72) if Preparing(f_major).prepares(enc.attack(p))] == [60, 64, 67, 70]
    assert not Preparing(None).prepares(enc.attack(67))

    melody = [65, 69, 72, 70, 69, 67, 65, 65]  # F A C B-flat A G F F, in quarter notes

    def under(draws, note):
        """The chord under ``note`` on beat 2 of bar 3 (step 36), one per seed."""
        kept = []
        for seed in range(30):
            stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(temperature=1.0, top_p=1.0, chord_draws=draws), rng_seed=seed))
            for step in range(36):
                pitch = melody[(step // 4) % len(melody)]
                stream.feed(step, {0: enc.attack(pitch) if step % 4 == 0 else enc.hold(pitch)})
            assert stream.keys.key == f_major and stream.upbeat(36)
            for _ in stream.ahead.compute([enc.attack(note), enc.attack(65)], ATTACKS):
                pass
            kept.append(stream.ahead.chord_for(36, enc.attack(note))[0])
        return kept

    # Under G, the 2nd of F: a root-position C chord, from which the strong beat can close
    # V-I, far more often from eight draws than from one (the fake model plays C, E, G, A).
    dominant = [sum(Preparing(f_major).rank(t)[0] == 2 for t in kept) for kept in (under(1, 67), under(8, 67))]
    assert dominant[1] >= dominant[0] + 10, dominant
    # Under the tonic nothing changes: the chord is the model's one draw.
    assert all((a == b).all() for a, b in zip(under(1, 65), under(8, 65)))
    stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(), rng_seed=0))
    assert [b for b in range(16) if stream.upbeat(b)] == [4, 12]
    stream.bar_steps = 12
    assert [b for b in range(12) if stream.upbeat(b)] == [8]


# F A C B-flat | A G F F in quarter notes: (pitch, steps)
QUARTERS = [(65, 4), (69, 4), (72, 4), (70, 4), (69, 4), (67, 4), (65, 4), (65, 4)]


def melody_tokens(notes: list[tuple[int, int]]) -> np.ndarray:
    """(T, 4) tokens with ``notes`` (pitch, steps) in the soprano, the rest resting."""
    tokens = np.full((sum(n for _, n in notes), 4), enc.REST)
    step = 0
    for pitch, length in notes:
        tokens[step, 0] = enc.attack(pitch)
        tokens[step + 1 : step + length, 0] = enc.hold(pitch)
        step += length
    return tokens


def test_a_dominant_prepared_before_a_strong_beat_stands_until_it_while_the_melody_holds():
    from bachd.files.live_checks import harmonize
    from bachd.music import analysis
    from bachd.live.ranking import _DOMINANTS
    from fakes import FakeOnTheBeatEngine

    # F A C B-flat | A G F F in quarter notes, three times: G, the 2nd of F, is struck on
    # beat 2 (steps 20, 52, 84), the beat before a strong one. Then once with G and A in
    # eighths there: a new melody note ends what stood.
    notes = QUARTERS * 3 + QUARTERS[:5] + [(67, 2), (69, 2)] + QUARTERS[6:]
    tokens = melody_tokens(notes)
    tones = {0, 4, 7, 10}  # C E G B-flat
    stood = moved = 0
    for seed in range(8):
        ours = harmonize(FakeOnTheBeatEngine(), LiveSettings(rng_seed=seed, chord_draws=8, temperature=1.0, top_p=1.0), tokens)
        pitches, attacks = enc.decode_pitches(ours)
        assert (pitches[:, 1:] != enc.SILENT).all(), seed  # no voice ever drops out under the melody
        for step in range(0, 96, 4):
            after = range(step + 1, step + 4)  # the 16ths while the melody holds
            if step % 32 == 20 and analysis.rooted(pitches[step], _DOMINANTS) == 0:
                stood += 1
                assert all(pitches[s, 3] == pitches[step, 3] and not attacks[s, 3] for s in after), (seed, step)
                assert all(pitches[s, v] % 12 in tones for s in after for v in (1, 2)), (seed, step)
            elif step % 32 != 20:
                moved += any(pitches[s, v] % 12 not in tones for s in after for v in (1, 2, 3))
    # The eight draws under G find C's dominant over C most times (22 of 24 with these
    # seeds); everywhere else the model's notes between beats leave those four notes.
    assert stood >= 14, stood  # of 24
    assert moved >= 100, moved


def test_under_a_melody_note_struck_on_a_strong_beat_the_bass_stands_while_the_melody_holds():
    from bachd.files.live_checks import harmonize
    from fakes import FakeOnTheBeatEngine

    # F A C B-flat | A G F F in quarter notes, twice, then once more with the F on beat 3
    # of the last bar struck again at the 8th: the bass stands through the 16ths of each
    # strong beat's quarter note (of that F, its first 8th), and is free again at the new
    # melody note.
    notes = QUARTERS * 2 + QUARTERS[:6] + [(65, 2), (65, 2), (65, 4)]
    tokens = melody_tokens(notes)
    walked = {}
    for draws in (8, 1):
        walked[draws] = 0
        for seed in range(6):
            settings = LiveSettings(rng_seed=seed, chord_draws=draws, temperature=1.0, top_p=1.0)
            pitches, attacks = enc.decode_pitches(harmonize(FakeOnTheBeatEngine(), settings, tokens))
            for strong in range(0, 96, 8):  # beats 1 and 3; at step 88 the F is struck again at step 90
                held = range(strong + 1, strong + 4) if strong != 88 else range(strong + 1, strong + 2)
                stands = all(pitches[s, 3] == pitches[strong, 3] and not attacks[s, 3] for s in held)
                walked[draws] += not stands
                assert stands or draws == 1, (seed, strong)
    assert walked[1] >= 24, walked  # the model's own bass walks under these quarter notes


def test_a_live_answer_never_rests_all_voices_for_more_than_two_beats():
    from bachd.model.sampling import MAX_SILENT_STEPS

    stream = Stream(FakeRestingEngine(), Sampler(SamplingConfig(temperature=1.0), rng_seed=2))
    stream.feed(0, {0: enc.attack(72), 3: enc.attack(48)})  # the call
    silent, run = [], 0
    for step in range(1, 41):
        tokens = stream.feed(step, {})
        silent.append((tokens == enc.REST).all())
        run = run + 1 if silent[-1] else 0
        assert run <= MAX_SILENT_STEPS
        if step == MAX_SILENT_STEPS:
            snapshot = stream.snapshot()
    assert silent[:MAX_SILENT_STEPS] == [True] * MAX_SILENT_STEPS  # the model rests as long as it may,
    assert not silent[MAX_SILENT_STEPS]  # then the soprano comes in,
    assert sum(silent[MAX_SILENT_STEPS + 1 :]) > 20  # and the model may rest again later
    # Rolling back to a silent stretch brings its length back too.
    stream.restore(snapshot)
    assert stream.silent_steps == MAX_SILENT_STEPS
    assert enc.is_attack(int(stream.feed(MAX_SILENT_STEPS + 1, {})[0]))


def test_a_continue_answer_opens_on_four_voices_even_from_a_resting_model():
    settings = LiveSettings(bpm=120.0, rng_seed=3, mode="continue", response_bars=1, listen_gap=0.5, start_on="beat")
    now = [0.0]
    sent = []
    stage = Output(lambda m: sent.append((now[0], m)), Voicer(settings.out_channels()), now=lambda: now[0])
    clock = InternalClock(settings.bpm, origin_seconds=0.0)
    performer = Performer(Stream(FakeRestingEngine(), Sampler(SamplingConfig(), rng_seed=3)), clock, stage, settings)

    def run_until(t):
        while now[0] < t:
            now[0] = min(t, now[0] + 0.001)
            wake = performer.next_wakeup(now[0])
            if wake is not None and wake <= now[0]:
                performer.update(now[0])
            stage.send_due(now[0])

    run_until(0.1)
    performer.note_on(now[0], 72, 90)
    run_until(0.4)
    performer.note_off(now[0], 72)
    performer.end_of_call()
    run_until(5.0)
    assert performer.figures()["answers"] == 1
    ons = [(t, m) for t, m in sent if m[0] & 0xF0 == 0x90]
    assert ons, "a resting model left the answer silent"
    # The answer opens on a full chord, though the model would rest every voice but the
    # soprano, which comes back in.
    opening = ons[0][0]
    assert sorted(m[0] & 0x0F for t, m in ons if t == opening) == [0, 1, 2, 3], ons
    assert all(m[0] & 0x0F == 0 for t, m in ons if t > opening)  # then the model rests as it likes: only the soprano returns
    assert unmatched_notes([list(m) for _, m in sent]) == {}


def test_the_stream_tells_the_model_where_each_step_falls_in_the_bar():
    """Grid step 0 is a downbeat; the engine is told the 16th within the 4/4 bar, also for
    the chords computed ahead and across a gap in the grid."""

    class Recording(FakeRestingEngine):
        def __init__(self, batch_size=1):
            super().__init__(batch_size)
            self.positions = []

        def step(self, previous, voice, beat):
            self.positions.append((voice, beat))
            return super().step(previous, voice, beat)

        def spawn(self, batch_size):
            return Recording(batch_size)

    engine = Recording()
    stream = Stream(engine, Sampler(SamplingConfig(temperature=1.0), rng_seed=2))
    for step in range(18):
        stream.feed(step, {0: enc.REST})
    stream.feed(29, {0: enc.REST}, max_pad=16)  # steps 19-28 padded in
    sopranos = [beat for voice, beat in engine.positions if voice == 0]
    assert sopranos == list(range(16)) + [0, 1] + list(range(2, 14))
    job = stream.ahead.compute([enc.attack(72)], None)
    while next(job, "done") != "done":
        pass
    assert {beat for _, beat in stream.ahead.engines[0].positions} == {14}
    # In 3/4 the performer tells the stream a bar is 12 steps.
    settings = LiveSettings(beats_per_bar=3)
    stage = Output(lambda m: None, Voicer(settings.out_channels()), now=lambda: 0.0)
    Performer(stream, InternalClock(120.0, origin_seconds=0.0), stage, settings)
    engine.positions.clear()
    stream.relocate()
    for step in range(10, 14):
        stream.feed(step, {0: enc.REST})
    assert [beat for voice, beat in engine.positions if voice == 0] == [10, 11, 0, 1]


def test_the_link_clock_lays_the_grid_on_the_sessions_beats_and_follows_its_tempo():
    from bachd.live.abletonlink import LinkClock

    clock = LinkClock(140.0)
    assert not clock.running  # stopped until the session plays
    clock.follow(120.0, beat=8.0, t_seconds=100.0)  # beat 8 (bar 3 in 4/4) at t = 100 s
    assert clock.step_at(100.0) == pytest.approx(32.0) and clock.step_time(36) == pytest.approx(100.5)
    clock.follow(60.0, beat=9.0, t_seconds=100.5)  # the session slows down at beat 9: the beat carries on
    assert clock.step_at(101.5) == pytest.approx(40.0) and clock.bpm == 60.0
    clock.start(101.5)
    assert clock.running
    clock.stop(102.0)
    assert not clock.running


def test_silencing_on_the_way_out_gives_up_on_an_output_stuck_in_the_midi_system():
    import threading
    import time

    released = threading.Event()
    stuck_in_send = threading.Event()

    def sink(message):  # a MIDI system that stopped taking messages, until released
        stuck_in_send.set()
        released.wait(5.0)

    stage = Output(sink, Voicer())
    sender = threading.Thread(target=stage.play_now, args=([Frame(1, enc.attack(64))],))
    sender.start()
    assert stuck_in_send.wait(2.0)
    started = time.monotonic()
    assert stage.silence(wait_seconds=0.1) is False  # gave up instead of waiting for ever
    assert time.monotonic() - started < 1.0
    released.set()
    sender.join(2.0)
    assert stage.silence(wait_seconds=0.1) is True and stage.voicer.notes_sounding == 0


# --- live settings: one path for CC, the control surface and presets -------------------------
def test_every_live_setting_changes_through_one_path_and_is_checked(tiny_model_path):
    from bachd.errors import BachdError
    from bachd.settings import SETTINGS

    rig = LiveRig(tiny_model_path, mode="continue")
    performer = rig.performer
    new_values = {"mode": "harmonize", "bpm": 100.0, "temperature": 0.4, "top_p": 0.8, "rhythm_temperature": 1.3,
                  "key_pull": 2.0, "inner_pull": 0.5, "minor_pull": 0.0, "root_pull": 3.0, "chord_draws": 3,
                  "response_bars": 4, "listen_gap": 2.0, "start_on": "bar", "max_hold_beats": 4.0,
                  "allow_overlap": True, "allow_parallels": True, "in_channel": 5, "out_channel": 9, "velocity": "follow"}
    assert set(new_values) == {s.name for s in SETTINGS.values() if s.live}
    for name, value in new_values.items():
        assert performer.change(name, value, "panel") == value
        assert getattr(performer.settings, name) == value
    config = performer.stream.sampler.config
    assert (config.temperature, config.top_p, config.rhythm_temperature, config.key_pull, config.inner_pull,
            config.minor_pull, config.root_pull, config.chord_draws, config.allow_parallels) == (0.4, 0.8, 1.3, 2.0, 0.5, 0.0, 3.0, 3, True)
    assert performer.mode == "harmonize" and rig.clock.bpm == 100.0
    assert performer.player.max_hold_beats == 4.0 and rig.output.voicer.channels == (8, 8, 8, 8)
    # The router listens on the new channel only.
    rig.run_until(0.2)
    rig.send(0x90, 60, 90)
    assert performer.stats.notes_in == 0
    rig.send(0x94, 60, 90)
    assert performer.stats.notes_in == 1
    # Checked as flags and presets are, named by where the value came from; nothing changes.
    with pytest.raises(BachdError, match="panel: key 'temperature' must be between 0.05 and 5"):
        performer.change("temperature", 9.0, "panel")
    with pytest.raises(BachdError, match="cannot change while bachd plays"):
        performer.change("beats_per_bar", 3, "panel")
    with pytest.raises(BachdError, match="cannot change while bachd plays"):
        performer.change("no_such_setting", 3, "panel")
    assert performer.settings.temperature == 0.4 and performer.settings.beats_per_bar == 4


def test_a_tempo_change_keeps_the_grid_position_and_other_clocks_refuse_it(tiny_model_path):
    from bachd.errors import BachdError

    rig = LiveRig(tiny_model_path, mode="harmonize")
    rig.run_until(1.0)
    before = rig.clock.step_at(1.0)
    rig.performer.change("bpm", 60.0, "panel", now_seconds=1.0)
    assert rig.clock.step_at(1.0) == pytest.approx(before)
    assert rig.clock.step_at(2.0) - rig.clock.step_at(1.0) == pytest.approx(4.0)  # 16ths at 60 bpm
    midi = LiveRig(tiny_model_path, mode="harmonize", clock="midi")
    with pytest.raises(BachdError, match="follows the midi clock"):
        midi.performer.change("bpm", 60.0, "panel")


def test_a_new_output_channel_releases_what_sounds_first(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="harmonize")
    rig.run_until(0.2)
    rig.send(0x90, 72, 90)
    rig.wait(0.3)
    assert rig.output.voicer.notes_sounding > 0
    rig.performer.change("out_channel", 10, "panel")
    assert rig.output.voicer.notes_sounding == 0
    assert unmatched_notes(rig.messages()) == {}
    rig.send(0x80, 72, 0)
    rig.send(0x90, 74, 90)
    rig.wait(0.3)
    channels = {m[0] & 0x0F for m in rig.messages()[-4:] if m[0] & 0xF0 == 0x90}
    assert channels == {9}


def test_a_midi_output_that_stops_taking_messages_is_said_once_and_counted(tiny_model_path, capsys, tmp_path):
    """A send that does not return for a second or more (a MIDI system that stalled) is
    reported in one line while it lasts, counted in the stats, and bachd goes on after it."""
    import json
    import threading
    import time
    from pathlib import Path

    from bachd.live.daemon import Daemon, RunOptions
    from bachd.live.launch import load_engine

    class StallingPorts(FakePorts):
        stalled = False

        def send(self, message):
            if not self.stalled and message[0] & 0xF0 == 0x90:
                self.stalled = True
                time.sleep(1.5)  # the first note-on hangs in the MIDI system
            super().send(message)

    settings = LiveSettings(mode="harmonize", bpm=120.0, rng_seed=3)
    stats = tmp_path / "stats.json"
    daemon = Daemon(RunOptions(settings=settings, model_path=Path(tiny_model_path), status=False, stats_path=stats),
                    StallingPorts(), load_engine(tiny_model_path, "numpy"))

    def play():
        time.sleep(0.3)
        daemon.ask(lambda now: daemon.performer.note_on(now, 72, 90))
        time.sleep(2.2)
        daemon.ask(lambda now: daemon.performer.note_off(now, 72))
        time.sleep(0.3)
        daemon.stopping.set()

    player = threading.Thread(target=play)
    player.start()
    assert daemon.serve(on_ready=lambda line: None) == 0
    player.join()
    said = [line for line in capsys.readouterr().err.splitlines() if "has not taken a message" in line]
    assert len(said) == 1 and said[0].startswith("bachd: the MIDI output has not taken a message for 1.")
    figures = json.loads(stats.read_text())
    assert figures["output_stalls"] == 1 and figures["notes_sounding_at_exit"] == 0
    assert unmatched_notes([list(m) for m in daemon.ports.sent]) == {}
