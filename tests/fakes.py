"""Test doubles shared by the tests."""

import struct

import mido
import numpy as np

from bachd.model.streaming import StreamingEngine
from bachd.music import encoding as enc


class FakeRestingEngine(StreamingEngine):
    """An engine (any batch size) whose model wants every voice to rest, always; its state
    counts the steps taken, so a snapshot and restore can be told apart."""

    def __init__(self, batch_size: int = 1):
        self.batch_size = batch_size
        self.reset()

    def reset(self):
        self.state = [np.zeros((self.batch_size, 1))]

    def step(self, previous, voice, beat):
        self.state = [self.state[0] + 1]
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -5.0)
        logits[:, enc.REST] = 8.0
        return logits

    def set_key(self, rows):
        self.key = rows

    def spawn(self, batch_size: int):
        """An engine of the same kind for a batch of streams (chords computed ahead)."""
        return type(self)(batch_size)

    def get_state(self):
        return [a.copy() for a in self.state]

    def set_state(self, state):
        self.state = [np.array(a) for a in state]


class FakePorts:
    """MIDI ports that record what is sent and never receive anything."""

    backend, in_label, out_label, dropped, quiet_before = "fake", "in", "out", 0, ()

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)

    def poll(self, limit: int = 512):
        return []

    def keepalive(self, now_seconds: float) -> None:
        pass

    def gone(self, now_seconds: float):
        return None

    def close(self):
        pass


def melody_file(path, pitches, bpm=None, ticks=240, channel=0, extra_tracks=()):
    """A MIDI file of one line of notes ``ticks`` long each (480 to the beat), on
    ``channel``, with a tempo if ``bpm``; ``extra_tracks``: (pitches, channel) pairs."""
    mid = mido.MidiFile(ticks_per_beat=480)
    for index, (notes, on) in enumerate([(pitches, channel), *extra_tracks]):
        track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))] if bpm and not index else [])
        for pitch in notes:
            track += [mido.Message("note_on", channel=on, note=pitch, velocity=80, time=0),
                      mido.Message("note_off", channel=on, note=pitch, time=ticks)]
        mid.tracks.append(track)
    mid.save(path)
    return path


class FakeHoldingEngine(FakeRestingEngine):
    """An engine whose model wants every sounding voice to hold its note, always; a voice
    that may not hold goes to the lowest note it can."""

    def step(self, previous, voice, beat):
        self.state = [self.state[0] + 1]
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -5.0)
        logits[:, enc.hold(enc.PITCH_LOW) :: 2] = 8.0
        logits[:, enc.attack(enc.PITCH_LOW) :: 2] = -8.0 - np.arange(enc.PITCH_HIGH - enc.PITCH_LOW + 1) * 0.01
        return logits


class FakeClimbingEngine(FakeRestingEngine):
    """An engine whose model wants every voice to strike the highest note it can, always."""

    def step(self, previous, voice, beat):
        self.state = [self.state[0] + 1]
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -50.0)
        logits[:, enc.attack(enc.PITCH_LOW) :: 2] = np.arange(enc.PITCH_HIGH - enc.PITCH_LOW + 1) * 6.0
        return logits


class FakeWhiteKeyEngine(FakeRestingEngine):
    """An engine whose model strikes any of C, E, G and A alike, in every voice: chords of
    those notes, a triad in root position now and then."""

    def step(self, previous, voice, beat):
        self.state = [self.state[0] + 1]
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -50.0)
        for pitch in range(enc.PITCH_LOW, enc.PITCH_HIGH + 1):
            if pitch % 12 in (0, 4, 7, 9):
                logits[:, enc.attack(pitch)] = 0.0
        return logits


class FakeOnTheBeatEngine(FakeRestingEngine):
    """An engine whose model strikes C, E, G and B-flat alike on a beat, the notes of C's
    dominant seventh, and between beats any note alike."""

    def step(self, previous, voice, beat):
        self.state = [self.state[0] + 1]
        logits = np.full((self.batch_size, enc.VOCAB_SIZE), -50.0)
        for pitch in range(enc.PITCH_LOW, enc.PITCH_HIGH + 1):
            if beat % enc.STEPS_PER_BEAT or pitch % 12 in (0, 4, 7, 10):
                logits[:, enc.attack(pitch)] = 0.0
        return logits


# --- MIDI files built byte by byte: what mido would refuse to write ---------------------------
def raw_file(division: int, *tracks: bytes) -> bytes:
    """A MIDI file from its raw parts: header (format 1) and track bodies."""
    data = b"MThd" + struct.pack(">LHHH", 6, 1, len(tracks), division)
    for body in tracks:
        data += b"MTrk" + struct.pack(">L", len(body)) + body
    return data


def vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


END = b"\x00\xff\x2f\x00"


def one_note(division: int, length_ticks: int, tempo: int | None = None) -> bytes:
    body = b""
    if tempo is not None:
        body += b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    body += b"\x00\x90\x3c\x40" + vlq(length_ticks) + b"\x80\x3c\x00" + END
    return raw_file(division, body)
