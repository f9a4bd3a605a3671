import numpy as np

from bachd.music import encoding as enc
from bachd.model.sampling import Sampler, SamplingConfig

from fakes import FakeRestingEngine


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


def test_parallels_rule_masks_exactly_the_parallel_attacks():
    from bachd.model.sampling import parallel_mask

    a = enc.attack

    def forbidden(voice, before, above):
        mask = parallel_mask(voice, np.array([before]), np.array([above]))
        return {p for p in range(enc.PITCH_LOW, enc.PITCH_HIGH + 1) if not mask[0, a(p)]}, mask

    # Soprano C5 → D5 over a bass C3 (a compound octave): the bass may not move to any D,
    # rising (parallel octaves) or falling (antiparallel ones).
    banned, mask = forbidden(3, [a(72), enc.REST, enc.REST, a(48)], [a(74), enc.REST, enc.REST])
    assert banned == {26, 38, 50, 62, 74, 86}
    assert mask[0, a(47)] and mask[0, a(48)] and mask[0, enc.hold(48)]  # another note, striking C again, holding
    # Soprano C4 → Bb3 over an alto F3 (a fifth): the alto may not move a fifth (or twelfth)
    # from Bb, to an Eb below it or, crossing above it, an F.
    banned, _ = forbidden(1, [a(60), a(53), enc.REST, enc.REST], [a(58)])
    assert banned == {27, 39, 51, 65, 77, 89}
    # A fourth is not a perfect interval here, and a soprano that holds moves nothing.
    assert forbidden(1, [a(60), a(55), enc.REST, enc.REST], [a(62)])[0] == set()
    assert forbidden(1, [a(60), a(53), enc.REST, enc.REST], [enc.hold(60)])[0] == set()
    # Soprano leaps E5 → A5 over a bass F3 (a tenth): rising, the bass may not reach an A
    # (hidden octaves) or a note a fifth from A5 (hidden fifths: the D a fifth or twelfth
    # below, the E a fifth above); falling to them, or rising to other notes, is fine.
    banned, _ = forbidden(3, [a(76), enc.REST, enc.REST, a(53)], [a(81), enc.REST, enc.REST])
    assert banned == {57, 62, 69, 74, 81, 88, 93}


def test_generation_with_the_parallels_rule_writes_none(tiny_model_path):
    from bachd.music import analysis
    from bachd.model.engine import make_engine
    from bachd.files.generation import generate
    from bachd.model.sampling import Sampler, SamplingConfig

    engine = make_engine(tiny_model_path, batch_size=8)
    counts = {}
    for rule in (False, True):
        sampler = Sampler(SamplingConfig(temperature=1.5, top_p=1.0, allow_parallels=not rule), rng_seed=5)
        pieces = generate(engine, sampler, None, 96).tokens
        counts[rule] = [analysis.piece_counts(p) for p in pieces]
    for kind in ("parallels", "antiparallels", "hidden"):  # similar motion, contrary motion, outer voices
        assert sum(c[kind] for c in counts[False]) > 0 and sum(c[kind] for c in counts[True]) == 0, kind


def test_parallels_rule_matches_the_definition_on_random_batches():
    """Batched streams with every voice above: the mask bans an attack exactly when it
    would make parallel perfect intervals with some upper voice, in similar or contrary
    motion, and for the bass, when it would reach a fifth or octave with a leaping soprano in
    similar motion (hidden fifths and octaves)."""
    from bachd.model.sampling import parallel_mask

    rng = np.random.default_rng(3)
    pitches = list(range(40, 80))
    batch = 64

    def token(pitch):
        return enc.REST if pitch is None else int(rng.choice([enc.attack(pitch), enc.hold(pitch)]))

    def draw():
        return None if rng.random() < 0.1 else int(rng.choice(pitches))

    for voice in (1, 2, 3):
        was = [[draw() for _ in range(4)] for _ in range(batch)]
        now = [[draw() for _ in range(voice)] for _ in range(batch)]
        before = np.array([[token(p) for p in row] for row in was])
        above = np.array([[token(p) for p in row] for row in now])
        mask = parallel_mask(voice, before, above)
        for row in range(batch):
            mine = was[row][voice]
            for target in range(enc.PITCH_LOW, enc.PITCH_HIGH + 1):
                parallel = mine is not None and any(
                    was[row][u] is not None and now[row][u] is not None and now[row][u] != was[row][u]
                    and abs(was[row][u] - mine) % 12 in (0, 7)
                    and abs(now[row][u] - target) % 12 == abs(was[row][u] - mine) % 12
                    and target != mine
                    for u in range(voice)
                )
                s_was, s_now = was[row][0], now[row][0]
                hidden = voice == 3 and None not in (mine, s_was, s_now) and abs(s_now - s_was) > 2 and (
                    np.sign(target - mine) == np.sign(s_now - s_was)
                    and abs(s_now - target) % 12 in (0, 7) and abs(s_was - mine) % 12 != abs(s_now - target) % 12
                )
                assert mask[row, enc.attack(target)] == (not (parallel or hidden)), (voice, row, target)
            assert mask[row, enc.REST] and mask[row, enc.hold(enc.PITCH_LOW)]
        for row in range(0, batch, 7):  # one stream at a time takes the live path's lookup
            single = parallel_mask(voice, before[row : row + 1], above[row : row + 1])
            assert np.array_equal(single[0], mask[row]), (voice, row)


def _hold_frequency(config: SamplingConfig, logits: np.ndarray, streams: int) -> tuple[float, set]:
    """Share of draws that hold, and the set of tokens drawn, for a soprano sounding 72."""
    sampler = Sampler(config, rng_seed=21)
    if streams == 1:
        drawn = [int(sampler.sample(logits[None], 0, np.array([enc.attack(72)]))[0][0]) for _ in range(4000)]
    else:
        drawn = sampler.sample(np.repeat(logits[None], streams, 0), 0, np.full(streams, enc.attack(72)))[0].tolist()
    return float(np.mean([t == enc.hold(72) for t in drawn])), set(drawn)


def test_holding_is_drawn_at_the_models_odds_whatever_the_pitch_temperature():
    # The model: hold 72 with probability 0.6; the other 0.4 spread over five new notes.
    # One joint draw at temperature 0.5 and top-p 0.9 would hold almost always (and drop
    # the unlikely notes); bachd keeps holding at 0.6 and sharpens only the choice of note.
    probs = {enc.hold(72): 0.6, enc.attack(74): 0.2, enc.attack(71): 0.1,
             enc.attack(69): 0.05, enc.attack(76): 0.03, enc.attack(67): 0.02}
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    for token, p in probs.items():
        logits[token] = np.log(p)
    for streams in (1, 4000):
        held, drawn = _hold_frequency(SamplingConfig(temperature=0.5, top_p=0.9, rhythm_temperature=1.0, allow_parallels=True), logits, streams)
        assert abs(held - 0.6) < 0.03, (streams, held)
        assert drawn <= {enc.hold(72), enc.attack(74), enc.attack(71)}, streams  # the nucleus of the new notes
        assert enc.attack(74) in drawn
        hot, _ = _hold_frequency(SamplingConfig(temperature=1.0, top_p=1.0, rhythm_temperature=2.0), logits, streams)
        cold, _ = _hold_frequency(SamplingConfig(temperature=1.0, top_p=1.0, rhythm_temperature=0.5), logits, streams)
        # p**(1/t) / (p**(1/t) + (1-p)**(1/t)) for p = 0.6
        assert abs(hot - 0.5505) < 0.03 and abs(cold - 0.6923) < 0.03, (streams, hot, cold)


def test_a_forced_hold_still_holds_and_a_rest_cannot_hold():
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    logits[enc.hold(72)] = 0.0
    logits[enc.attack(74)] = 0.0
    only_hold = np.zeros(enc.VOCAB_SIZE, bool)
    only_hold[enc.hold(72)] = True  # e.g. a live "no new note" restriction that keeps the hold
    for streams in (1, 64):
        sampler = Sampler(SamplingConfig(temperature=0.3), rng_seed=2)
        tokens, _ = sampler.sample(np.repeat(logits[None], streams, 0), 0, np.full(streams, enc.attack(72)), restrict=only_hold)
        assert set(tokens.tolist()) == {enc.hold(72)}
        tokens, _ = sampler.sample(np.repeat(logits[None], streams, 0), 0, np.full(streams, enc.REST))
        assert set(tokens.tolist()) == {enc.attack(74)}


def test_striking_the_same_pitch_again_is_part_of_the_rhythm_draw():
    # Hold 0.3, strike 72 again 0.3, move 0.4. A cold pitch draw would otherwise pick the
    # re-strike (the likeliest "new" token) nearly every time the voice does not hold, and
    # the chord would stand still; bachd keeps the model's 0.3 / 0.3 / 0.4.
    probs = {enc.hold(72): 0.3, enc.attack(72): 0.3, enc.attack(74): 0.25, enc.attack(71): 0.15}
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    for token, p in probs.items():
        logits[token] = np.log(p)
    config = SamplingConfig(temperature=0.3, top_p=0.95, rhythm_temperature=1.0, allow_parallels=True)
    for streams in (1, 4000):
        sampler = Sampler(config, rng_seed=8)
        if streams == 1:
            drawn = np.array([sampler.sample(logits[None], 0, np.array([enc.attack(72)]))[0][0] for _ in range(4000)])
        else:
            drawn = sampler.sample(np.repeat(logits[None], streams, 0), 0, np.full(streams, enc.attack(72)))[0]
        shares = {token: float(np.mean(drawn == token)) for token in probs}
        assert abs(shares[enc.hold(72)] - 0.3) < 0.03 and abs(shares[enc.attack(72)] - 0.3) < 0.03, (streams, shares)
        # Among moves, temperature 0.3 sharpens 0.25 : 0.15 to about 0.85 : 0.15.
        assert shares[enc.attack(74)] > 3 * shares[enc.attack(71)] > 0, (streams, shares)


def test_generation_never_rests_all_voices_for_more_than_two_beats():
    from bachd.files.generation import MAX_SILENT_STEPS, Seed, generate

    seed_tokens = np.full((4, 4), enc.REST, np.int16)  # a seed that ends in a beat of silence
    seed = Seed(seed_tokens, np.ones((4, 4), bool))
    result = generate(FakeRestingEngine(8), Sampler(SamplingConfig(temperature=1.0), rng_seed=4), seed, 64)
    pitches, _ = enc.decode_pitches(result.tokens[0])
    silent = (pitches == enc.SILENT).all(axis=1)
    runs, run = [], 0
    for is_silent in silent:
        run = run + 1 if is_silent else 0
        runs.append(run)
    assert max(runs) == MAX_SILENT_STEPS == 8  # the model rests as long as it may...
    assert not silent[MAX_SILENT_STEPS]  # ...then the soprano comes in,
    assert silent[MAX_SILENT_STEPS + 1 :].sum() > 20  # and the model may rest again later
    assert (result.tokens[:, MAX_SILENT_STEPS, 0] != enc.REST).all()  # in every stream


def test_with_only_hold_and_re_strike_allowed_both_keep_their_odds():
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    logits[enc.hold(72)], logits[enc.attack(72)], logits[enc.attack(74)] = np.log(0.7), np.log(0.3), 0.0
    stay = np.zeros(enc.VOCAB_SIZE, bool)
    stay[[enc.hold(72), enc.attack(72)]] = True
    sampler = Sampler(SamplingConfig(temperature=0.2, rhythm_temperature=1.0), rng_seed=6)
    batched = sampler.sample(np.repeat(logits[None], 4000, 0), 0, np.full(4000, enc.attack(72)), restrict=stay)[0]
    single = [sampler.sample(logits[None], 0, np.array([enc.attack(72)]), restrict=stay)[0][0] for _ in range(4000)]
    for drawn in (batched, np.array(single)):
        assert set(drawn.tolist()) == {enc.hold(72), enc.attack(72)}
        assert abs(np.mean(drawn == enc.hold(72)) - 0.7) < 0.03


def test_root_bias_pulls_the_bass_to_the_root_of_the_chord_above():
    from bachd.model.sampling import root_bias

    def roots(*upper):
        bias = root_bias(np.array([upper]), 1.5)[0]
        pulled = np.flatnonzero(bias)
        assert set(bias[pulled].tolist()) <= {1.5} and all(enc.is_attack(int(t)) for t in pulled)
        return sorted({enc.token_pitch(int(t)) % 12 for t in pulled})

    assert roots(enc.attack(76), enc.hold(67), enc.attack(60)) == [0]  # E G C: C major
    assert roots(enc.attack(74), enc.attack(65), enc.attack(59)) == [7]  # D F B: G7 without its root
    assert roots(enc.attack(76), enc.attack(72), enc.hold(64)) == [0, 9]  # C E: C major or A minor
    assert roots(enc.attack(72), enc.attack(66), enc.attack(63)) == [8]  # C Gb Eb: Ab7 without its root
    assert roots(enc.attack(74), enc.attack(61), enc.attack(60)) == []  # D C# C: no chord
    assert roots(enc.attack(72), enc.attack(60), enc.REST) == []  # one pitch class names no chord
    assert not root_bias(np.array([[enc.REST] * 3]), 1.0).any()


def test_the_pitch_bias_moves_where_a_voice_goes_not_whether_it_moves():
    # The bass holds 48 at 0.5; moves 0.5, mostly to 50. A bias toward 43 takes the moves there and leaves
    # the holds exactly where the same random draws put them without it.
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    logits[enc.hold(48)], logits[enc.attack(50)], logits[enc.attack(43)] = np.log(0.5), np.log(0.45), np.log(0.05)
    bias = np.zeros(enc.VOCAB_SIZE)
    bias[enc.attack(43)] = 6.0
    config = SamplingConfig(temperature=1.0, top_p=1.0, rhythm_temperature=1.0, allow_parallels=True)
    for streams in (1, 4000):
        drawn = {}
        for pulled in (None, bias):
            sampler = Sampler(config, rng_seed=3)
            if streams == 1:
                drawn[pulled is None] = np.array([sampler.sample(logits[None], 3, np.array([enc.attack(48)]), pitch_bias=pulled)[0][0] for _ in range(3000)])
            else:
                batch_bias = None if pulled is None else np.repeat(pulled[None], streams, 0)
                drawn[pulled is None] = sampler.sample(np.repeat(logits[None], streams, 0), 3, np.full(streams, enc.attack(48)), pitch_bias=batch_bias)[0]
        free, biased = drawn[True], drawn[False]
        assert streams == 1 or np.array_equal(free == enc.hold(48), biased == enc.hold(48))  # one batched rhythm draw
        assert abs(np.mean(biased == enc.hold(48)) - 0.5) < 0.04, streams
        moved = biased[biased != enc.hold(48)]
        assert np.mean(moved == enc.attack(43)) > 0.9 and np.mean(free[free != enc.hold(48)] == enc.attack(43)) < 0.2, streams


def test_generation_with_the_root_pull_puts_more_bass_notes_on_the_root(tiny_model_path):
    from bachd.music import analysis
    from bachd.model.engine import make_engine
    from bachd.files.generation import generate

    engine = make_engine(tiny_model_path, batch_size=16)
    shares = {}
    for pull in (0.0, 4.0):
        sampler = Sampler(SamplingConfig(temperature=1.0, top_p=1.0, root_pull=pull), rng_seed=4)
        pieces = generate(engine, sampler, None, 128).tokens
        counts = [analysis.root_positions(*enc.decode_pitches(p)) for p in pieces]
        triads, rooted = (sum(c[i] for c in counts) for i in (0, 1))
        shares[pull] = rooted / max(triads, 1)
    assert shares[4.0] > shares[0.0] + 0.15, shares


def test_a_chord_stands_no_longer_than_max_chord_beats_then_the_bass_moves():
    from fakes import FakeHoldingEngine

    from bachd.music import analysis
    from bachd.files.generation import Seed, generate

    chord = [enc.attack(p) for p in (72, 67, 64, 48)]  # C major, root position
    seed = Seed(np.array([chord], np.int16), np.ones((1, 4), bool))
    longest = {}
    for beats in (0.0, 2.0):
        config = SamplingConfig(temperature=1.0, top_p=1.0, max_chord_beats=beats, cadence_hold=0.0, key_pull=0.0,
                                compass_pull=0.0)
        pieces = generate(FakeHoldingEngine(4), Sampler(config, rng_seed=1), seed, 63).tokens
        longest[beats] = max(analysis._longest_run(enc.decode_pitches(p)[0]) for p in pieces)
        if beats:
            pitches = enc.decode_pitches(pieces[0])[0]
            assert (pitches[:, :3] == [72, 67, 64]).all()  # the upper voices hold throughout...
            assert len(set(pitches[:, 3])) > 3  # ...and the bass moves every two beats
    assert longest[0.0] == 64  # the model alone never lets go
    assert longest[2.0] <= 2 * enc.STEPS_PER_BEAT + enc.STEPS_PER_BEAT - 1, longest


def test_the_hold_bias_shifts_the_odds_of_holding_in_both_paths():
    logits = np.full(enc.VOCAB_SIZE, -30.0)
    logits[enc.hold(72)], logits[enc.attack(74)] = np.log(0.5), np.log(0.5)
    config = SamplingConfig(temperature=1.0, top_p=1.0, rhythm_temperature=1.0, allow_parallels=True)
    for nats, share in ((np.log(3.0), 0.75), (-np.log(3.0), 0.25)):
        single = Sampler(config, rng_seed=2)
        one = [single.sample(logits[None], 0, np.array([enc.attack(72)]), hold_bias=np.array([nats]))[0][0] for _ in range(3000)]
        many = Sampler(config, rng_seed=2).sample(np.repeat(logits[None], 4000, 0), 0, np.full(4000, enc.attack(72)),
                                                  hold_bias=np.full(4000, nats))[0]
        for drawn in (np.array(one), many):
            assert abs(np.mean(drawn == enc.hold(72)) - share) < 0.03, (nats, np.mean(drawn == enc.hold(72)))


def test_a_home_close_on_a_strong_beat_leans_the_soprano_to_hold_it():
    from bachd.files.generation import Closes

    g7 = [enc.attack(p) for p in (71, 67, 62, 43)]  # G: V in C
    c = [enc.attack(p) for p in (72, 67, 64, 48)]  # C: I, root position
    tokens = np.array([[g7] * 8 + [c]] * 2, np.int32)  # (2 streams, 9 steps, 4)
    closes = Closes([0, 7], pull=3.0, bar_steps=16)  # homes: C, and G (where this is no home close)
    for step in range(9):
        closes.advance(tokens[:, : step + 1], step, beat=step % 16)
    # Stream 0 struck C on beat 1 of the bar (step 8): it leans to hold up to a half note.
    assert closes.hold_bias(9)[0] == 3.0 and closes.hold_bias(15)[0] == 3.0 and closes.hold_bias(16)[0] == 0.0
    # Stream 1 is in G: the same chord is no close of its home; past a beat the note leans to move.
    assert closes.hold_bias(9)[1] == 0.0 and closes.hold_bias(12)[1] == -1.0
    off = Closes([0], pull=3.0, bar_steps=16)
    for step in range(9):
        off.advance(tokens[:1, : step + 1], step, beat=(step + 4) % 16)  # the close lands on beat 2
    assert off.hold_bias(9)[0] == 0.0
    # With away_hold, a close in another key than the piece's rings too, as strongly as asked.
    away = Closes([0, 7], pull=3.0, bar_steps=16, away=1.0)
    for step in range(9):
        away.advance(tokens[:, : step + 1], step, beat=step % 16)
    assert away.hold_bias(9).tolist() == [3.0, 1.0] and away.hold_bias(16).tolist() == [0.0, 0.0]
    # ... and on its own, with the home-key hold off.
    alone = Closes([7], pull=0.0, bar_steps=16, away=1.0)
    for step in range(9):
        alone.advance(tokens[1:, : step + 1], step, beat=step % 16)
    assert alone.hold_bias(9).tolist() == [1.0]
