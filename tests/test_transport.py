"""What a DAW does to bachd all day, with a manual clock: the MIDI transport (Start, Stop,
Continue, Song Position Pointer, clock), lost note-offs, panic controls, and reproducible
draws. Every message goes through the router, as from a real port."""

import pytest

from bachd.errors import BachdError
from bachd.music import encoding as enc
from rigs import CONTINUE, SONG_POSITION, START, STOP, LiveRig


def DawRig(model_path, **options) -> LiveRig:
    """A rig on the DAW's MIDI clock."""
    return LiveRig(model_path, **{"clock": "midi", **options})


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
    assert rig.sounding == 0 and len(rig.output.scheduler) == 0  # on the Stop itself, not a later tick
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
    return _answer(rig, call, rig.now)


def _answer(rig, call, started: float):
    """Play ``call`` a quarter second on, end it, and return the answer: its messages with
    their times from ``started``."""
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
    assert used.performer.figures()["answers"] == 2 and used.hanging() == {}


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
    assert rig.sounding == 0 and len(rig.output.scheduler) == 0
    assert rig.performer.state == "listening" and rig.performer.held == {}
    count = len(rig.sent)
    rig.wait(4.0)  # nobody plays: nothing is answered
    assert rig.note_ons(count) == []
    assert rig.performer.stats.starts == 2 and rig.performer.figures()["answers"] == 1
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
    answers = rig.performer.figures()["answers"]
    count = len(rig.sent)
    for pitch in pitches:
        rig.note(pitch, 0.2)
    rig.wait(3.0)
    return rig.performer.figures()["answers"] == answers + 1 and bool(rig.note_ons(count))


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
    assert rig.performer.figures()["answers"] == 0 and rig.performer.held
    rig.wait(1.5)  # past four beats and the half-beat gap
    assert rig.performer.figures()["answers"] == 1 and rig.performer.player.expired == 1
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
    from bachd.live.harmonizer import ATTACKS

    rig = DawRig(tiny_model_path, mode="harmonize", clock="internal")
    stream = rig.performer.stream
    for step, pitch in enumerate([72, 72, 74, 76]):
        stream.feed(step, {0: enc.attack(pitch)})
    before = stream.sampler.rng.bit_generator.state
    job = stream.ahead.compute([enc.attack(p) for p in (76, 77, 74, 79, 72)], ATTACKS)
    assert sum(1 for _ in job) == 3 * 2  # one batch, three voices, a step and a draw each
    job = stream.ahead.compute([enc.attack(p) for p in range(60, 81)], ATTACKS)  # step 4: a weak beat
    assert sum(1 for _ in job) == 6 * 2  # what was left: two batches
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


def test_a_note_off_on_a_step_boundary_never_clicks_the_harmony(tiny_model_path):
    """A melody note released exactly when the next step sounds: the chord already struck
    for that step stays, instead of being struck and cut in the same instant."""
    rig = LiveRig(tiny_model_path, mode="harmonize", clock="internal", rng_seed=7)
    rig.wait(0.25)  # step 2 at 120 bpm
    for pitch in (72, 74, 76, 77, 79, 77, 76, 74):
        rig.note(pitch, 0.25)  # each released exactly on a step boundary, as a DAW quantizes
        rig.wait(0.125)
    rig.wait(1.0)  # the harmony ends within a beat of the melody
    struck = {}
    for t, message in rig.sent:
        key = (message[0] & 0x0F, message[1])
        if message[0] & 0xF0 == 0x90 and message[2]:
            struck[key] = t
        else:
            assert struck.pop(key, None) != t, f"{key} struck and released at {t}"
    assert rig.note_ons() and rig.hanging() == {}


# --- Lost input ---------------------------------------------------------------------------------
def test_after_lost_input_the_next_call_is_answered_exactly_as_the_first_call_after_launch(tiny_model_path):
    settings = dict(mode="continue", response_bars=1, listen_gap=0.5, start_on="beat")
    fresh = DawRig(tiny_model_path, **settings)
    expected = _answer_after_start(fresh, [67, 71, 74])
    assert any(m[0] & 0xF0 == 0x90 for _, m in expected)

    flooded = DawRig(tiny_model_path, **settings)
    flooded.send(START)
    started = flooded.now
    for k in range(300):  # what got through of a flood: note-ons whose note-offs were lost
        flooded.send(0x90 | (k % 2), 40 + (k * 7) % 48, 100)
        flooded.wait(0.005)
    assert flooded.performer.held
    flooded.performer.input_lost()  # the daemon's word: its input queue overflowed
    assert flooded.performer.held == {} and flooded.sounding == 0
    flooded.run_until(started + 4.0)  # two bars on: the call falls where the fresh one did in its bar
    answer = _answer(flooded, [67, 71, 74], started + 4.0)
    assert answer == expected
    assert flooded.performer.stats.input_resets == 1 and flooded.hanging() == {}


def test_a_key_whose_note_off_was_lost_stops_being_the_melody_while_the_player_goes_on(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize", max_hold_beats=4)
    rig.send(START)
    rig.wait(0.2)
    rig.send(0x90, 84, 90)  # a high key whose note-off never comes
    rig.wait(0.3)
    melody = []
    for k in range(10):  # a melody under it, a beat a note at 120 bpm
        pitch = 72 + (k % 3)
        rig.send(0x90, pitch, 90)
        rig.wait(0.2)
        melody.append(enc.token_pitch(int(rig.performer.stream.last[0])) == pitch)  # what bachd harmonizes
        rig.wait(0.2)
        rig.send(0x80, pitch, 0)
        rig.wait(0.1)
    # The stuck key is the melody at first. Four beats (2 s) after its note-on it ends, and
    # from then on the notes played are the melody, although new note-ons never stopped.
    assert melody[:2] == [False, False]
    assert all(melody[5:]), melody
    assert rig.performer.player.expired == 1
    rig.send(STOP)
    assert rig.hanging() == {}


def test_after_a_storm_no_player_makes_the_next_melody_note_is_the_melody_at_once(tiny_model_path):
    rig = DawRig(tiny_model_path, mode="harmonize")
    rig.send(START)
    rig.wait(0.2)
    for k in range(400):  # 400 note-ons in 0.4 s, every tenth note-off lost, many above the melody to come
        pitch = 48 + (k * 17) % 48
        rig.send(0x90, pitch, 90)
        if k % 10:
            rig.send(0x80, pitch, 0)
        rig.wait(0.001)
    assert rig.performer.held and max(n.pitch for n in rig.performer.held.values()) > 74
    rig.wait(0.5)  # the storm is over: a clean slate
    assert rig.performer.held == {} and rig.performer.stats.input_resets == 1
    for pitch in (67, 69, 71, 72):
        rig.send(0x90, pitch, 90)
        rig.wait(0.2)
        assert enc.token_pitch(int(rig.performer.stream.last[0])) == pitch  # harmonized under itself
        rig.wait(0.2)
        rig.send(0x80, pitch, 0)
        rig.wait(0.1)
    assert rig.performer.stats.input_resets == 1  # a player's notes are no storm
    rig.send(STOP)
    assert rig.hanging() == {}


# --- the auto clock -------------------------------------------------------------------------------
def test_the_auto_clock_plays_with_a_keyboard_alone_follows_a_daw_and_takes_over_again(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="harmonize", clock="auto", bpm=90.0, ticks_when_stopped=False)
    # A keyboard alone: every melody note harmonized at once, on bachd's own clock at --bpm.
    assert harmony_channels(rig.note(72, 0.3)) == [1, 2, 3]
    assert rig.clock.bpm == 90.0 and rig.clock.sets_tempo and rig.clock.describe().startswith("90 bpm")
    rig.performer.change("bpm", 100.0, "panel", rig.now)
    # A DAW appears, stopped, sending its clock at 120 bpm: what bachd sounds is released, and it waits.
    rig.send(0x90, 74, 90)
    rig.wait(0.2)
    assert rig.sounding > 0
    rig.ticks_when_stopped, rig.next_tick = True, rig.now
    rig.wait(0.1)
    assert rig.sounding == 0 and not rig.clock.running and rig.clock.describe() == "following MIDI clock"
    rig.send(0x80, 74, 0)
    count = len(rig.sent)
    rig.note(76, 0.3)
    assert rig.note_ons(count) == [] and rig.performer.state == "waiting for Start"
    with pytest.raises(BachdError, match="follows the DAW's MIDI clock"):
        rig.performer.change("bpm", 110.0, "panel", rig.now)
    # The DAW plays: its tempo, its grid, its transport.
    rig.send(START)
    rig.wait(1.0)
    assert rig.clock.bpm == pytest.approx(120, rel=0.02) and rig.performer.state == "harmonizing"
    assert harmony_channels(rig.note(72, 0.3)) == [1, 2, 3]
    # The DAW stops and falls silent: three seconds on, bachd's own clock again, at its own tempo.
    rig.send(STOP)
    rig.ticks_when_stopped = False
    rig.wait(2.0)
    count = len(rig.sent)
    rig.note(72, 0.2)
    assert rig.note_ons(count) == []  # still the DAW's, stopped
    rig.wait(1.5)
    assert rig.clock.running and rig.clock.bpm == 100.0 and rig.clock.sets_tempo
    assert harmony_channels(rig.note(74, 0.3)) == [1, 2, 3]
    rig.wait(1.0)
    assert rig.hanging() == {} and rig.performer.stats.starts == 2 and rig.performer.stats.stops == 2


def test_a_song_position_alone_hands_the_auto_clock_to_the_daw_and_continue_plays_from_there(tiny_model_path):
    # A DAW that sends no clock while stopped: the first bachd hears of it is the playhead moved.
    rig = LiveRig(tiny_model_path, mode="harmonize", clock="auto", ticks_when_stopped=False)
    rig.send(0x90, 72, 90)
    rig.wait(0.2)
    assert rig.sounding > 0 and rig.clock.sets_tempo
    rig.send(SONG_POSITION, 64, 0)  # bar 5
    rig.wait(0.05)
    assert rig.sounding == 0 and not rig.clock.running and rig.clock.describe() == "following MIDI clock"
    rig.send(0x80, 72, 0)
    count = len(rig.sent)
    rig.note(74, 0.2)
    assert rig.note_ons(count) == [] and rig.performer.state == "waiting for Start"  # the DAW's, stopped
    with pytest.raises(BachdError, match="follows the DAW's MIDI clock"):
        rig.performer.change("bpm", 110.0, "panel", rig.now)
    rig.send(CONTINUE)  # from bar 5, on the DAW's clock
    rig.wait(0.5)
    assert rig.clock.running and rig.clock.step_at(rig.now) >= 64
    assert harmony_channels(rig.note(76, 0.3)) == [1, 2, 3]
    rig.wait(1.0)
    assert rig.hanging() == {} and rig.performer.stats.stops == 1


def test_a_daw_start_takes_over_the_auto_clock_at_once_without_a_tick_first(tiny_model_path):
    rig = LiveRig(tiny_model_path, mode="harmonize", clock="auto", ticks_when_stopped=False)
    rig.send(0x90, 72, 90)
    rig.wait(0.2)
    assert rig.sounding > 0
    rig.send(START)  # Start while the internal clock runs: Stop + Start, on the DAW's clock
    assert rig.sounding == 0 and rig.clock.running and not rig.clock.sets_tempo
    rig.send(0x80, 72, 0)
    rig.wait(0.5)
    assert harmony_channels(rig.note(74, 0.2)) == [1, 2, 3]
    rig.wait(1.0)
    assert rig.hanging() == {}
