"""Test doubles shared by the tests."""

import numpy as np

from bachd import encoding as enc


class FakeRestingEngine:
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

    def get_state(self):
        return [a.copy() for a in self.state]

    def set_state(self, state):
        self.state = [np.array(a) for a in state]


class FakePorts:
    """MIDI ports that record what is sent and never receive anything."""

    backend, in_label, out_label, dropped = "fake", "in", "out", 0

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)

    def poll(self, limit: int = 512):
        return []

    def close(self):
        pass
