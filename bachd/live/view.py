"""The terminal view of ``bachd run``: a status line over a small rolling piano roll.

One row per 16th step, newest at the bottom: what the player plays (``in``) and the four
voices bachd sounds. A note name marks an attack, ``|`` a held note, ``.`` silence. Pure
logic: the daemon records events and draws :meth:`LiveView.panel` to the terminal.
"""

from __future__ import annotations

import collections
import math
import threading

from bachd.live.clock import Clock
from bachd.music import encoding

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROWS = 8
KEEP_STEPS = 64


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


class LiveView:
    def __init__(self, clock: Clock, beats_per_bar: int = 4, rows: int = ROWS):
        self.clock, self.beats_per_bar, self.rows = clock, beats_per_bar, rows
        self._lock = threading.Lock()
        self._out: dict[int, list[int]] = {}  # step -> token per voice
        self._in: collections.deque = collections.deque(maxlen=64)  # [pitch, on_step, off_step | None]

    # --- recording (any thread) -------------------------------------------------------------
    def played(self, t_seconds: float, pitch: int, on: bool) -> None:
        if not self.clock.running:
            return
        step = round(self.clock.step_at(t_seconds))
        with self._lock:
            if on:
                self._in.append([pitch, step, None])
                return
            for note in reversed(self._in):
                if note[0] == pitch and note[2] is None:
                    note[2] = max(step, note[1] + 1)
                    break

    def sent(self, t_seconds: float, voice: int, token: int) -> None:
        if not self.clock.running:
            return
        step = round(self.clock.step_at(t_seconds))
        with self._lock:
            row = self._out.get(step)
            if row is None:
                row = self._out[step] = [-1] * encoding.NUM_VOICES  # -1: nothing sent this step
                for old in [s for s in self._out if s < step - KEEP_STEPS]:
                    del self._out[old]
            row[voice] = token

    # --- drawing ------------------------------------------------------------------------------
    def panel(self, now_seconds: float, header: str) -> list[str]:
        """The header line, a column heading and ``rows`` steps ending at the present."""
        lines = [header, f"{'bar.beat.16th':>13s}  {'in':10s} " + " ".join(f"{v[:7]:7s}" for v in encoding.VOICES)]
        if not self.clock.running:
            return lines + [""] * self.rows
        present = math.floor(self.clock.step_at(now_seconds))
        with self._lock:
            tokens = self._voices_through(present)
            for step in range(present - self.rows + 1, present + 1):
                cells = [self._cell(t) for t in tokens.get(step, [encoding.REST] * encoding.NUM_VOICES)]
                lines.append(
                    f"{self._position(step):>13s}  {self._input_cell(step):10s} " + " ".join(f"{c:7s}" for c in cells)
                )
        return lines

    def roll(self, now_seconds: float, steps: int = KEEP_STEPS) -> dict:
        """The same notes as :meth:`panel`, as data for a drawn piano roll: the ``steps``
        steps ending at the present, each note ``[part, pitch, start, end]`` in grid steps
        (part 0: the player, 1-4: soprano..bass; end None: still sounding)."""
        if not self.clock.running:
            return {"present": None, "first": None, "notes": []}
        present = math.floor(self.clock.step_at(now_seconds))
        first = present - steps + 1
        with self._lock:  # copied under the lock, worked out after: the output thread never waits long
            played = [list(note) for note in self._in]
            sent = {step: list(row) for step, row in self._out.items()}
        notes = [
            [0, pitch, max(on, first), off]
            for pitch, on, off in played
            if (off is None or off > first) and on <= present
        ]
        tokens = self._voices_through(present, first, sent)
        sounding: list = [None] * encoding.NUM_VOICES  # the open note per voice
        for step in range(first, present + 1):
            for voice, token in enumerate(tokens[step]):
                note = sounding[voice]
                pitch = encoding.token_pitch(token) if encoding.is_pitch_token(token) else None
                if note is not None and (pitch != note[1] or encoding.is_attack(token)):
                    note[3], sounding[voice] = step, None
                if pitch is not None and sounding[voice] is None:
                    sounding[voice] = [voice + 1, pitch, step, None]
                    notes.append(sounding[voice])
        return {"present": present, "first": first, "notes": notes}

    def _voices_through(self, present: int, first: int | None = None, out: dict | None = None) -> dict[int, list[int]]:
        """Each step's token per voice, carrying a voice's note across steps nothing was sent
        (from ``out``, step -> tokens sent; default the view's own, under its lock)."""
        first = present - self.rows + 1 if first is None else first
        out = self._out if out is None else out
        current = [encoding.REST] * encoding.NUM_VOICES
        for step in sorted(s for s in out if s < first):  # each voice's last word before the window
            current = [current[v] if token < 0 else token for v, token in enumerate(out[step])]
        current = [_continued(t) for t in current]
        rows = {}
        for step in range(first, present + 1):
            sent = out.get(step)
            row = [
                (_continued(current[v]) if sent is None or sent[v] < 0 else sent[v]) for v in range(encoding.NUM_VOICES)
            ]
            rows[step] = current = row
        return rows

    def _input_cell(self, step: int) -> str:
        cells = []
        for pitch, on, off in self._in:
            if on == step:
                cells.append(note_name(pitch))
            elif on < step and (off is None or off > step):
                cells.append("|")
        return " ".join(sorted(set(cells), key=lambda c: c == "|"))[:10] or "."

    @staticmethod
    def _cell(token: int) -> str:
        if encoding.is_attack(token):
            return note_name(encoding.token_pitch(token))
        return "|" if encoding.is_hold(token) else "."

    def _position(self, step: int) -> str:
        per_bar = self.beats_per_bar * encoding.STEPS_PER_BEAT
        bar, within = divmod(step, per_bar)
        beat, sixteenth = divmod(within, encoding.STEPS_PER_BEAT)
        return f"{bar + 1}.{beat + 1}.{sixteenth + 1}"


def _continued(token: int) -> int:
    if token < 0 or not encoding.is_pitch_token(token):
        return encoding.REST
    return encoding.hold(encoding.token_pitch(token))


def redraw(previous_lines: int, lines: list[str]) -> str:
    """ANSI text that replaces the last drawn panel (``previous_lines`` tall) with ``lines``."""
    up = f"\x1b[{previous_lines - 1}F" if previous_lines > 1 else "\r"
    return (up if previous_lines else "") + "\n".join(line + "\x1b[K" for line in lines)
