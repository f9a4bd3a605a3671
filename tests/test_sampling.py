import numpy as np

from bachd import encoding as enc
from bachd.sampling import Sampler, SamplingConfig


def test_range_and_hold_constraints_hold_whatever_the_logits():
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=1.0), rng_seed=0)
    logits = np.zeros((64, enc.VOCAB_SIZE))
    logits[:, enc.attack(30)] = 50.0  # far below the alto's range
    logits[:, enc.hold(67)] = 40.0  # a hold of a pitch the voice is not sounding
    previous = np.full(64, enc.attack(65))
    tokens, _ = sampler.sample(logits, voice=1, previous=previous)
    low, high = enc.VOICE_RANGES[1]
    for token in tokens:
        assert token == enc.REST or (enc.is_attack(token) and low <= enc.token_pitch(token) <= high) or token == enc.hold(65)


def test_hold_continues_only_the_sounding_pitch():
    sampler = Sampler(SamplingConfig(), rng_seed=0)
    mask = sampler.allowed(0, np.array([enc.hold(70), enc.REST, enc.attack(72)]))
    assert mask[0, enc.hold(70)] and not mask[0, enc.hold(72)]
    assert not mask[1, enc.hold(70)] and not any(mask[1, enc.hold(p)] for p in range(57, 85))
    assert mask[2, enc.hold(72)]
    assert not mask[:, enc.PAD].any() and not mask[:, enc.BOS].any()


def test_top_p_keeps_only_the_nucleus_and_low_temperature_is_greedy():
    logits = np.full((1, enc.VOCAB_SIZE), -20.0)
    logits[0, enc.attack(72)] = 5.0
    logits[0, enc.attack(74)] = 4.0
    logits[0, enc.attack(76)] = 0.0
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=0.7), rng_seed=3)
    drawn = {int(sampler.sample(logits, 0, np.array([enc.REST]))[0][0]) for _ in range(200)}
    assert drawn == {enc.attack(72)}
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=0.99), rng_seed=3)
    drawn = {int(sampler.sample(logits, 0, np.array([enc.REST]))[0][0]) for _ in range(400)}
    assert drawn == {enc.attack(72), enc.attack(74)}
    cold = Sampler(SamplingConfig(temperature=0.05, top_p=1.0), rng_seed=5)
    assert {int(cold.sample(logits, 0, np.array([enc.REST]))[0][0]) for _ in range(100)} == {enc.attack(72)}


def test_seeded_rng_repeats_and_log_probs_are_model_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, enc.VOCAB_SIZE))
    previous = np.full(4, enc.REST)
    a = Sampler(SamplingConfig(), rng_seed=11).sample(logits, 2, previous)
    b = Sampler(SamplingConfig(), rng_seed=11).sample(logits, 2, previous)
    assert np.array_equal(a[0], b[0])
    expected = logits[np.arange(4), a[0]] - np.log(np.exp(logits).sum(axis=1))
    assert np.allclose(a[1], expected)
