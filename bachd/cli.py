"""The ``bachd`` command line. Each command is a thin wrapper over an importable function.

Only the standard library and typer are imported at the top, so ``bachd --help`` is
instant; TensorFlow is imported inside the commands that need it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from bachd import __version__
from bachd.errors import BachdError
from bachd.outputs import check_output

app = typer.Typer(
    name="bachd",
    help="Real-time Bach chorale generator: play live on virtual MIDI ports, train, evaluate and generate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



SEED_BARS = 16  # of a long seed file, only the last bars are fed to the engine


class Distribute(str, Enum):
    none = "none"
    mirrored = "mirrored"
    multiworker = "multiworker"


class Split(str, Enum):
    train = "train"
    valid = "valid"
    test = "test"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bachd {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what bachd is doing.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def default_model_path() -> Path:
    from bachd.paths import DEFAULT_MODEL

    return DEFAULT_MODEL


@app.command("train")
def train_cli(
    corpus: Annotated[list[str], typer.Option("--corpus", "-c", help="'bach' (music21's chorales), a JSB .json/.npz, a JS Fake Chorales .npz, or a folder of MIDI files. Repeatable.")] = ["bach"],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the .keras model (card and curves go beside it).")] = Path("bachd-model.keras"),
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs (early stopping may end sooner).")] = 60,
    lstm_units: Annotated[int, typer.Option(min=8, max=4096, help="Width of each LSTM layer.")] = 320,
    lstm_layers: Annotated[int, typer.Option(min=1, max=8, help="Number of stacked LSTM layers.")] = 2,
    embed_dim: Annotated[int, typer.Option(min=4, max=2048, help="Embedding width.")] = 128,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout rate.")] = 0.3,
    voice_input: Annotated[bool, typer.Option("--voice-input/--no-voice-input", help="Tell the model which voice each token is for.")] = True,
    beat_input: Annotated[bool, typer.Option("--beat-input/--no-beat-input", help="Tell the model each token's 16th position within the beat.")] = True,
    attention_steps: Annotated[int, typer.Option(min=0, max=256, help="Add causal attention over the last K 16th steps after the LSTM (0: none).")] = 0,
    attention_heads: Annotated[int, typer.Option(min=1, max=64, help="Attention heads.")] = 4,
    attention_key_dim: Annotated[int, typer.Option(min=4, max=1024, help="Width of each attention head.")] = 32,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help="Label smoothing of the training loss (0: plain NLL).")] = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Windows per batch (per device).")] = 32,
    window_steps: Annotated[int, typer.Option(min=4, max=4096, help="16th steps per training window (4 tokens each).")] = 128,
    passes: Annotated[float, typer.Option(min=0.1, max=100.0, help="Crops per epoch, in passes over the training steps.")] = 4.0,
    transpose: Annotated[int, typer.Option(min=0, max=12, help="Random transposition range in semitones, each way.")] = 6,
    learning_rate: Annotated[float, typer.Option(min=1e-6, max=1.0, help="Peak learning rate (cosine schedule with warm-up).")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, max=1.0, help="AdamW weight decay.")] = 0.01,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without improvement before stopping early.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed for weights and data order.")] = 1729,
    max_minutes: Annotated[Optional[float], typer.Option(min=0.1, help="Stop after this much training time (across resumes).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same --out.")] = False,
    distribute: Annotated[Distribute, typer.Option(help="none, mirrored (all local devices) or multiworker (TF_CONFIG).")] = Distribute.none,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow .npz corpora that need pickle (runs code from the file: trusted files only).")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, max=256, help="CPU threads for TensorFlow (default: all cores).")] = None,
) -> None:
    """Train a model on chorale corpora; writes the .keras model, its card and training curves."""
    with _errors():
        from bachd.data import WindowConfig
        from bachd.model import ModelConfig
        from bachd.training import TrainConfig, train

        config = TrainConfig(
            corpora=list(corpus), out=str(out), epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, patience=patience, seed=seed,
            window=WindowConfig(window_steps=window_steps, transpose=transpose, passes=passes),
            distribute=distribute.value, max_minutes=max_minutes, allow_pickle=allow_pickle,
            label_smoothing=label_smoothing, threads=threads,
        )
        model_config = ModelConfig(
            embed_dim=embed_dim, lstm_units=lstm_units, lstm_layers=lstm_layers, dropout=dropout,
            use_voice=voice_input, use_beat=beat_input, attention_steps=attention_steps, attention_heads=attention_heads,
            attention_key_dim=attention_key_dim,
        )
        command = "bachd " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
        card = train(config, model_config, resume=resume, command=command)
        typer.echo(f"wrote {out} ({card['parameters']:,} parameters, {card['training_seconds']:.0f} s of training)")
        for split, figures in card["metrics"].items():
            typer.echo(f"{split}: " + _figures_line(figures))


def _figures_line(figures: dict) -> str:
    return (
        f"pitch NLL {figures['pitch_nll']:.4f} nats/token, token NLL {figures['token_nll']:.4f}, "
        f"accuracy {figures['accuracy']:.4f}, perplexity {figures['perplexity']:.3f} ({figures['tokens']:,} tokens)"
    )


@app.command("eval")
def eval_cli(
    model: Annotated[Path, typer.Argument(help="A bachd .keras model; with --music also a MIDI file or a folder of them.")],
    corpus: Annotated[list[str], typer.Option("--corpus", "-c", help="Corpora to evaluate on (default: bach). Repeatable.")] = ["bach"],
    split: Annotated[Split, typer.Option(help="Which split to evaluate.")] = Split.test,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow .npz corpora that need pickle.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw per-voice pitch NLL and accuracy to this PNG.")] = None,
    music: Annotated[bool, typer.Option("--music", help="Also report musical checks of generated music against the split's chorales.")] = False,
    pieces: Annotated[int, typer.Option(min=1, max=512, help="With --music: pieces to generate.")] = 32,
    bars: Annotated[int, typer.Option(min=4, max=256, help="With --music: bars (4/4) per generated piece.")] = 16,
    temperature: Annotated[float, typer.Option(min=0.05, max=5.0, help="With --music: sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="With --music: nucleus sampling mass.")] = 0.9,
    rhythm_temperature: Annotated[float, typer.Option(min=0.05, max=5.0, help="With --music: temperature of each voice's hold-or-move choice, apart from pitch (1: the model's own odds; lower is plainer, higher is freer).")] = 1.0,
    rng_seed: Annotated[int, typer.Option(min=0, help="With --music: random seed for sampling.")] = 0,
    allow_parallels: Annotated[bool, typer.Option("--allow-parallels", help="With --music: sample without the no-parallel-fifths/octaves rule.")] = False,
    check: Annotated[bool, typer.Option("--check", help="With --music: exit with status 1 if a figure is outside its margin.")] = False,
) -> None:
    """Pitch NLL (nats/token), token NLL, accuracy and perplexity of MODEL on a split;
    with --music, musical checks of its generated music (or of MIDI files) against the chorales."""
    with _errors():
        from bachd.corpus import load_corpora

        is_midi = model.is_dir() or model.suffix.lower() in (".mid", ".midi")
        if is_midi and not music:
            raise BachdError(f"{model} is MIDI: pass --music to check it against the chorales")
        if check and not music:
            raise BachdError("--check needs --music")
        check_output(plot, "--plot", (".png",))
        samples = _midi_samples(model) if is_midi else None
        loaded = None
        if not is_midi:
            from bachd.model import load_model

            loaded = load_model(model)
        corpora = load_corpora(list(corpus), allow_pickle=allow_pickle)
        chosen = [p for c in corpora for p in c.split(split.value)]
        if not chosen:
            raise BachdError(f"the {split.value} split of {', '.join(corpus)} is empty")
        where = f"{', '.join(corpus)} ({split.value}, {len(chosen)} pieces)"
        figures: dict = {"model": str(model), "split": split.value, "corpora": list(corpus), "pieces": len(chosen)}
        if loaded is not None:
            from bachd.evaluate import evaluate_pieces

            figures.update(evaluate_pieces(loaded, chosen))
            if plot is not None:
                from bachd.plots import eval_chart

                eval_chart(figures, plot, title=f"{model.name} on {where}")
        if music:
            from bachd.evaluate import generated_pieces, music_report

            if samples is None:
                steps = bars * 4 * 4
                samples = generated_pieces(
                    loaded, pieces, steps, temperature, top_p, rng_seed, not allow_parallels, rhythm_temperature
                )
                figures["generation"] = {
                    "pieces": pieces, "bars": bars, "temperature": temperature, "top_p": top_p,
                    "rhythm_temperature": rhythm_temperature, "rng_seed": rng_seed,
                    "avoid_parallels": not allow_parallels,
                }
            figures["music"] = music_report(samples, [p.tokens for p in chosen])
        if as_json:
            typer.echo(json.dumps(figures))
        else:
            typer.echo(f"{model} on {where}")
            if loaded is not None:
                typer.echo(_figures_line(figures))
                for voice, row in figures["per_voice"].items():
                    typer.echo(f"  {voice:8s} pitch NLL {row['pitch_nll']:.4f}  accuracy {row['accuracy']:.4f}")
            if music:
                _print_music(figures["music"], "generated" if not is_midi else "files")
            if plot is not None:
                typer.echo(f"wrote {plot}")
        if check and not figures["music"]["within_margins"]:
            raise typer.Exit(1)


def _midi_samples(path: Path) -> list:
    """The four-voice token arrays of a MIDI file or of every MIDI file in a folder."""
    from bachd.corpus import load_midi_files, midi_files

    files = midi_files(path) if path.is_dir() else [path]
    if not files:
        raise BachdError(f"{path} holds no .mid files")
    loaded = load_midi_files(path if path.is_dir() else path.parent, files)
    if loaded.skipped:
        raise BachdError(loaded.skipped[0])
    return [piece.tokens for piece in loaded.pieces]


def _print_music(report: dict, what: str) -> None:
    model, corpus = report["model"], report["corpus"]
    typer.echo(f"musical checks: {model['pieces']} {what} pieces ({model['steps']:,} steps) "
               f"against {corpus['pieces']} chorale stretches of the same length")
    typer.echo(f"  {'figure':40s} {'chorales':>9s} {what:>9s}  margin")
    for row in report["rows"]:
        mark = "ok" if row["ok"] else "OUTSIDE"
        typer.echo(f"  {row['label']:40s} {row['corpus']:9.3f} {row['model']:9.3f}  {row['margin']} ({mark})")
    typer.echo("within every margin" if report["within_margins"] else "outside a margin: see the rows marked OUTSIDE")


@app.command("generate")
def generate_cli(
    out: Annotated[Path, typer.Option("--out", "-o", help="The MIDI file to write.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped one).")] = None,
    seed_file: Annotated[Optional[Path], typer.Option(help="A MIDI or MusicXML file to continue. Fewer than four voices: the model adds the rest.")] = None,
    seed_chorale: Annotated[Optional[str], typer.Option(help="A chorale from music21's corpus to continue, by BWV number (e.g. 269).")] = None,
    seed_bars: Annotated[Optional[int], typer.Option(min=1, max=512, help=f"Use only the seed's last N bars (default {SEED_BARS}, twice the models' 8-bar training windows).")] = None,
    bars: Annotated[int, typer.Option(min=1, max=512, help="Bars to generate.")] = 4,
    bpm: Annotated[float, typer.Option(min=10.0, max=400.0, help="Tempo in quarter-note beats per minute.")] = 90.0,
    beats_per_bar: Annotated[int, typer.Option(min=1, max=12, help="Quarter-note beats per bar (4 for 4/4, 3 for 3/4).")] = 4,
    temperature: Annotated[float, typer.Option(min=0.05, max=5.0, help="Sampling temperature of the pitch choice (lower is safer).")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling: keep the most likely tokens up to this mass.")] = 0.9,
    rhythm_temperature: Annotated[float, typer.Option(min=0.05, max=5.0, help="Temperature of each voice's hold-or-move choice, apart from pitch (1: the model's own odds; lower is plainer, higher is freer).")] = 1.0,
    variations: Annotated[int, typer.Option(min=1, max=64, help="Generate K variations in one pass; writes OUT-1.mid ... OUT-K.mid.")] = 1,
    pick_best: Annotated[bool, typer.Option("--pick-best", help="With --variations: write only the most likely one, to OUT.")] = False,
    rng_seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed for sampling (same seed, same music).")] = None,
    allow_parallels: Annotated[bool, typer.Option("--allow-parallels", help="Let the lower voices move in parallel fifths and octaves with the upper ones.")] = False,
    include_seed: Annotated[bool, typer.Option("--include-seed", help="Write the seed before the continuation (a marker shows where bachd begins).")] = False,
    wav: Annotated[Optional[Path], typer.Option(help="Also render the MIDI file to this WAV with bachd's organ.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw a piano roll (seed shaded, bachd's part after it) to this PNG.")] = None,
) -> None:
    """Continue a seed (or start from nothing) and write four voices as a MIDI file."""
    with _errors():
        generate_file(
            out=out, model_path=model or default_model_path(), seed_file=seed_file, seed_chorale=seed_chorale,
            seed_bars=seed_bars, bars=bars, bpm=bpm, beats_per_bar=beats_per_bar, temperature=temperature,
            top_p=top_p, variations=variations, pick_best=pick_best, rng_seed=rng_seed, include_seed=include_seed,
            wav=wav, plot=plot, avoid_parallels=not allow_parallels, rhythm_temperature=rhythm_temperature,
        )


def _sibling(base: Optional[Path], index: int, count: int) -> Optional[Path]:
    """OUT for one file, OUT-k for the k-th of several (as the MIDI files are named)."""
    if base is None or count == 1:
        return base
    return base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def generate_file(
    out: Path, model_path: Path, seed_file=None, seed_chorale=None, seed_bars=None, bars=4, bpm=90.0,
    beats_per_bar=4, temperature=0.7, top_p=0.9, variations=1, pick_best=False, rng_seed=None, include_seed=False,
    wav: Optional[Path] = None, plot: Optional[Path] = None, avoid_parallels: bool = True, rhythm_temperature: float = 1.0,
) -> list[Path]:
    """What ``bachd generate`` does; returns the files written."""
    check_output(out, "--out", (".mid", ".midi"))
    check_output(wav, "--wav", (".wav",))
    check_output(plot, "--plot", (".png",))
    import numpy as np

    from bachd.generation import generate, last_bars, load_seed
    from bachd.midifile import write_midi
    from bachd.sampling import Sampler, SamplingConfig

    seed = load_seed(str(seed_file) if seed_file else None, seed_chorale)
    if seed is not None:
        seed = last_bars(seed, seed_bars or SEED_BARS, beats_per_bar)
    from bachd.engine import make_engine

    engine = make_engine(model_path, batch_size=variations)
    config = SamplingConfig(
        temperature=temperature, top_p=top_p, avoid_parallels=avoid_parallels, rhythm_temperature=rhythm_temperature
    )
    sampler = Sampler(config, rng_seed=rng_seed)
    steps = bars * beats_per_bar * 4
    result = generate(engine, sampler, seed, steps)
    first = 0 if include_seed else result.seed_steps
    marker = result.seed_steps if include_seed and result.seed_steps else None
    ranked = np.argsort(-result.log_prob)
    chosen = [int(ranked[0])] if pick_best or variations == 1 else list(range(variations))
    written = []
    for index in chosen:
        path = _sibling(out, index, len(chosen))
        path.parent.mkdir(parents=True, exist_ok=True)
        notes = write_midi(result.tokens[index, first:], path, bpm=bpm, beats_per_bar=beats_per_bar, marker_step=marker)
        written.append(path)
        best = "  (most likely)" if variations > 1 and index == ranked[0] else ""
        typer.echo(f"wrote {path}: {len(notes)} notes, mean log-prob {result.log_prob[index]:.3f}/token{best}")
        wav_path, png_path = _sibling(wav, index, len(chosen)), _sibling(plot, index, len(chosen))
        if wav_path is not None:
            seconds = render_file(path, wav_path)
            written.append(wav_path)
            typer.echo(f"wrote {wav_path}: {seconds:.1f} s of audio")
        if png_path is not None:
            from bachd.plots import piano_roll

            # The picture always shows the seed, shaded, so what bachd added stands apart.
            title = f"{path.name}: {result.seed_steps // 4} beats of seed, {steps // 4} beats by bachd"
            piano_roll(result.tokens[index], png_path, seed_steps=result.seed_steps, beats_per_bar=beats_per_bar, title=title)
            written.append(png_path)
            typer.echo(f"wrote {png_path}")
    return written


def render_file(midi: Path, wav: Path, sample_rate: int = 48000) -> float:
    """Render a MIDI file with the organ to a WAV file; returns its length in seconds."""
    from bachd.synth import render_midi, write_wav

    audio = render_midi(midi, sample_rate)
    wav.parent.mkdir(parents=True, exist_ok=True)
    write_wav(wav, audio, sample_rate)
    return len(audio) / sample_rate


@app.command("render")
def render_cli(
    midi: Annotated[Path, typer.Argument(help="A MIDI file (any; channels 1-4 sound as soprano, alto, tenor, bass).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The WAV file to write.")],
    sample_rate: Annotated[int, typer.Option(min=8000, max=192000, help="Sample rate in Hz.")] = 48000,
) -> None:
    """Render a MIDI file to WAV with bachd's built-in organ."""
    with _errors():
        check_output(out, "--out", (".wav",))
        seconds = render_file(midi, out, sample_rate)
        typer.echo(f"wrote {out}: {seconds:.1f} s at {sample_rate} Hz")


class Mode(str, Enum):
    continue_ = "continue"
    harmonize = "harmonize"


class ClockSource(str, Enum):
    internal = "internal"
    midi = "midi"


class StartOn(str, Enum):
    beat = "beat"
    bar = "bar"


class MidiBackend(str, Enum):
    auto = "auto"
    alsa = "alsa"
    jack = "jack"
    coremidi = "coremidi"
    windows = "windows"


class EngineBackend(str, Enum):
    auto = "auto"
    numpy = "numpy"
    tf = "tf"
    xla = "xla"


@app.command("run")
def run_cli(
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="A preset name (see `bachd presets`) or a .toml file.")] = None,
    mode: Annotated[Optional[Mode], typer.Option(help="continue (call and response) or harmonize (voices under your melody).")] = None,
    clock: Annotated[Optional[ClockSource], typer.Option(help="internal (at --bpm) or midi (follow the DAW's MIDI clock and transport).")] = None,
    bpm: Annotated[Optional[float], typer.Option(min=20.0, max=320.0, help="Tempo of the internal clock (and the first guess for MIDI clock).")] = None,
    beats_per_bar: Annotated[Optional[int], typer.Option(min=2, max=12, help="Quarter-note beats per bar.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.05, max=5.0, help="Sampling temperature.")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.01, max=1.0, help="Nucleus sampling mass.")] = None,
    rhythm_temperature: Annotated[Optional[float], typer.Option(min=0.05, max=5.0, help="Temperature of each voice's hold-or-move choice, apart from pitch (1: the model's own odds; lower is plainer, higher is freer).")] = None,
    response_bars: Annotated[Optional[int], typer.Option(min=1, max=64, help="Continue mode: bars in each answer.")] = None,
    listen_gap: Annotated[Optional[float], typer.Option(min=0.25, max=16.0, help="Continue mode: beats of silence that end your call.")] = None,
    start_on: Annotated[Optional[StartOn], typer.Option(help="Continue mode: answers start on the next beat or bar.")] = None,
    allow_overlap: Annotated[Optional[bool], typer.Option("--allow-overlap/--no-allow-overlap", help="Continue mode: keep answering when you play over an answer.")] = None,
    allow_parallels: Annotated[Optional[bool], typer.Option("--allow-parallels/--no-allow-parallels", help="Let the lower voices move in parallel fifths and octaves (live default: allowed; --no-allow-parallels adds latency).")] = None,
    rng_seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed for sampling.")] = None,
    in_channel: Annotated[Optional[int], typer.Option(min=0, max=16, help="Listen to this channel only (1-16; 0 = all).")] = None,
    out_channel: Annotated[Optional[int], typer.Option(min=0, max=16, help="Send all voices on this channel (1-16; 0 = S, A, T, B on channels 1-4).")] = None,
    velocity: Annotated[Optional[str], typer.Option(help="Note velocity 1-127, or 'follow' to follow the player.")] = None,
    in_port: Annotated[str, typer.Option("--in", help="Name of the input port to create, or of an existing port to open.")] = "bachd-in",
    out_port: Annotated[str, typer.Option("--out", help="Name of the output port to create, or of an existing port to open.")] = "bachd-out",
    backend: Annotated[MidiBackend, typer.Option(help="MIDI system; auto takes the first that works.")] = MidiBackend.auto,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped one).")] = None,
    engine: Annotated[EngineBackend, typer.Option(help="Streaming engine backend (auto: numpy on CPU, tf on GPU).")] = EngineBackend.auto,
    status: Annotated[Optional[bool], typer.Option("--status/--no-status", help="Show the live status line (default: when stderr is a terminal).")] = None,
    stats_json: Annotated[Optional[Path], typer.Option(help="On exit, write counts and output lateness to this JSON file.")] = None,
    monitor: Annotated[bool, typer.Option("--monitor", help="Also play what bachd sends through the audio output (built-in organ).")] = False,
    monitor_input: Annotated[bool, typer.Option("--monitor-input", help="With --monitor: play what you play too (a quieter stop).")] = False,
    audio_device: Annotated[Optional[str], typer.Option(help="Audio output for --monitor: an index or part of a name (see `bachd ports`).")] = None,
) -> None:
    """Play live: open virtual MIDI ports and answer or harmonize what you play."""
    # Tiny matrix-vector products: BLAS threads only spin and steal the MIDI threads' cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with _errors():
        from bachd.daemon import RunOptions, run
        from bachd.presets import resolve

        velocity_value: object = velocity
        if velocity is not None and velocity != "follow":
            try:
                velocity_value = int(velocity)
            except ValueError:
                raise BachdError(f"--velocity must be 1-127 or 'follow', got {velocity!r}") from None
        settings = resolve(preset, {
            "mode": mode.value if mode else None, "clock": clock.value if clock else None, "bpm": bpm,
            "beats_per_bar": beats_per_bar, "temperature": temperature, "top_p": top_p,
            "rhythm_temperature": rhythm_temperature, "response_bars": response_bars, "listen_gap": listen_gap, "start_on": start_on.value if start_on else None,
            "allow_overlap": allow_overlap, "allow_parallels": allow_parallels, "rng_seed": rng_seed, "in_channel": in_channel,
            "out_channel": out_channel, "velocity": velocity_value,
        })
        options = RunOptions(
            settings=settings, model_path=model or default_model_path(), in_name=in_port, out_name=out_port,
            backend=backend.value, engine=engine.value, status=status, stats_path=stats_json,
            monitor=monitor or monitor_input, monitor_input=monitor_input, audio_device=audio_device,
        )
        raise typer.Exit(run(options, on_ready=lambda line: typer.echo(line)))


@app.command("ports")
def ports_cli() -> None:
    """List MIDI backends and their ports, and the audio outputs for --monitor."""
    with _errors():
        from bachd.ports import compiled_backends, no_backend_message, probe

        usable = 0
        for name in compiled_backends():
            works, why, inputs, outputs = probe(name)
            usable += works
            typer.echo(f"{name}: {'available' if works else 'not available: ' + why}")
            if works:
                typer.echo("  inputs (bachd can read from):  " + (", ".join(inputs) or "none"))
                typer.echo("  outputs (bachd can write to):  " + (", ".join(outputs) or "none"))
        if not usable:
            typer.echo(no_backend_message())
        try:
            from bachd.audio import output_devices

            devices = output_devices()
        except BachdError as error:
            typer.echo(f"audio (for --monitor): not available: {error}")
        else:
            typer.echo("audio outputs (for --monitor --audio-device):" + ("" if devices else " none"))
            for device in devices:
                default = "  (default)" if device["default"] else ""
                typer.echo(f"  {device['index']}: {device['name']} [{device['hostapi']}, {device['channels']} channels]{default}")


presets_app = typer.Typer(help="List the live presets, or show one's resolved settings.", no_args_is_help=False)
app.add_typer(presets_app, name="presets")


@presets_app.callback(invoke_without_command=True)
def presets_list(ctx: typer.Context) -> None:
    """List built-in and user presets."""
    if ctx.invoked_subcommand is not None:
        return
    with _errors():
        from bachd.presets import BUILTIN_DIR, available, read, user_dir

        for name, path in available().items():
            where = "built-in" if path.parent == BUILTIN_DIR else "user"
            try:
                description = read(path).get("description", "")
            except BachdError as error:
                description = f"(invalid: {error})"
            typer.echo(f"{name:14s} {where:8s} {description}")
        typer.echo(f"user presets go in {user_dir()}")


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name or .toml file.")]) -> None:
    """Print a preset's settings resolved over bachd's defaults, as TOML."""
    with _errors():
        from bachd.presets import describe, find, resolve

        typer.echo(f"# {find(name)}")
        typer.echo(describe(resolve(name)))


class _errors:
    """Turn BachdError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            return False
        if issubclass(kind, BachdError):
            typer.echo(f"error: {value}", err=True)
            raise typer.Exit(1)
        if issubclass(kind, KeyboardInterrupt):
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        return False


def main() -> None:
    app()
