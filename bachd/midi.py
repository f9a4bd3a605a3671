"""The MIDI 1.0 bytes bachd reads and writes, named once."""

from __future__ import annotations

from collections.abc import Sequence

# Channel messages (the high nibble of the status byte; the low one is the channel).
NOTE_OFF, NOTE_ON, POLY_PRESSURE, CONTROL, PROGRAM, CHANNEL_PRESSURE, PITCH_BEND = (
    0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0)
# System messages.
SYSEX, TIME_CODE, SONG_POSITION, SONG_SELECT, TUNE_REQUEST, SYSEX_END = 0xF0, 0xF1, 0xF2, 0xF3, 0xF6, 0xF7
CLOCK_TICK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC
# Controllers with a meaning of their own.
ALL_SOUND_OFF, ALL_NOTES_OFF = 120, 123
DRUM_CHANNEL = 9  # channel 10: General MIDI percussion

# The MIDI systems bachd can open ports on (python-rtmidi's APIs), in the order ``auto`` tries them.
BACKENDS = ("alsa", "jack", "coremidi", "windows")


def is_note_on(message: Sequence[int]) -> bool:
    """A note-on with a velocity (a note-on at velocity 0 is a note-off)."""
    return len(message) >= 3 and message[0] & 0xF0 == NOTE_ON and message[2] > 0


def note(on: bool, channel: int, pitch: int, velocity: int) -> tuple[int, int, int]:
    """A note-on (``on``) or note-off message."""
    return ((NOTE_ON if on else NOTE_OFF) | channel, pitch, velocity)
