"""One parser for every MIDI byte bachd hears: bytes in, whole messages out.

A MIDI stream can break anywhere: a controller unplugged mid-SysEx, a cable pulled
mid-message, a buffer that glues several messages together (python-rtmidi's JACK input
appends everything after an unterminated SysEx to it). The parser resynchronises the way
a MIDI 1.0 receiver does:

- any status byte ends whatever message or SysEx was in progress;
- realtime bytes (F8-FF) are taken out wherever they appear, even inside a SysEx or a
  channel message, and delivered at once;
- data bytes with no status before them are dropped, except under running status, which is
  honoured for channel messages;
- a SysEx longer than ``sysex_limit`` bytes is dropped.

Every byte or message it drops is counted in :class:`ParseStats`, never printed. Messages
come out as tuples of ints: ``(status, data...)``; a complete SysEx as ``(0xF0, payload...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bachd.midi import (
    CHANNEL_PRESSURE,
    CONTROL,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    POLY_PRESSURE,
    PROGRAM,
    SONG_POSITION,
    SONG_SELECT,
    SYSEX,
    SYSEX_END,
    TIME_CODE,
    TUNE_REQUEST,
)

SYSEX_LIMIT = 65536
_CHANNEL_DATA = {NOTE_OFF: 2, NOTE_ON: 2, POLY_PRESSURE: 2, CONTROL: 2, PROGRAM: 1, CHANNEL_PRESSURE: 1, PITCH_BEND: 2}
_SYSTEM_DATA = {TIME_CODE: 1, SONG_POSITION: 2, SONG_SELECT: 1, TUNE_REQUEST: 0}  # F4, F5: undefined


@dataclass
class ParseStats:
    messages: int = 0  # whole messages delivered
    dropped_bytes: int = 0  # stray data bytes, undefined status bytes
    dropped_messages: int = 0  # messages cut short by a status byte; SysEx unterminated or too long


class MidiParser:
    def __init__(self, sysex_limit: int = SYSEX_LIMIT):
        self.sysex_limit = sysex_limit
        self.stats = ParseStats()
        self._status = 0  # status of the message in progress (0: none)
        self._running = 0  # running status (channel messages only)
        self._needed = 0
        self._data: list[int] = []
        self._sysex_overflow = False

    def feed(self, data: Iterable[int]) -> list[tuple[int, ...]]:
        """The whole messages completed by ``data`` (any number of bytes, any boundaries)."""
        data = list(data)
        if len(data) == 3 and not self._status and 0x80 <= data[0] < 0xF0 and data[1] < 0x80 and data[2] < 0x80 \
                and _CHANNEL_DATA[data[0] & 0xF0] == 2:
            # The common case, one whole channel message: no byte loop.
            self._running = data[0]
            self.stats.messages += 1
            return [(data[0], data[1], data[2])]
        out: list[tuple[int, ...]] = []
        for byte in data:
            self._byte(byte & 0xFF, out)
        self.stats.messages += len(out)
        return out

    def _byte(self, byte: int, out: list) -> None:
        if byte >= 0xF8:  # realtime: delivered as it comes, never disturbs what is in progress
            if byte in (0xF9, 0xFD):
                self.stats.dropped_bytes += 1
            else:
                out.append((byte,))
            return
        if byte >= 0x80:
            self._status_byte(byte, out)
            return
        if self._status == SYSEX:
            if len(self._data) < self.sysex_limit:
                self._data.append(byte)
            else:
                self._sysex_overflow = True
            return
        if not self._status:
            if not self._running:
                self.stats.dropped_bytes += 1
                return
            self._begin(self._running)  # running status: the data byte starts a new message
        self._data.append(byte)
        if len(self._data) == self._needed:
            out.append((self._status, *self._data))
            self._status = 0
            self._data = []

    def _status_byte(self, byte: int, out: list) -> None:
        if self._status == SYSEX and byte == SYSEX_END:
            if self._sysex_overflow:
                self.stats.dropped_messages += 1
            else:
                out.append((SYSEX, *self._data))
            self._status, self._data, self._sysex_overflow = 0, [], False
            return
        if self._status:  # a message or SysEx in progress, cut short by this status byte
            self.stats.dropped_messages += 1
        self._status, self._data, self._sysex_overflow = 0, [], False
        if byte < 0xF0:
            self._running = byte
            self._begin(byte)
        elif byte == SYSEX:
            self._running = 0
            self._status = SYSEX
        elif byte in _SYSTEM_DATA:
            self._running = 0
            if _SYSTEM_DATA[byte]:
                self._begin(byte)
            else:
                out.append((byte,))
        else:  # F4, F5, or an F7 with no SysEx open
            self._running = 0
            self.stats.dropped_bytes += 1

    def _begin(self, status: int) -> None:
        self._status = status
        self._needed = _CHANNEL_DATA[status & 0xF0] if status < 0xF0 else _SYSTEM_DATA[status]
        self._data = []
