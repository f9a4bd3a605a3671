"""The meter: beats per bar and 16th steps per beat, said in one place.

A beat is a quarter note of four 16th steps (the grid the models are trained on); a bar is
``beats_per_bar`` beats (4 for 4/4, 3 for 3/4). Everything that counts bars or beats in
steps asks a :class:`Meter`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bachd.music.encoding import STEPS_PER_BEAT


@dataclass(frozen=True)
class Meter:
    beats_per_bar: int = 4
    steps_per_beat: int = STEPS_PER_BEAT

    @property
    def steps_per_bar(self) -> int:
        return self.beats_per_bar * self.steps_per_beat

    def bars(self, count: float) -> int:
        """Steps in ``count`` bars."""
        return round(count * self.steps_per_bar)

    def beats(self, count: float) -> float:
        """Steps in ``count`` beats (a fraction where the beats are)."""
        return count * self.steps_per_beat


COMMON_TIME = Meter(4)
