"""``bachd generate`` and ``bachd render``: files in, files out, on the same engine and
sampler as the live daemon (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.errors import BachdError
from bachd.model.sampling import Sampler, SamplingConfig
from bachd.music.meter import Meter
from bachd.outputs import MIDI_SUFFIXES, SCORE_SUFFIXES, check_output
from bachd.settings import SEED_BARS


def _sibling(base: Path, index: int, count: int) -> Path:
    """OUT for one file, OUT-k for the k-th of several (as the MIDI files are named)."""
    if count == 1:
        return base
    return base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def generate_file(
    out: Path, model_path: Path, sampling: SamplingConfig = SamplingConfig(), seed_file: Optional[Path] = None,
    seed_chorale: Optional[str] = None, seed_bars: Optional[int] = None, bars: int = 4, bpm: float = 90.0,
    meter: Meter = Meter(), variations: int = 1, pick_best: bool = False, rng_seed: Optional[int] = None,
    include_seed: bool = False, wav: Optional[Path] = None, plot: Optional[Path] = None,
    say: Callable[[str], None] = print, key: Optional[str] = None, soundfont: Optional[str] = None,
    programs: Optional[tuple[int, ...]] = None, analysis: bool = False,
) -> list[Path]:
    """Continue a seed (or start from nothing) and write it as MIDI (and WAV, PNG); returns
    the files written. Every output is checked before the model is loaded."""
    check_output(out, "--out", (*MIDI_SUFFIXES, *SCORE_SUFFIXES))
    score = Path(out).suffix.lower() in SCORE_SUFFIXES
    if score and (wav is not None or plot is not None):
        raise BachdError("--wav and --plot go with a MIDI --out; write the score in a run of its own")
    if analysis and not score:
        raise BachdError("--analysis goes with a MusicXML --out (.musicxml or .mxl)")
    check_output(wav, "--wav", (".wav",))
    check_output(plot, "--plot", (".png",))
    sound = None
    if wav is not None:
        from bachd.sound.soundfont import resolve_sound

        sound = resolve_sound(soundfont)  # a bad --soundfont fails before the model loads
    opening = None
    if key is not None:
        from bachd.music.keys import parse_key

        if seed_file or seed_chorale:
            raise BachdError("--key is for a piece from nothing: a seed brings its own key")
        try:
            opening = parse_key(key)
        except ValueError as exc:
            raise BachdError(str(exc)) from None
    from bachd.files.generation import generate, last_bars, load_seed
    from bachd.model.engine import make_engine
    from bachd.music.keys import key_name
    from bachd.music.midifile import write_midi

    seed = load_seed(str(seed_file) if seed_file else None, seed_chorale)
    if seed is not None:
        seed = last_bars(seed, seed_bars or SEED_BARS, meter)
    from bachd.model.calibration import read_calibration

    engine = make_engine(model_path, batch_size=variations)
    result = generate(engine, Sampler(sampling, rng_seed=rng_seed), seed, meter.bars(bars), key=opening, meter=meter,
                      calibration=read_calibration(model_path))
    first = 0 if include_seed else result.seed_steps
    marker = result.seed_steps if include_seed and result.seed_steps else None
    ranked = np.argsort(-result.log_prob)
    chosen = [int(ranked[0])] if pick_best or variations == 1 else list(range(variations))
    written: list[Path] = []
    for index in chosen:
        path = _sibling(out, index, len(chosen))
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = (result.phase + first) % meter.steps_per_bar
        if path.suffix.lower() in SCORE_SUFFIXES:
            from bachd.music.encoding import decode_pitches, tokens_to_notes
            from bachd.music.score import write_score

            pitches, attacks = decode_pitches(result.tokens[index, first:])
            title = f"After BWV {seed_chorale}" if seed_chorale else "Chorale"
            write_score(
                pitches,
                attacks,
                path,
                offset_steps=offset,
                beats_per_bar=meter.beats_per_bar,
                bpm=bpm,
                title=title,
                analysis=analysis,
            )
            notes = tokens_to_notes(result.tokens[index, first:])
        else:
            notes = write_midi(result.tokens[index, first:], path, bpm=bpm, beats_per_bar=meter.beats_per_bar,
                               marker_step=marker, offset_steps=offset)
        written.append(path)
        best = "  (most likely)" if variations > 1 and index == ranked[0] else ""
        opened = ""
        if result.keys:
            beat = result.phase // meter.steps_per_beat + 1
            opened = f" opening in {key_name(result.keys[index])} on beat {beat}" + (" (a pickup)" if beat > 1 else "")
        say(f"wrote {path}: {len(notes)} notes{opened}, mean log-prob {result.log_prob[index]:.3f}/token{best}")
        wav_path = None if wav is None else _sibling(wav, index, len(chosen))
        png_path = None if plot is None else _sibling(plot, index, len(chosen))
        if wav_path is not None:
            from bachd.sound.soundfont import sound_name

            seconds = render_file(path, wav_path, sound=sound, programs=programs)
            written.append(wav_path)
            say(f"wrote {wav_path}: {seconds:.1f} s of audio with {sound_name(sound)}")
        if png_path is not None:
            from bachd.sound.plots import piano_roll

            # The picture always shows the seed, shaded, so what bachd added stands apart.
            beats = meter.steps_per_beat
            title = (
                f"{path.name}: {result.seed_steps // beats} beats of seed, {meter.bars(bars) // beats} beats by bachd"
            )
            piano_roll(
                result.tokens[index],
                png_path,
                seed_steps=result.seed_steps,
                beats_per_bar=meter.beats_per_bar,
                title=title,
            )
            written.append(png_path)
            say(f"wrote {png_path}")
    return written


def calibrate_file(model_path: Path, corpora: list[str], pieces: int = 128, bars: int = 16, rounds: int = 8,
                   rng_seed: int = 1000, allow_pickle: bool = False, say: Callable[[str], None] = print,
                   sampling: SamplingConfig = SamplingConfig()):
    """Fit ``model_path``'s melodic-interval calibration (:mod:`bachd.model.calibration`) to the
    training split of ``corpora`` at ``sampling`` (the offline defaults), and store it in the
    model file. Returns the calibration."""
    from dataclasses import replace

    from bachd.files.generation import generate
    from bachd.model.calibration import fit, interval_histograms, spacing_histograms, write_calibration
    from bachd.model.engine import make_engine
    from bachd.music.corpus import load_corpora
    from bachd.music.meter import COMMON_TIME

    training = [p.tokens for c in load_corpora(corpora, allow_pickle=allow_pickle) for p in c.split("train")]
    if not training:
        raise BachdError(f"the training split of {', '.join(corpora)} is empty")
    target = interval_histograms(training), spacing_histograms(training)
    engine = make_engine(model_path, batch_size=pieces)
    full = replace(sampling, interval_calibration=1.0)  # the table is fit as it is applied at the default

    def sample(round_: int, calibration) -> list[np.ndarray]:
        result = generate(engine, Sampler(full, rng_seed=rng_seed + round_), None, COMMON_TIME.bars(bars),
                          calibration=calibration)
        return list(result.tokens)

    say(f"matching {model_path.name}'s lines to the intervals of {len(training)} training pieces of "
        f"{', '.join(corpora)}: {pieces} pieces of {bars} bars a round")
    calibration = fit(sample, target, rounds, say)
    calibration = replace(calibration, about={
        **calibration.about, "corpora": corpora, "training_pieces": len(training), "pieces": pieces, "bars": bars,
        "rng_seed": rng_seed,
    })
    write_calibration(model_path, calibration)
    say(f"stored the calibration in {model_path} (generate and eval --music apply it; --interval-calibration 0: off)")
    return calibration


def score_file(midi: Path, out: Path, beats_per_bar: int = 4, staves: int = 2, pickup_steps: int = 0,
               title: Optional[str] = None, analysis: bool = False) -> list[Path]:
    """Any MIDI file (read within the limits, on the 16th grid) as a score: MusicXML
    (``.musicxml``, ``.mxl``), SVG (a file a page, by Verovio) or PDF (by MuseScore); returns
    the files written."""
    import tempfile

    check_output(out, "--out", (*SCORE_SUFFIXES, ".svg", ".pdf"))
    from bachd.music.engrave import require_musescore, svg_pages, write_pdf
    from bachd.music.midifile import grid_of
    from bachd.music.midiread import read_file
    from bachd.music.score import write_score

    suffix = Path(out).suffix.lower()
    if suffix == ".pdf":
        require_musescore()  # refused before any work
    data = read_file(midi)
    pitches, attacks, _ = grid_of(data)
    options = dict(offset_steps=pickup_steps, beats_per_bar=beats_per_bar, staves=staves,
                   bpm=data.first_bpm or 120.0, title=title or Path(midi).stem, analysis=analysis)
    if suffix in SCORE_SUFFIXES:
        return [write_score(pitches, attacks, out, **options)]
    with tempfile.TemporaryDirectory(prefix="bachd-score-") as folder:
        xml = write_score(pitches, attacks, Path(folder) / "score.musicxml", **options)
        if suffix == ".pdf":
            return [write_pdf(xml, Path(out))]
        pages = svg_pages(xml.read_text(encoding="utf-8"))
    written = []
    for index, page in enumerate(pages):
        path = Path(out) if index == 0 else Path(out).with_name(f"{Path(out).stem}-{index + 1}.svg")
        path.write_text(page, encoding="utf-8")
        written.append(path)
    return written


def render_file(midi: Path, wav: Path, sample_rate: int = 48000, sound: Optional[Path] = None,
                programs: Optional[tuple[int, ...]] = None) -> float:
    """Render a MIDI file to a WAV file with ``sound`` (a SoundFont, or None: the organ; see
    :func:`bachd.sound.soundfont.resolve_sound`), a second at a time; returns its length in
    seconds. Within a job's deadline (:mod:`bachd.deadline`), it stops when that passes."""
    check_output(wav, "--out", (".wav",))
    from bachd.deadline import check_deadline
    from bachd.sound.soundfont import DEFAULT_PROGRAMS, make_synth
    from bachd.sound.synth import render_midi_to_wav

    synth = make_synth(sound, sample_rate, programs or DEFAULT_PROGRAMS)
    try:
        return render_midi_to_wav(midi, wav, sample_rate, synth, each_block=check_deadline)
    except BaseException:
        Path(wav).unlink(missing_ok=True)  # never half a file
        raise
