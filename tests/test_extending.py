"""bachd grows by registries: a new live mode, clock or streaming engine is a class and one
registry line (bachd.registry). A toy of each, added through the registries alone, plays
through the simulated session exactly as the shipped ones do, and the settings, the mode CC
and the figures take them in."""

from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np
import pytest

from bachd.errors import BachdError
from bachd.live.clock import Clock, seconds_per_step
from bachd.live.modes import ModeHost, mode_for_cc
from bachd.live.player import PlayedNote
from bachd.live.scheduler import Frame
from bachd.live.session import Session
from bachd.model.engine import make_engine
from bachd.model.streaming import StreamingEngine
from bachd.music import encoding as enc
from bachd.presets import LiveSettings
from bachd.registry import CLOCKS, ENGINES, MODES
from bachd.settings import check

LOWER = {1: 64, 2: 57, 3: 48}  # what the toy model sings under any melody: E4, A3, C3


class ToyEngine(StreamingEngine):
    """A model that always wants its alto, tenor and bass on LOWER, struck."""

    backend = "toy"
    architectures = ("toy",)

    @classmethod
    def load(cls, model: object, batch_size: int = 1) -> ToyEngine:
        return cls(batch_size)

    def __init__(self, batch_size: int = 1):
        self.batch_size = batch_size
        self.steps = 0

    def spawn(self, batch_size: int) -> ToyEngine:
        return ToyEngine(batch_size)

    def step(self, tokens: object, voice: int, beat: int) -> np.ndarray:
        self.steps += 1
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -20.0)
        logits[:, enc.attack(LOWER[voice]) if voice in LOWER else enc.REST] = 20.0
        return logits

    def set_key(self, rows: object) -> None:
        pass

    def reset(self) -> None:
        self.steps = 0

    def get_state(self) -> list[np.ndarray]:
        return [np.array([self.steps])]

    def set_state(self, state: list[np.ndarray]) -> None:
        self.steps = int(state[0][0])


class CountInClock(Clock):
    """A clock with a driver of its own, at a fixed 120 bpm: stopped until its driver starts
    it at 0.5 s, the way a network session starts playing."""

    name = "count-in"
    starts_at = 0.5

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> CountInClock:
        return cls()

    def __init__(self) -> None:
        self.running = False
        self.origin = 0.0

    @property
    def bpm(self) -> float:
        return 120.0

    def step_time(self, step: float) -> float:
        return self.origin + step * seconds_per_step(120.0)

    def step_at(self, t_seconds: float) -> float:
        return (t_seconds - self.origin) / seconds_per_step(120.0)

    def start(self, t_seconds: float) -> None:
        self.running, self.origin = True, t_seconds

    def stop(self, t_seconds: float) -> None:
        self.running = False

    def poll(self, now_seconds: float) -> Optional[tuple]:
        return ("start", now_seconds) if not self.running and now_seconds >= self.starts_at else None


class EchoMode:
    """Under each melody note, a beat later, the chord the model sings under it, held a beat."""

    name = "echo"
    figures = ("echoes",)
    activity = "echoing"
    player_part, done, melody_only = "Melody", "echoed", True

    @classmethod
    def beats_after(cls, settings: LiveSettings) -> float:
        return 2.0  # the last echo, a beat late and a beat long

    @classmethod
    def summary(cls, notes_in: int, figures: dict[str, int], notes_out: int) -> str:
        return f"{figures['echoes']} of {notes_in} notes echoed"

    def __init__(self, host: ModeHost, counts: Counter[str]):
        self.host, self.counts = host, counts
        self.reset()

    def reset(self) -> None:
        self.pending: list[int] = []

    def note_on(self, t_seconds: float, step: int, velocity: int) -> None:
        self.pending.append(step)

    def note_off(self, t_seconds: float, note: PlayedNote) -> None:
        pass

    def end_of_call(self) -> None:
        pass

    def panic(self) -> None:
        self.pending.clear()

    def update(self, now_seconds: float) -> None:
        host = self.host
        while self.pending:
            step = self.pending.pop(0)
            known = host.player.known(step, host.stream.last, voices=1)
            tokens = host.stream.feed(step, known)  # the toy engine, through the shared stream
            due = host.clock.step_time(step + enc.STEPS_PER_BEAT)
            host.out.schedule(due, [Frame(v, int(tokens[v]), 70) for v in LOWER], f"echo{step}")
            rests = [Frame(v, enc.REST) for v in LOWER]
            host.out.schedule(host.clock.step_time(step + 2 * enc.STEPS_PER_BEAT), rests, f"end{step}")
            self.counts["echoes"] += 1

    def background(self, now_seconds: float) -> bool:
        return False

    def next_wakeup(self, now_seconds: float) -> Optional[float]:
        return now_seconds if self.pending else None

    def horizon(self) -> int:
        return 0


@pytest.fixture
def toys():
    MODES.register("echo", EchoMode)
    CLOCKS.register("count-in", CountInClock)
    ENGINES.register("toy", ToyEngine)
    try:
        yield
    finally:
        MODES.unregister("echo")
        CLOCKS.unregister("count-in")
        ENGINES.unregister("toy")


def test_a_toy_mode_clock_and_engine_play_through_the_session_by_their_registry_lines_alone(toys):
    settings = LiveSettings(mode=check("mode", "echo"), clock=check("clock", "count-in"), rng_seed=0)
    engine = make_engine("any model", backend="toy")
    session = Session(engine, settings)
    assert session.performer.state == "stopped" and session.clock.name == "count-in"

    def note(pitch: int) -> None:
        session.send(0x90, pitch, 90)
        session.run_until(session.now + 0.2)
        session.send(0x80, pitch, 0)

    note(72)  # before the clock's driver starts it: nothing is heard
    session.run_until(0.6)
    assert session.clock.running and session.performer.state == "echoing"
    for pitch in (72, 74):
        note(pitch)
        session.run_until(session.now + 0.6)
    session.finish()
    ons = [(t, m) for t, m in session.sent if m[0] & 0xF0 == 0x90 and m[2] > 0]
    assert sorted({m[1] for _, m in ons}) == sorted(LOWER.values())  # the toy model's chord, struck
    assert len(ons) == 2 * len(LOWER) and min(t for t, _ in ons) > 0.6
    assert session.performer.figures()["echoes"] == 2 and session.performer.stats.notes_in == 2
    assert session.performer.figures()["answers"] == 0  # the shipped modes' figures are there too
    assert session.output.voicer.notes_sounding == 0


def test_a_toy_mode_plays_a_file_as_the_file_commands_do(toys, tmp_path):
    from fakes import melody_file

    from bachd.files.replay import perform, read_line

    played = read_line(melody_file(tmp_path / "tune.mid", [72, 74, 76, 77], bpm=120), top_line=True)
    session = perform(ToyEngine(), LiveSettings(mode="echo", clock="internal", bpm=120.0), played)
    assert session.performer.figures()["echoes"] == 4 and session.output.voicer.notes_sounding == 0
    ons = [m for _, m in session.sent if m[0] & 0xF0 == 0x90 and m[2] > 0]
    assert len(ons) == 4 * len(LOWER) and max(t for t, _ in session.sent) > played.seconds  # the last echo, after


def test_the_registries_feed_the_settings_and_the_mode_cc(toys):
    assert check("mode", "echo") == "echo"
    assert [mode_for_cc(value) for value in (0, 42, 43, 85, 86, 127)] == [
        "continue", "continue", "harmonize", "harmonize", "echo", "echo"]
    MODES.unregister("echo")
    with pytest.raises(BachdError, match="must be one of continue, harmonize"):
        check("mode", "echo")
    assert [mode_for_cc(value) for value in (0, 63, 64, 127)] == ["continue", "continue", "harmonize", "harmonize"]
    with pytest.raises(BachdError, match=r"the numpy engine steps lstm models, not this toy model"):
        ENGINES["numpy"].check_architecture("toy")


def test_the_tempo_refusal_comes_from_the_clock(toys):
    session = Session(ToyEngine(), LiveSettings(mode="continue", clock="count-in"))
    with pytest.raises(BachdError, match="panel: the tempo follows the count-in clock; change it there"):
        session.performer.change("bpm", 100.0, "panel")
