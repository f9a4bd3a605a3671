"""Incoming MIDI, from bytes to the performer: the one parser (:mod:`bachd.live.midiparse`), the
channel filter, the transport and the controls.

Pure logic on timestamped bytes: the daemon's input loop only stamps what rtmidi queued
and hands it here. Anything bachd does not use (program changes, pitch bend, SysEx...) is
counted as ignored; anything broken is counted by the parser.
"""

from __future__ import annotations

from bachd.live.clock import Clock, MidiClock
from bachd.live.midiparse import SYSEX, MidiParser
from bachd.live.performer import Performer
from bachd.presets import LiveSettings
from bachd.settings import SETTINGS

CLOCK_TICK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
NOTE_OFF, NOTE_ON, CONTROL = 0x80, 0x90, 0xB0
ALL_SOUND_OFF, ALL_NOTES_OFF = 120, 123
DRUM_CHANNEL = 9  # channel 10: General MIDI percussion, never a melody unless asked for
KEEPALIVE = (SYSEX, 0x7D, 0x62, 0x64)  # bachd's own SysEx (7D: non-commercial), see bachd.live.ports


class Router:
    def __init__(self, performer: Performer, clock: Clock, settings: LiveSettings):
        self.performer, self.clock, self.settings = performer, clock, settings
        self.parser = MidiParser()
        self.ignored = 0
        self.played: list[tuple[float, int, int, int]] = []  # (t, channel, note, velocity; 0: off): for the view
        self._cc_roles = {number: role for role, number in settings.cc.items() if number is not None}

    def handle(self, t_seconds: float, data) -> None:
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
        if not self.accepts(channel):
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
        if not isinstance(self.clock, MidiClock):
            return  # on the internal clock, the DAW's transport and clock are not ours to follow
        performer = self.performer
        if status == CLOCK_TICK:
            self.clock.clock_tick(t_seconds)
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
            self.performer.set_mode("harmonize" if value >= 64 else "continue")
        elif role == "end_of_call" and value >= 64:
            self.performer.end_of_call()
