"""Offline generation on the streaming engine: read a seed, continue it, K variations at once.

The seed is fed token by token exactly as the live path feeds what a player plays; voices
the seed does not have are completed by the model as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bachd.deadline import check_deadline
from bachd.errors import BachdError
from bachd.model.calibration import Calibration
from bachd.model.sampling import MAX_SILENT_STEPS, NO_REST, ChordClock, Compass, Sampler, root_bias
from bachd.music import encoding
from bachd.music.analysis import cadence
from bachd.music.barlines import draw_opening
from bachd.music.keys import Key, draw_keys, key_of_tokens, opening_masks, voice_biases
from bachd.music.meter import COMMON_TIME, Meter
from bachd.music.midiread import LIMITS


@dataclass
class Seed:
    tokens: np.ndarray  # (T, 4)
    known: np.ndarray  # (T, 4) bool: which tokens come from the seed, not the model
    phase: int = 0  # where step 0 falls within its bar
    name: str = ""
    bar_steps: int | None = None  # the bar the score gives; None: the caller's meter


@dataclass
class Generated:
    tokens: np.ndarray  # (K, T, 4), seed included
    seed_steps: int
    log_prob: np.ndarray  # (K,) mean log-probability per sampled token
    phase: int = 0
    keys: list | None = None  # the key each piece from nothing opened in


def generate(engine, sampler: Sampler, seed: Seed | None, steps: int, key: Key | None = None,
             meter: Meter = COMMON_TIME, calibration: Calibration | None = None) -> Generated:
    """Feed ``seed`` then sample ``steps`` more steps for each of the engine's streams.

    Without a seed, each stream opens on the tonic triad of ``key``, or of a key drawn from
    Bach's own distribution of keys (:mod:`bachd.music.keys`), at a place in the bar drawn from
    where his chorales open (:mod:`bachd.music.barlines`; ``Generated.phase``), and notes outside
    that key's scale are held back by the sampler's ``key_pull`` (the alto's and tenor's by
    ``inner_pull`` of it; a minor key's flat 7th and major 3rd by ``minor_pull``). A model
    with the key input is told that key, or the key of the seed
    (:func:`bachd.music.keys.key_of_tokens`).

    With the model's ``calibration`` (:mod:`bachd.model.calibration`), each voice that moves
    takes ``interval_calibration`` of its table in the pitch draw."""
    batch = engine.batch_size
    keys = opening = None
    if seed is None:
        keys = [key] * batch if key is not None else draw_keys(sampler.rng, batch)
        opening = opening_masks(keys)
    config = sampler.config
    bias = voice_biases(keys, config) if keys is not None else None
    seed_tokens = seed.tokens if seed is not None else np.zeros((0, 4), np.int16)
    known = seed.known if seed is not None else np.zeros((0, 4), bool)
    # From nothing, a piece opens where Bach's do in the bar: mostly on a one-beat pickup.
    bar_steps = seed.bar_steps if seed is not None and seed.bar_steps else encoding.bar_period(meter.steps_per_bar)
    phase = seed.phase if seed is not None else draw_opening(sampler.rng, bar_steps)
    total = seed_tokens.shape[0] + steps
    out = np.zeros((batch, total, encoding.NUM_VOICES), np.int32)
    previous = np.full(batch, encoding.BOS, np.int32)
    last_of_voice = np.full((batch, encoding.NUM_VOICES), encoding.REST, np.int32)
    log_prob = np.zeros(batch)
    sampled = 0
    silent_steps = np.zeros(batch, np.int64)  # all four voices resting, up to the last step
    chords = ChordClock(batch, sampler.config.max_chord_beats)
    compass = Compass(batch, sampler.config.compass_pull)
    strength = sampler.config.interval_calibration
    seed_key = key_of_tokens(seed_tokens) if keys is None and seed_tokens.shape[0] else None
    home = [k[0] for k in keys] if keys is not None else [seed_key[0] if seed_key else None] * batch
    closes = Closes(home, sampler.config.cadence_hold, bar_steps, sampler.config.away_hold)
    engine.reset()
    if keys is not None:
        engine.set_key([encoding.key_row(k) for k in keys])
    elif seed_tokens.shape[0]:
        engine.set_key(encoding.key_row(key_of_tokens(seed_tokens)))
    for step in range(total):
        check_deadline()
        beat = (step + phase) % bar_steps
        for voice in range(encoding.NUM_VOICES):
            logits = engine.step(previous, voice, beat)
            if bias is not None:
                logits = logits + bias[:, voice]
            if step < seed_tokens.shape[0] and known[step, voice]:
                token = np.full(batch, seed_tokens[step, voice], np.int32)
            else:
                before = out[:, step - 1] if step else None
                restrict = opening[voice] if opening is not None and step == 0 else None
                if voice == 0 and np.any(silent_steps >= MAX_SILENT_STEPS):
                    restrict = np.ones((batch, encoding.VOCAB_SIZE), dtype=bool)
                    restrict[silent_steps >= MAX_SILENT_STEPS] = NO_REST
                hold_bias = None
                pitch_bias = compass.bias(voice)
                if calibration is not None:
                    upper = out[:, step, voice - 1] if voice else None
                    lines = calibration.bias(voice, last_of_voice[:, voice], strength, upper)
                    if lines is not None:
                        pitch_bias = lines if pitch_bias is None else pitch_bias + lines
                on_beat = beat % encoding.STEPS_PER_BEAT == 0
                if voice == 0:
                    hold_bias = closes.hold_bias(step)
                if voice == encoding.NUM_VOICES - 1:
                    if sampler.config.root_pull > 0 and on_beat:
                        rooted = root_bias(out[:, step, :voice], sampler.config.root_pull)
                        pitch_bias = rooted if pitch_bias is None else pitch_bias + rooted
                    move = chords.bass_mask(out[:, step, :voice], last_of_voice[:, voice], on_beat, closes.ringing)
                    if move is not None:
                        restrict = move if restrict is None else restrict & move
                token, token_log_prob = sampler.sample(
                    logits, voice, last_of_voice[:, voice], restrict, before=before, above=out[:, step, :voice],
                    pitch_bias=pitch_bias, hold_bias=hold_bias,
                )
                if step >= seed_tokens.shape[0]:
                    log_prob += token_log_prob
                    sampled += 1
            out[:, step, voice] = token
            last_of_voice[:, voice] = token
            previous = token
        silent_steps = np.where((out[:, step] == encoding.REST).all(axis=1), silent_steps + 1, 0)
        chords.advance(out[:, step])
        compass.advance(out[:, step])
        closes.advance(out[:, : step + 1], step, beat)
    return Generated(out, seed_tokens.shape[0], log_prob / max(sampled, 1), phase, keys)


class Closes:
    """Where the soprano lets a cadence ring.

    Bach's phrases end on a long soprano note over a V-I (or IV-I), a fifth of them in the
    piece's own key and more in the keys it passes through. The model writes such closes as
    often as it writes any chord change, but rarely stops on them: its long notes fall
    anywhere. Once the chord struck with a soprano note on a strong beat closes V-I or IV-I
    in root position, the soprano's hold-or-move draw leans toward holding it, up to a half
    note: ``cadence_hold`` nats in the home key, ``away_hold`` in any other. The close
    becomes a phrase end."""

    def __init__(self, home: list, pull: float, bar_steps: int, away: float = 0.0):
        self.home, self.pull, self.bar_steps, self.away = home, pull, bar_steps, away
        batch = len(home)
        self.onset = np.full(batch, -(10**6), np.int64)  # step of the soprano's current note
        self.ringing = np.zeros(batch, bool)  # ... and whether it was struck on a close
        self.weight = np.zeros(batch)  # ... and how strongly that close holds it

    def hold_bias(self, step: int) -> np.ndarray | None:
        if not self.pull and not self.away:
            return None
        held = step - self.onset
        lasting = self.ringing & (held < 2 * encoding.STEPS_PER_BEAT)
        release = ~self.ringing & (held >= encoding.STEPS_PER_BEAT) & (held < 2 * encoding.STEPS_PER_BEAT)
        return np.where(lasting, self.weight, np.where(release, -self.pull * _RELEASE, 0.0))

    def advance(self, tokens: np.ndarray, step: int, beat: int) -> None:
        """Count in step ``step`` of the (batch, step + 1, 4) tokens so far."""
        if not self.pull and not self.away:
            return
        # The soprano's last two steps, one column per stream: where its note was struck now.
        _, attacks = encoding.decode_pitches(tokens[:, max(step - 1, 0) : step + 1, 0].T)
        struck = np.flatnonzero(attacks[-1])
        self.onset[struck] = step
        self.ringing[struck] = False
        if not encoding.strong_beat(beat, self.bar_steps):
            return
        for k in struck:
            if self.home[k] is None:
                continue
            start = max(0, step - 4 * encoding.STEPS_PER_BEAT)
            pitches, _ = encoding.decode_pitches(tokens[k, start : step + 1])
            root = cadence(pitches, step - start)
            self.weight[k] = 0.0 if root is None else self.pull if root == self.home[k] else self.away
            self.ringing[k] = self.weight[k] > 0


_RELEASE = 1 / 3  # of ``cadence_hold``, against holding other soprano notes past a beat


def seed_from_pitches(pitches: np.ndarray, attacks: np.ndarray, phase: int, name: str,
                      bar_steps: int | None = None) -> Seed:
    """A seed from a pitch array; pitches are folded into bachd's range by octaves."""
    pitches = np.asarray(pitches, dtype=np.float64)
    pitches = np.where(np.isnan(pitches), encoding.SILENT, pitches).astype(np.int64)
    sounding = pitches >= 0
    folded = np.vectorize(encoding.fold_pitch)(np.where(sounding, pitches, 60))
    pitches = np.where(sounding, folded, encoding.SILENT)
    tokens = encoding.encode_pitches(pitches, attacks)
    voice_present = sounding.any(axis=0)
    known = np.broadcast_to(voice_present, tokens.shape).copy()
    return Seed(tokens, known, phase, name, bar_steps)


def load_seed(seed_file: str | None, seed_chorale: str | None) -> Seed | None:
    if seed_file and seed_chorale:
        raise BachdError("give --seed-file or --seed-chorale, not both")
    if seed_chorale:
        return _seed_chorale(seed_chorale)
    if not seed_file:
        return None
    path = Path(seed_file)
    if not path.exists():
        raise BachdError(f"seed file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".mid", ".midi"):
        from bachd.music.midifile import read_midi

        pitches, attacks, _ = read_midi(path)
        return seed_from_pitches(pitches, attacks, 0, path.name)
    if suffix in (".musicxml", ".xml", ".mxl"):
        from music21 import converter

        _check_score_file(path, suffix)
        try:
            score = converter.parse(str(path))
        except Exception as exc:  # music21 raises many kinds for a bad file
            raise BachdError(f"seed file {path}: not readable MusicXML ({type(exc).__name__})") from None
        if float(score.highestTime) > LIMITS.beats:
            raise BachdError(f"seed file {path}: longer than {LIMITS.beats:,} beats; bachd reads files of at most "
                             f"{LIMITS.beats:,} beats")
        return _seed_from_score(score, path.name)
    raise BachdError(f"seed file {path}: expected .mid, .midi, .musicxml, .xml or .mxl")


def _check_score_file(path: Path, suffix: str) -> None:
    """A MusicXML seed within the MIDI reader's size limit; a compressed one (.mxl, a zip)
    within eight times that once unpacked, checked before anything is unpacked."""
    import zipfile

    size = path.stat().st_size
    if size > LIMITS.size:
        raise BachdError(f"seed file {path}: {size / 2 ** 20:.1f} MB; bachd reads scores of at most "
                         f"{LIMITS.size // 2 ** 20} MB")
    if suffix == ".mxl":
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(item.file_size for item in archive.infolist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise BachdError(f"seed file {path}: not readable MusicXML ({type(exc).__name__})") from None
        if unpacked > 8 * LIMITS.size:
            raise BachdError(f"seed file {path}: {unpacked / 2 ** 20:.0f} MB unpacked; "
                             f"bachd reads scores of at most {8 * LIMITS.size // 2 ** 20} MB unpacked")


def _seed_chorale(number: str) -> Seed:
    from music21 import corpus

    name = number.strip().lower().removeprefix("bach/").removeprefix("bwv")
    try:
        score = corpus.parse(f"bach/bwv{name}")
    except Exception:  # music21 raises CorpusException and others for unknown names
        raise BachdError(f"no chorale BWV {number} in music21's corpus (try e.g. 269 or 347)") from None
    return _seed_from_score(score, f"bwv{name}")


def _seed_from_score(score, name: str) -> Seed:
    from bachd.music.corpus import parts_to_pitches, score_to_pitches

    result = score_to_pitches(score)
    parts = list(score.parts)
    if isinstance(result, str) and 1 <= len(parts) <= 3:
        # One to three parts: the given voices, top to bottom; the model adds the rest.
        result = parts_to_pitches(score, parts, encoding.VOICE_SLOTS[len(parts)])
    if isinstance(result, str):
        raise BachdError(f"seed {name}: {result}")
    pitches, attacks, phase, bar_steps = result
    return seed_from_pitches(pitches, attacks, phase, name, bar_steps)


def last_bars(seed: Seed, bars: int, meter: Meter) -> Seed:
    """The seed cut to its last ``bars`` bars (whole steps; the phase follows the cut)."""
    keep = meter.bars(bars)
    if keep >= seed.tokens.shape[0]:
        return seed
    cut = seed.tokens.shape[0] - keep
    tokens = seed.tokens[cut:].copy()
    # A note held across the cut must start again: its attack was cut off.
    pitches, attacks = encoding.decode_pitches(tokens)
    tokens = encoding.encode_pitches(pitches, attacks)
    bar_steps = seed.bar_steps or encoding.bar_period(meter.steps_per_bar)
    return Seed(tokens, seed.known[cut:].copy(), (seed.phase + cut) % bar_steps, seed.name, seed.bar_steps)
