"""Incoming MIDI, from bytes to the performer: the one parser (:mod:`bachd.live.midiparse`), the
channel filter, the transport and the controls.

Pure logic on timestamped bytes: the daemon's input loop only stamps what rtmidi queued
and hands it here. Anything bachd does not use (program changes, pitch bend, SysEx...) is
counted as ignored; anything broken is counted by the parser.
"""

from __future__ import annotations

from collections.abc import Sequence

from bachd.live.midiparse import MidiParser
from bachd.live.modes import mode_for_cc
from bachd.live.performer import Performer
from bachd.midi import (
    ALL_NOTES_OFF,
    ALL_SOUND_OFF,
    CLOCK_TICK,
    CONTINUE,
    CONTROL,
    DRUM_CHANNEL,
    NOTE_OFF,
    NOTE_ON,
    SONG_POSITION,
    START,
    STOP,
    SYSEX,
)
from bachd.settings import SETTINGS

KEEPALIVE = (SYSEX, 0x7D, 0x62, 0x64)  # bachd's own SysEx (7D: non-commercial), see bachd.live.ports


class Router:
    def __init__(self, performer: Performer):
        self.performer = performer
        self.parser = MidiParser()
        self.ignored = 0
        self.played: list[tuple[float, int, int, int]] = []  # (t, channel, note, velocity; 0: off): for the view
        self._cc_roles = {number: role for role, number in performer.settings.cc.items() if number is not None}

    def handle(self, t_seconds: float, data: Sequence[int]) -> None:
        """Bytes received at ``t_seconds`` (one rtmidi message, or any fragment)."""
        if not data:
            return
        for message in self.parser.feed(data):
            self.dispatch(t_seconds, message)

    def dispatch(self, t_seconds: float, message: tuple[int, ...]) -> None:
        status = message[0]
        if status >= 0xF0:
            self._system(t_seconds, message)
            return
        kind, channel = status & 0xF0, status & 0x0F
        if not self.accepts(channel):  # channel 10 (drums) is never a melody unless asked for
            self.ignored += 1
            return
        if kind == NOTE_ON or kind == NOTE_OFF:
            on = kind == NOTE_ON and message[2] > 0
            if on:
                self.performer.note_on(t_seconds, message[1], message[2])
            else:
                self.performer.note_off(t_seconds, message[1])
            self.played.append((t_seconds, channel, message[1], message[2] if on else 0))
            if len(self.played) > 4096:  # nobody is draining it (no view): keep the newest
                del self.played[:2048]
        elif kind == CONTROL:
            self._control(message[1], message[2])
        else:
            self.ignored += 1

    def accepts(self, channel: int) -> bool:
        """Whether bachd listens to this 0-based channel."""
        wanted = self.performer.settings.in_channel  # live: the panel may change it
        if wanted:
            return channel == wanted - 1
        return channel != DRUM_CHANNEL

    def _system(self, t_seconds: float, message: tuple[int, ...]) -> None:
        status = message[0]
        if status == SYSEX:
            if message[:4] != KEEPALIVE:
                self.ignored += 1
            return
        performer = self.performer
        if not performer.clock.follows_midi:
            return  # on the internal clock, the DAW's transport and clock are not ours to follow
        if status == CLOCK_TICK:
            performer.clock.midi_tick(t_seconds)
        elif status == START:
            performer.transport_start(t_seconds)
        elif status == CONTINUE:
            performer.transport_continue(t_seconds)
        elif status == STOP:
            performer.transport_stop(t_seconds)
        elif status == SONG_POSITION:
            performer.song_position(t_seconds, message[1] | message[2] << 7)

    def _control(self, control: int, value: int) -> None:
        if control in (ALL_SOUND_OFF, ALL_NOTES_OFF):
            self.performer.panic()
            return
        role = self._cc_roles.get(control)
        if role == "panic" and value >= 64:
            self.performer.panic()
        elif role == "temperature":
            self.performer.set_temperature(SETTINGS["temperature"].from_cc(value))
        elif role == "response_bars":
            self.performer.set_response_bars(SETTINGS["response_bars"].from_cc(value))
        elif role == "mode":
            self.performer.set_mode(mode_for_cc(value))
        elif role == "end_of_call" and value >= 64:
            self.performer.end_of_call()
