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
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from bachd import __version__
from bachd.errors import BachdError, SetupError
from bachd.midi import BACKENDS as MIDI_BACKENDS
from bachd.outputs import check_output
from bachd.registry import ENGINES
from bachd.settings import SAMPLING, SEED_BARS, SETTINGS

app = typer.Typer(
    name="bachd",
    help="Real-time Bach chorale generator: play live on virtual MIDI ports, train, evaluate and generate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: "[sound]" is a preset's table, not Rich markup to be eaten.
    rich_markup_mode=None,
)



class Distribute(str, Enum):
    none = "none"
    mirrored = "mirrored"
    multiworker = "multiworker"


class Split(str, Enum):
    train = "train"
    valid = "valid"
    test = "test"


PROGRAMS_HELP = ("General MIDI programs 0-127 for soprano, alto, tenor, bass[, your notes], comma-separated, "
                 "with a SoundFont (default 19,19,19,19,20: church organ, reed organ; 52 is choir aahs).")


def _programs(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    from bachd.sound.soundfont import parse_programs

    return parse_programs(text)


def _setting(name: str, *flags: str):
    """The option of a declared setting: its bounds and help from :mod:`bachd.settings`."""
    setting = SETTINGS[name]
    return typer.Option(*flags, min=setting.low, max=setting.high, help=setting.help)


def _one_blas_thread() -> None:
    """The live performer's engine steps are tiny matrix-vector products: BLAS threads only
    spin and steal the MIDI threads' cores (and, beside other work, make a 0.3 ms step take
    8 ms). Set before numpy is first imported."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bachd {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what bachd is doing.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def default_model_path() -> Path:
    from bachd.paths import DEFAULT_MODEL

    return DEFAULT_MODEL


@app.command("train")
def train_cli(
    ctx: typer.Context,
    corpus: Annotated[
        list[str],
        typer.Option(
            "--corpus",
            "-c",
            help="'bach' (music21's chorales), a JSB .json/.npz, "
            "a JS Fake Chorales .npz, or a folder of MIDI "
            "files. Repeatable.",
        ),
    ] = ["bach"],  # noqa: B006 - typer reads a list option's default as it is
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the .keras model (card and curves go beside it).")
    ] = Path("bachd-model.keras"),
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs (early stopping may end sooner).")] = 60,
    lstm_units: Annotated[int, typer.Option(min=8, max=4096, help="Width of each LSTM layer.")] = 448,
    lstm_layers: Annotated[int, typer.Option(min=1, max=8, help="Number of stacked LSTM layers.")] = 2,
    embed_dim: Annotated[int, typer.Option(min=4, max=2048, help="Embedding width.")] = 128,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout rate.")] = 0.3,
    voice_input: Annotated[
        bool, typer.Option("--voice-input/--no-voice-input", help="Tell the model which voice each token is for.")
    ] = True,
    beat_input: Annotated[
        bool, typer.Option("--beat-input/--no-beat-input", help="Tell the model each token's position in time.")
    ] = True,
    bar_input: Annotated[
        bool,
        typer.Option(
            "--bar-input/--no-bar-input",
            help="Count that position in 16ths within "
            "the bar (where the bar lines are "
            "known or estimated), not within the "
            "beat.",
        ),
    ] = True,
    key_input: Annotated[
        bool,
        typer.Option(
            "--key-input/--no-key-input",
            help="Also tell the model the piece's key "
            "(generation: the key it opens in or "
            "the seed's; live: the key of what the "
            "player has played so far).",
        ),
    ] = False,
    attention_steps: Annotated[
        int,
        typer.Option(min=0, max=256, help="Add causal attention over the last K 16th steps after the LSTM (0: none)."),
    ] = 0,
    attention_heads: Annotated[int, typer.Option(min=1, max=64, help="Attention heads.")] = 4,
    attention_key_dim: Annotated[int, typer.Option(min=4, max=1024, help="Width of each attention head.")] = 32,
    label_smoothing: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="Label smoothing of the training loss (0: plain NLL).")
    ] = 0.0,
    ema: Annotated[
        Optional[float],
        typer.Option(
            min=0.5,
            max=0.99999,
            help="Polyak averaging: validate, checkpoint "
            "and ship the exponential moving average "
            "of the weights, with this momentum per "
            "batch (e.g. 0.99 averages over about the "
            "last 100 batches).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Windows per batch (per device).")] = 32,
    window_steps: Annotated[
        int, typer.Option(min=4, max=4096, help="16th steps per training window (4 tokens each).")
    ] = 32,
    passes: Annotated[
        float, typer.Option(min=0.1, max=100.0, help="Crops per epoch, in passes over the training steps.")
    ] = 2.0,
    transpose: Annotated[
        int, typer.Option(min=0, max=12, help="Random transposition range in semitones, each way.")
    ] = 3,
    learning_rate: Annotated[
        float, typer.Option(min=1e-6, max=1.0, help="Peak learning rate (cosine schedule with warm-up).")
    ] = 3e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, max=1.0, help="AdamW weight decay.")] = 0.01,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without improvement before stopping early.")] = 15,
    seed: Annotated[int, typer.Option(help="Random seed for weights and data order.")] = 1729,
    max_minutes: Annotated[
        Optional[float], typer.Option(min=0.1, help="Stop after this much training time (across resumes).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same --out.")] = False,
    distribute: Annotated[
        Distribute,
        typer.Option(
            "--distribute",
            "--strategy",
            help="none, mirrored (all local "
            "devices) or multiworker "
            "(machines in TF_CONFIG; "
            "--batch-size is per worker).",
        ),
    ] = Distribute.none,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle", help="Allow .npz corpora that need pickle (runs code from the file: trusted files only)."
        ),
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option(min=1, max=256, help="CPU threads for TensorFlow (default: all cores).")
    ] = None,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            "--init-from",
            help="Start from this bachd model's weights and "
            "architecture, with a fresh learning-rate "
            "schedule: fine-tune it on --corpus. The "
            "result is never worse on validation than "
            "the model it starts from.",
        ),
    ] = None,
    teacher: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--teacher",
            help="Distillation: also learn this bachd "
            "model's predictions on every training "
            "piece (repeatable: their mixture). A "
            "resumed run keeps its own teachers.",
        ),
    ] = None,
    teacher_weight: Annotated[
        Optional[list[float]],
        typer.Option(
            "--teacher-weight",
            min=0.0,
            help="Each --teacher's weight in the mixture, in the same order (default: equal).",
        ),
    ] = None,
    distill: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=1.0,
            help="With --teacher: the share of the loss on the teachers' predictions; the rest is on the notes.",
        ),
    ] = 0.5,
) -> None:
    """Train a model on chorale corpora; writes the .keras model, its card and training curves."""
    with _errors():
        if init_from is not None:
            # By name: typer carries its own copy of click, whose ParameterSource is not click's.
            given = [f"--{name.replace('_', '-')}" for name in ARCHITECTURE_OPTIONS
                     if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
            if given:
                raise BachdError(f"{', '.join(given)} cannot be combined with --init-from: "
                                 f"a fine-tune keeps the architecture of {init_from}")
        from bachd.model.keras_model import ModelConfig
        from bachd.model.training import TrainConfig, train
        from bachd.model.windows import WindowConfig

        config = TrainConfig(
            corpora=list(corpus), out=str(out), epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, patience=patience, seed=seed,
            window=WindowConfig(window_steps=window_steps, transpose=transpose, passes=passes),
            distribute=distribute.value, max_minutes=max_minutes, allow_pickle=allow_pickle,
            label_smoothing=label_smoothing, threads=threads, ema=ema,
            init_from=None if init_from is None else str(init_from),
            teachers=[str(t) for t in teacher or []], teacher_weights=list(teacher_weight or []), distill=distill,
        )
        model_config = ModelConfig(
            embed_dim=embed_dim, lstm_units=lstm_units, lstm_layers=lstm_layers, dropout=dropout,
            use_voice=voice_input, use_beat=beat_input, positions=16 if bar_input else 4, use_key=key_input,
            attention_steps=attention_steps, attention_heads=attention_heads, attention_key_dim=attention_key_dim,
        )
        command = "bachd " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
        card = train(config, model_config, resume=resume, command=command)
        typer.echo(f"wrote {out} ({card['parameters']:,} parameters, {card['training_seconds']:.0f} s of training)")
        for split, figures in card["metrics"].items():
            typer.echo(f"{split}: " + _figures_line(figures))


ARCHITECTURE_OPTIONS = (
    "lstm_units", "lstm_layers", "embed_dim", "dropout", "voice_input", "beat_input", "bar_input", "key_input",
    "attention_steps", "attention_heads", "attention_key_dim",
)


def _figures_line(figures: dict) -> str:
    return (
        f"pitch NLL {figures['pitch_nll']:.4f} nats/token, token NLL {figures['token_nll']:.4f}, "
        f"accuracy {figures['accuracy']:.4f}, perplexity {figures['perplexity']:.3f} ({figures['tokens']:,} tokens); "
        f"on the {figures['attack_tokens']:,} that start a note, pitch NLL {figures['attack_pitch_nll']:.4f}"
    )


@app.command("calibrate")
def calibrate_cli(
    model: Annotated[Path, typer.Argument(help="A bachd .keras model; the calibration is stored in it.")],
    corpus: Annotated[
        list[str], typer.Option("--corpus", "-c", help="Corpora whose training split the lines are matched to "
                                "(default: bach). Repeatable.")
    ] = ["bach"],  # noqa: B006 - typer reads a list option's default as it is
    pieces: Annotated[int, typer.Option(min=8, max=512, help="Pieces generated each round.")] = 128,
    bars: Annotated[int, typer.Option(min=4, max=64, help="Bars (4/4) per generated piece.")] = 16,
    rounds: Annotated[int, typer.Option(min=1, max=20, help="Rounds of matching.")] = 8,
    rng_seed: Annotated[
        int, typer.Option(help="The first round's sampling seed (each round takes the next); kept apart from "
                          "eval's seeds 0-3 by default.")
    ] = 1000,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow .npz corpora that need pickle.")] = False,
) -> None:
    """Fit MODEL's calibration and store it in MODEL: how much more or less often each voice
    moves by each interval, and lands at each distance under the voice above, so that
    generated lines leap, step and spread as the corpus's do. Generates pieces at the offline
    defaults, compares them with the training split, and corrects, ROUNDS times. generate and eval --music apply it
    (--interval-calibration; 0: off). Fit it again after training a model."""
    _one_blas_thread()
    with _errors():
        from bachd.model.modelfile import read_config

        read_config(model)  # a missing or foreign model fails before anything loads
        from bachd.files.commands import calibrate_file

        calibrate_file(model, list(corpus), pieces=pieces, bars=bars, rounds=rounds, rng_seed=rng_seed,
                       allow_pickle=allow_pickle, say=typer.echo)


@app.command("eval")
def eval_cli(
    model: Annotated[
        Path, typer.Argument(help="A bachd .keras model; with --music also a MIDI file or a folder of them.")
    ],
    corpus: Annotated[
        list[str], typer.Option("--corpus", "-c", help="Corpora to evaluate on (default: bach). Repeatable.")
    ] = ["bach"],  # noqa: B006 - typer reads a list option's default as it is
    split: Annotated[Split, typer.Option(help="Which split to evaluate.")] = Split.test,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow .npz corpora that need pickle.")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw per-voice pitch NLL and accuracy to this PNG.")
    ] = None,
    music: Annotated[
        bool,
        typer.Option("--music", help="Also report musical checks of generated music against the split's chorales."),
    ] = False,
    pieces: Annotated[
        int, typer.Option(min=1, max=512, help="With --music: pieces to generate; with --harmonize or --answers: "
                          "melodies of the split to play.")
    ] = 32,
    bars: Annotated[int, typer.Option(min=4, max=256, help="With --music: bars (4/4) per generated piece.")] = 16,
    harmonize: Annotated[
        bool,
        typer.Option(
            "--harmonize",
            help="Instead: harmonize the split's melodies through the "
            "live harmonizer and set its figures beside Bach's.",
        ),
    ] = False,
    answers: Annotated[
        bool,
        typer.Option(
            "--answers",
            help="Instead: play the opening bars of the split's melodies "
            "as calls into the live continue mode and check each "
            "answer's key against the call's.",
        ),
    ] = False,
    preset: Annotated[
        Optional[str],
        typer.Option(
            "--preset",
            "-p",
            help="With --harmonize or --answers: the live settings (default: the harmonizer or the chorale preset).",
        ),
    ] = None,
    temperature: Annotated[Optional[float], _setting("temperature")] = None,
    top_p: Annotated[Optional[float], _setting("top_p")] = None,
    rhythm_temperature: Annotated[Optional[float], _setting("rhythm_temperature")] = None,
    key_pull: Annotated[Optional[float], _setting("key_pull")] = None,
    minor_pull: Annotated[Optional[float], _setting("minor_pull")] = None,
    inner_pull: Annotated[Optional[float], _setting("inner_pull")] = None,
    root_pull: Annotated[Optional[float], _setting("root_pull")] = None,
    max_chord_beats: Annotated[Optional[float], _setting("max_chord_beats")] = None,
    cadence_hold: Annotated[Optional[float], _setting("cadence_hold")] = None,
    away_hold: Annotated[Optional[float], _setting("away_hold")] = None,
    compass_pull: Annotated[Optional[float], _setting("compass_pull")] = None,
    interval_calibration: Annotated[Optional[float], _setting("interval_calibration")] = None,
    chord_draws: Annotated[Optional[int], _setting("chord_draws")] = None,
    rng_seed: Annotated[int, _setting("rng_seed")] = 0,
    allow_parallels: Annotated[
        Optional[bool], _setting("allow_parallels", "--allow-parallels/--no-allow-parallels")
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, max=64, help="With --harmonize: harmonize each melody under this many rng seeds, "
                          "from --rng-seed on, and pool the figures.")
    ] = 1,
    jobs: Annotated[
        int, typer.Option(min=1, max=256, help="With --harmonize: processes that share the harmonizing.")
    ] = 1,
    check: Annotated[
        bool, typer.Option("--check", help="With --music or --harmonize: exit with status 1 if a figure is "
                           "outside its margin.")
    ] = False,
    discriminate: Annotated[
        bool, typer.Option("--discriminate", help="With --music: how well two classifiers tell the pieces from "
                           "the split's chorales (50 %: they cannot), cross-validated, and which figures tell them "
                           "apart.")
    ] = False,
) -> None:
    """Pitch NLL (nats/token), token NLL, accuracy and perplexity of MODEL on a split;
    with --music, musical checks of its generated music (or of MIDI files) against the chorales;
    with --harmonize, the live harmonizer on the split's melodies against Bach's harmonizations.
    Sampling options not given: the declared defaults (--music), the preset's (--harmonize)."""
    flags = {name: value for name, value in locals().items() if name in SETTINGS and value is not None}
    if harmonize or answers or music:
        _one_blas_thread()  # the live performer, or generation from nothing: one token at a time
    with _errors():
        if check and not (music or harmonize):
            raise BachdError("--check needs --music or --harmonize")
        if discriminate and not music:
            raise BachdError("--discriminate needs --music")
        if (seeds > 1 or jobs > 1) and not harmonize:
            raise BachdError("--seeds and --jobs go with --harmonize")
        check_output(plot, "--plot", (".png",))
        if model.suffix == ".keras":
            from bachd.model.modelfile import read_config

            read_config(model)  # a missing or foreign model fails before TensorFlow loads
        if harmonize or answers:
            within = _eval_live(model, list(corpus), split.value, pieces, preset, flags, allow_pickle, as_json,
                                answers, seeds, jobs)
            if check and not within:
                raise typer.Exit(1)
            return
        from bachd.files.evaluate import eval_report
        from bachd.model.sampling import SamplingConfig

        sampling = SamplingConfig(**{name: value for name, value in flags.items() if name in SAMPLING})
        figures = eval_report(model, list(corpus), split.value, allow_pickle=allow_pickle, plot=plot,
                              music_pieces=pieces if music else 0, bars=bars, sampling=sampling, rng_seed=rng_seed,
                              discriminator=discriminate)
        if as_json:
            typer.echo(json.dumps(figures))
        else:
            typer.echo(f"{model} on {figures['where']}")
            if "per_voice" in figures:
                typer.echo(_figures_line(figures))
                for voice, row in figures["per_voice"].items():
                    typer.echo(f"  {voice:8s} pitch NLL {row['pitch_nll']:.4f}  accuracy {row['accuracy']:.4f}")
            if music:
                _print_music(figures["music"], "generated" if "generation" in figures else "files")
            if "discriminator" in figures:
                _print_discriminator(figures["discriminator"])
            if plot is not None:
                typer.echo(f"wrote {plot}")
        if check and not figures["music"]["within_margins"]:
            raise typer.Exit(1)


def _eval_live(model: Path, corpora: list[str], split: str, pieces: int, preset: Optional[str], flags: dict,
               allow_pickle: bool, as_json: bool, answers: bool, seeds: int, jobs: int) -> bool:
    """Prints the live figures; True if each is within its margin."""
    from bachd.files.live_checks import live_report

    figures, lines = live_report(model, corpora, split, pieces, preset, flags, allow_pickle, answers, seeds, jobs)
    typer.echo(json.dumps(figures) if as_json else "\n".join(lines))
    return bool(figures.get("within_margins", True))


def _print_discriminator(report: dict) -> None:
    pieces = report["pieces"]
    typer.echo(f"telling {pieces['bachd']} pieces from {pieces['bach']} of Bach's, five-fold cross-validated "
               "(balanced accuracy; 50 %: they cannot be told apart)")
    for verdict in report["classifiers"]:
        low, high = verdict["interval_pct"]
        typer.echo(f"  {verdict['classifier']:62s} {verdict['balanced_accuracy_pct']:5.1f} % (95 %: {low:g}-{high:g})")
    typer.echo(f"  what tells them apart most, of the figures:{'Bach':>22s} {'these':>9s}")
    for row in report["telling_figures"]:
        typer.echo(f"    {row['label']:60s} {row['bach']:9.4g} {row['bachd']:9.4g}")


def _print_music(report: dict, what: str) -> None:
    model, corpus = report["model"], report["corpus"]
    typer.echo(f"musical checks: {model['pieces']} {what} pieces ({model['steps']:,} steps) "
               f"against {corpus['pieces']} chorale stretches of the same length")
    typer.echo(f"  {'figure':40s} {'chorales':>9s} {what:>9s}  margin")
    for row in report["rows"]:
        mark = "ok" if row["ok"] else "OUTSIDE"
        typer.echo(f"  {row['label']:40s} {row['corpus']:9.3f} {row['model']:9.3f}  {row['margin']} ({mark})")
    from bachd.music.analysis import LABELS, MARGINS

    for key in (k for k in LABELS if k not in MARGINS and k in model):
        typer.echo(f"  {LABELS[key]:40s} {corpus[key]:9.3f} {model[key]:9.3f}  (beside Bach, no margin)")
    typer.echo("within every margin" if report["within_margins"] else "outside a margin: see the rows marked OUTSIDE")


@app.command("generate")
def generate_cli(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The file to write: MIDI (.mid), or a MusicXML score (.musicxml, .mxl).")
    ],
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped one).")
    ] = None,
    seed_file: Annotated[
        Optional[Path],
        typer.Option(help="A MIDI or MusicXML file to continue. Fewer than four voices: the model adds the rest."),
    ] = None,
    seed_chorale: Annotated[
        Optional[str], typer.Option(help="A chorale from music21's corpus to continue, by BWV number (e.g. 269).")
    ] = None,
    seed_bars: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            max=512,
            help=f"Use only the seed's last N bars (default {SEED_BARS}, twice the models' 8-bar training windows).",
        ),
    ] = None,
    bars: Annotated[int, typer.Option(min=1, max=512, help="Bars to generate.")] = 4,
    key: Annotated[
        Optional[str],
        typer.Option(
            help="Without a seed: the key to open in, e.g. 'D minor', 'Bb major', "
            "'F#m' (default: drawn from the keys of Bach's chorales)."
        ),
    ] = None,
    bpm: Annotated[float, _setting("bpm")] = SETTINGS["bpm"].default,
    beats_per_bar: Annotated[int, _setting("beats_per_bar")] = SETTINGS["beats_per_bar"].default,
    temperature: Annotated[float, _setting("temperature")] = SETTINGS["temperature"].default,
    top_p: Annotated[float, _setting("top_p")] = SETTINGS["top_p"].default,
    rhythm_temperature: Annotated[float, _setting("rhythm_temperature")] = SETTINGS[
        "rhythm_temperature"
    ].offline_default(),
    key_pull: Annotated[float, _setting("key_pull")] = SETTINGS["key_pull"].offline_default(),
    minor_pull: Annotated[float, _setting("minor_pull")] = SETTINGS["minor_pull"].offline_default(),
    inner_pull: Annotated[float, _setting("inner_pull")] = SETTINGS["inner_pull"].offline_default(),
    root_pull: Annotated[float, _setting("root_pull")] = SETTINGS["root_pull"].offline_default(),
    max_chord_beats: Annotated[float, _setting("max_chord_beats")] = SETTINGS["max_chord_beats"].offline_default(),
    cadence_hold: Annotated[float, _setting("cadence_hold")] = SETTINGS["cadence_hold"].offline_default(),
    away_hold: Annotated[float, _setting("away_hold")] = SETTINGS["away_hold"].offline_default(),
    compass_pull: Annotated[float, _setting("compass_pull")] = SETTINGS["compass_pull"].offline_default(),
    interval_calibration: Annotated[float, _setting("interval_calibration")] = SETTINGS[
        "interval_calibration"
    ].offline_default(),
    variations: Annotated[
        int, typer.Option(min=1, max=64, help="Generate K variations in one pass; writes OUT-1.mid ... OUT-K.mid.")
    ] = 1,
    pick_best: Annotated[
        bool, typer.Option("--pick-best", help="With --variations: write only the most likely one, to OUT.")
    ] = False,
    rng_seed: Annotated[Optional[int], _setting("rng_seed")] = None,
    allow_parallels: Annotated[bool, _setting("allow_parallels", "--allow-parallels")] = SETTINGS[
        "allow_parallels"
    ].default,
    include_seed: Annotated[
        bool,
        typer.Option(
            "--include-seed", help="Write the seed before the continuation (a marker shows where bachd begins)."
        ),
    ] = False,
    wav: Annotated[
        Optional[Path],
        typer.Option(
            help="Also render the MIDI file to this WAV (a SoundFont, or the built-in organ: see --soundfont)."
        ),
    ] = None,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw a piano roll (seed shaded, bachd's part after it) to this PNG.")
    ] = None,
    analysis: Annotated[
        bool,
        typer.Option(
            "--analysis",
            help="With a MusicXML --out: each beat's chord as a Roman "
            "numeral under the bass (I, V6, ii65, V7/V), and PAC, "
            "IAC, HC, PC or DC at the phrase ends.",
        ),
    ] = False,
    soundfont: Annotated[Optional[str], _setting("soundfont")] = None,
    programs: Annotated[Optional[str], typer.Option(help=PROGRAMS_HELP)] = None,
) -> None:
    """Continue a seed (or start from nothing) and write four voices as a MIDI file."""
    given = dict(locals())
    with _errors():
        from bachd.files.commands import generate_file
        from bachd.model.sampling import SamplingConfig
        from bachd.music.meter import Meter

        sampling = SamplingConfig(**{name: value for name, value in given.items() if name in SAMPLING})
        generate_file(
            out=out, model_path=model or default_model_path(), sampling=sampling, seed_file=seed_file,
            seed_chorale=seed_chorale, seed_bars=seed_bars, bars=bars, bpm=bpm, meter=Meter(beats_per_bar),
            variations=variations, pick_best=pick_best, rng_seed=rng_seed, include_seed=include_seed, wav=wav,
            plot=plot, say=typer.echo, key=key, soundfont=soundfont, programs=_programs(programs), analysis=analysis,
        )


@app.command("render")
def render_cli(
    midi: Annotated[Path, typer.Argument(help="A MIDI file (any; channels 1-4 sound as soprano, alto, tenor, bass).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The WAV file to write.")],
    sample_rate: Annotated[int, typer.Option(min=8000, max=192000, help="Sample rate in Hz.")] = 48000,
    soundfont: Annotated[Optional[str], _setting("soundfont")] = None,
    programs: Annotated[Optional[str], typer.Option(help=PROGRAMS_HELP)] = None,
) -> None:
    """Render a MIDI file to WAV with a General MIDI SoundFont, or bachd's built-in organ."""
    with _errors():
        from bachd.files.commands import render_file
        from bachd.sound.soundfont import resolve_sound, sound_name

        check_output(out, "--out", (".wav",))
        sound = resolve_sound(soundfont)
        seconds = render_file(midi, out, sample_rate, sound=sound, programs=_programs(programs))
        typer.echo(f"wrote {out}: {seconds:.1f} s at {sample_rate} Hz with {sound_name(sound)}")


@app.command("score")
def score_cli(
    midi: Annotated[Path, typer.Argument(help="A MIDI file (read as four voices on the 16th grid, as a seed is).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The score to write: MusicXML (.musicxml, or compressed "
                                                          ".mxl), SVG (.svg, by Verovio; a file a page) or PDF (.pdf, "
                                                          "by MuseScore 3).")],
    staves: Annotated[int, typer.Option(min=2, max=4, help="2: soprano and alto on the treble staff, tenor and bass "
                                                           "on the bass staff; 4: a staff each.")] = 2,
    beats_per_bar: Annotated[int, _setting("beats_per_bar")] = SETTINGS["beats_per_bar"].default,
    pickup: Annotated[float, typer.Option(min=0.0, max=11.75, help="Beats before the first bar line (an upbeat), in "
                                                                   "quarter notes.")] = 0.0,
    title: Annotated[Optional[str], typer.Option(help="The score's title (default: the file's name).")] = None,
    analysis: Annotated[bool, typer.Option("--analysis", help="Each beat's chord as a Roman numeral under the bass "
                                                              "(I, V6, ii65, V7/V), and PAC, IAC, HC, PC or DC at the "
                                                              "phrase ends.")] = False,
) -> None:
    """Write a MIDI file as a chorale score: MusicXML for notation programs (MuseScore, Sibelius, Dorico), or
    engraved as SVG or PDF. Key and time signatures, ties, accidentals spelled in the key, fermatas at the phrase
    ends."""
    with _errors():
        from bachd.files.commands import score_file

        if staves == 3:
            raise BachdError("--staves is 2 or 4")
        steps = round(pickup * 4)
        if steps >= beats_per_bar * 4:
            raise BachdError(f"--pickup must be shorter than a bar of {beats_per_bar} beats")
        written = score_file(midi, out, beats_per_bar=beats_per_bar, staves=staves, pickup_steps=steps, title=title,
                             analysis=analysis)
        pages = f" ({len(written)} pages: {', '.join(p.name for p in written)})" if len(written) > 1 else ""
        typer.echo(f"wrote {out}: {staves} staves{pages}")


def _enum(name: str, values: Iterable[str]) -> type[Enum]:
    """``values`` as the Enum typer lists and checks."""
    choices: type[Enum] = Enum(name, {v: v for v in values}, type=str)  # type: ignore[assignment, misc]
    return choices


if TYPE_CHECKING:  # built from the declared choices and the registries when the command line is
    Mode = Enum
    ClockSource = Enum
    StartOn = Enum
    MidiBackend = Enum
    EngineBackend = Enum
else:
    Mode, ClockSource, StartOn = (_enum(n.title().replace("_", ""), SETTINGS[n].choices)
                                  for n in ("mode", "clock", "start_on"))
    MidiBackend = _enum("MidiBackend", ("auto", *MIDI_BACKENDS))
    EngineBackend = _enum("EngineBackend", ("auto", *ENGINES))


def _run_flags(given: dict[str, Any]) -> dict[str, Any]:
    """``bachd run``'s settings options as given (None: not given), by their declared names,
    with ``--programs`` as the preset's [sound] table."""
    from bachd.presets import SOUND_PARTS

    flags = {name: value.value if isinstance(value, Enum) else value
             for name, value in given.items() if name in SETTINGS}
    if given.get("programs") is not None:
        flags["sound"] = dict(zip(SOUND_PARTS, _programs(given["programs"]) or ()))
    return flags


@app.command("run")
def run_cli(
    preset: Annotated[
        Optional[str], typer.Option("--preset", "-p", help="A preset name (see `bachd presets`) or a .toml file.")
    ] = None,
    mode: Annotated[Optional[Mode], _setting("mode")] = None,
    clock: Annotated[Optional[ClockSource], _setting("clock")] = None,
    bpm: Annotated[Optional[float], _setting("bpm")] = None,
    beats_per_bar: Annotated[Optional[int], _setting("beats_per_bar")] = None,
    temperature: Annotated[Optional[float], _setting("temperature")] = None,
    top_p: Annotated[Optional[float], _setting("top_p")] = None,
    rhythm_temperature: Annotated[Optional[float], _setting("rhythm_temperature")] = None,
    key_pull: Annotated[Optional[float], _setting("key_pull")] = None,
    minor_pull: Annotated[Optional[float], _setting("minor_pull")] = None,
    inner_pull: Annotated[Optional[float], _setting("inner_pull")] = None,
    root_pull: Annotated[Optional[float], _setting("root_pull")] = None,
    chord_draws: Annotated[Optional[int], _setting("chord_draws")] = None,
    response_bars: Annotated[Optional[int], _setting("response_bars")] = None,
    listen_gap: Annotated[Optional[float], _setting("listen_gap")] = None,
    max_hold_beats: Annotated[Optional[float], _setting("max_hold_beats")] = None,
    start_on: Annotated[Optional[StartOn], _setting("start_on")] = None,
    allow_overlap: Annotated[Optional[bool], _setting("allow_overlap", "--allow-overlap/--no-allow-overlap")] = None,
    allow_parallels: Annotated[
        Optional[bool], _setting("allow_parallels", "--allow-parallels/--no-allow-parallels")
    ] = None,
    rng_seed: Annotated[Optional[int], _setting("rng_seed")] = None,
    in_channel: Annotated[Optional[int], _setting("in_channel")] = None,
    out_channel: Annotated[Optional[int], _setting("out_channel")] = None,
    velocity: Annotated[Optional[str], _setting("velocity")] = None,
    record: Annotated[Optional[str], _setting("record")] = None,
    soundfont: Annotated[Optional[str], _setting("soundfont")] = None,
    programs: Annotated[Optional[str], typer.Option(help=PROGRAMS_HELP + " Also the preset's [sound] table.")] = None,
    in_port: Annotated[
        str, typer.Option("--in", help="Name of the input port to create, or of an existing port to open.")
    ] = "bachd-in",
    out_port: Annotated[
        str, typer.Option("--out", help="Name of the output port to create, or of an existing port to open.")
    ] = "bachd-out",
    backend: Annotated[
        MidiBackend, typer.Option(help="MIDI system; auto takes the first that works.")
    ] = MidiBackend("auto"),
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped one).")
    ] = None,
    engine: Annotated[
        EngineBackend,
        typer.Option(help="Streaming engine: numpy (auto), or tf/xla on TensorFlow (needs bachd[train]; for a GPU)."),
    ] = EngineBackend("auto"),
    status: Annotated[
        Optional[bool],
        typer.Option("--status/--no-status", help="Show the live status line (default: when stderr is a terminal)."),
    ] = None,
    stats_json: Annotated[
        Optional[Path], typer.Option(help="On exit, write counts and output lateness to this JSON file.")
    ] = None,
    monitor: Annotated[
        bool,
        typer.Option(
            "--monitor",
            help="Also play what bachd sends through the audio output (a "
            "General MIDI SoundFont if one is found or given with "
            "--soundfont, else the built-in organ).",
        ),
    ] = False,
    monitor_input: Annotated[
        bool, typer.Option("--monitor-input", help="With --monitor: play what you play too (a quieter stop).")
    ] = False,
    audio_device: Annotated[
        Optional[str], typer.Option(help="Audio output for --monitor: an index or part of a name (see `bachd ports`).")
    ] = None,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="Serve a control surface in the browser (its address, with this "
            "run's access token, is in the ready line).",
        ),
    ] = False,
    ui_port: Annotated[
        int, typer.Option(min=0, max=65535, help="With --ui: the port to serve on (0: a free one).")
    ] = 0,
    ui_host: Annotated[
        str,
        typer.Option(
            help="With --ui: the address to serve on. Anything but 127.0.0.1 lets other computers reach the panel."
        ),
    ] = "127.0.0.1",
) -> None:
    """Play live: open virtual MIDI ports and answer or harmonize what you play."""
    given = dict(locals())
    _one_blas_thread()
    with _errors():
        from bachd.live.daemon import RunOptions
        from bachd.live.launch import run
        from bachd.presets import resolve

        flags = _run_flags(given)

        options = RunOptions(
            settings=resolve(preset, flags), model_path=model or default_model_path(), in_name=in_port,
            out_name=out_port, backend=backend.value, engine=engine.value, status=status, stats_path=stats_json,
            monitor=monitor or monitor_input, monitor_input=monitor_input, audio_device=audio_device,
        )
        companions: tuple[Any, ...] = ()
        if ui:  # only now: without --ui, bachd loads no web code
            from bachd.web.panel import ControlSurface

            companions = (ControlSurface(ui_host, ui_port),)  # binds now: a taken port fails before MIDI opens
        raise typer.Exit(run(options, on_ready=lambda line: typer.echo(line), companions=companions))


def _replay_command(mode: str):
    """``bachd harmonize`` and ``bachd continue``: one signature, two modes."""

    def command(
        source: Annotated[
            Path,
            typer.Argument(
                help="A MIDI file: the melody (its top line) to harmonize, or the call (up to four parts) to answer."
            ),
        ],
        out: Annotated[
            Path,
            typer.Option(
                "--out",
                "-o",
                help="The file to write: MIDI (.mid), your notes and "
                "bachd's, a track per voice; or a MusicXML score "
                "(.musicxml, .mxl) of the four voices.",
            ),
        ],
        preset: Annotated[
            Optional[str], typer.Option("--preset", "-p", help="A preset name or .toml file, as for `bachd run`.")
        ] = None,
        bpm: Annotated[Optional[float], _setting("bpm")] = None,
        beats_per_bar: Annotated[Optional[int], _setting("beats_per_bar")] = None,
        pickup: Annotated[
            float,
            typer.Option(min=0.0, max=11.75, help="Beats before the first bar line (an upbeat), in quarter notes, "
                         "for a file that writes its upbeat on beat 1 (as bachd score's --pickup). Default: the "
                         "file's first note is on beat 1."),
        ] = 0.0,
        channel: Annotated[
            Optional[int], typer.Option(min=1, max=16, help="Read only this channel (default: all but 10, drums).")
        ] = None,
        track: Annotated[Optional[int], typer.Option(min=0, help="Read only this track (0-based).")] = None,
        temperature: Annotated[Optional[float], _setting("temperature")] = None,
        top_p: Annotated[Optional[float], _setting("top_p")] = None,
        rhythm_temperature: Annotated[Optional[float], _setting("rhythm_temperature")] = None,
        key_pull: Annotated[Optional[float], _setting("key_pull")] = None,
        minor_pull: Annotated[Optional[float], _setting("minor_pull")] = None,
        inner_pull: Annotated[Optional[float], _setting("inner_pull")] = None,
        root_pull: Annotated[Optional[float], _setting("root_pull")] = None,
        chord_draws: Annotated[Optional[int], _setting("chord_draws")] = None,
        allow_parallels: Annotated[
            Optional[bool], _setting("allow_parallels", "--allow-parallels/--no-allow-parallels")
        ] = None,
        rng_seed: Annotated[Optional[int], _setting("rng_seed")] = None,
        velocity: Annotated[Optional[str], _setting("velocity")] = None,
        response_bars: Annotated[Optional[int], _setting("response_bars")] = None,
        listen_gap: Annotated[Optional[float], _setting("listen_gap")] = None,
        start_on: Annotated[Optional[StartOn], _setting("start_on")] = None,
        model: Annotated[
            Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped one).")
        ] = None,
        analysis: Annotated[
            bool,
            typer.Option(
                "--analysis",
                help="With a MusicXML --out: each beat's chord as a "
                "Roman numeral under the bass (I, V6, ii65, V7/V), "
                "and PAC, IAC, HC, PC or DC at the phrase ends.",
            ),
        ] = False,
    ) -> None:
        flags = {
            name: value.value if isinstance(value, Enum) else value
            for name, value in locals().items()
            if name in SETTINGS
        }
        _one_blas_thread()
        with _errors():
            from bachd.files.replay import replay_file
            from bachd.presets import resolve

            flags.pop("bpm")  # the file's own tempo and time signature, unless given here
            flags.pop("beats_per_bar")
            replay_file(mode, source, out, resolve(preset, flags), model or default_model_path(), bpm=bpm,
                        channel=channel, track=track, say=typer.echo, analysis=analysis,
                        beats_per_bar=beats_per_bar, pickup=pickup)

    return command


app.command("harmonize", help=(
    "Harmonize a melody file through the live harmonizer, as `bachd run --mode harmonize` would "
    "play under it, note by note with no look-ahead, on a simulated clock."))(_replay_command("harmonize"))
app.command("continue", help=(
    "Answer a call from a file through the live call-and-response performer, as `bachd run "
    "--mode continue` would, on a simulated clock."))(_replay_command("continue"))


@app.command("ui")
def ui_cli(
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="A bachd .keras model (default: the shipped "
                                                                        "one).")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="The port to serve on (0: a free one).")] = 0,
    host: Annotated[str, typer.Option(help="The address to serve on. Anything but 127.0.0.1 lets other computers "
                                           "reach the page.")] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in the web browser.")] = False,
) -> None:
    """The studio page in your browser: harmonize, continue or generate from a MIDI file or a chorale; listen, see,
    download. No MIDI ports needed."""
    _one_blas_thread()
    with _errors():
        from bachd.model.modelfile import read_config
        from bachd.web.studio import serve

        model_path = model or default_model_path()
        read_config(model_path)  # a missing or foreign model fails before the page is served
        raise typer.Exit(serve(model_path, host, port, on_ready=typer.echo, open_browser=open_browser))


@app.command("service", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def service_cli(ctx: typer.Context) -> None:
    """Print a systemd user unit that runs `bachd run ARGS...` and restarts it if it stops
    (the JACK server restarting, a port unplugged), up to ten times in five minutes. The
    options are checked as bachd run checks them first. Save it as
    ~/.config/systemd/user/bachd.service, then: systemctl --user enable --now bachd"""
    with _errors():
        from bachd.live.service import unit_text

        _check_run_options(list(ctx.args))
        typer.echo(unit_text(list(ctx.args)), nl=False)


def _check_run_options(args: list[str]) -> None:
    """``args`` as ``bachd run`` would take them: parsed by its own command, the settings
    resolved over the preset, the model read; a unit that could only fail is never written."""
    from bachd.model.modelfile import read_config
    from bachd.presets import resolve

    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    try:
        with run.make_context("bachd run", list(args)) as run_ctx:
            params = run_ctx.params
    except Exception as error:  # click's usage errors (typer may carry its own copy of click)
        if type(error).__name__ == "Exit":  # --help
            raise BachdError("bachd service takes bachd run's options; see `bachd run --help`") from None
        if not hasattr(error, "format_message"):
            raise
        raise BachdError(f"bachd run {shlex.join(args)}: {error.format_message()}") from None
    resolve(params.get("preset"), _run_flags(params))
    read_config(params.get("model") or default_model_path())


@app.command("doctor")
def doctor_cli(
    backend: Annotated[MidiBackend, typer.Option(help="The MIDI system to check, as for bachd run.")] = MidiBackend(
        "auto"
    ),
    in_port: Annotated[str, typer.Option("--in", help="bachd's input port name, as for bachd run.")] = "bachd-in",
    out_port: Annotated[str, typer.Option("--out", help="bachd's output port name, as for bachd run.")] = "bachd-out",
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="The model bachd run would load.")] = None,
    engine: Annotated[EngineBackend, typer.Option(help="The engine bachd run would use.")] = EngineBackend("auto"),
) -> None:
    """Check what bachd run needs (Python and packages, the MIDI systems and bachd's port names, the audio output
    and SoundFont, the model and its step time), one line each with what to do; exit 0 only when bachd run would
    play."""
    _one_blas_thread()
    with _errors():
        from bachd.live.doctor import examine, would_play

        findings = examine(backend.value, (in_port, out_port), model, engine.value)
        for finding in findings:
            typer.echo(finding.line())
        if not would_play(findings):
            raise BachdError("bachd run would not play here: see the lines marked FAIL")
        typer.echo("bachd run would play here.")


@app.command("ports")
def ports_cli() -> None:
    """List MIDI backends and their ports, and the audio outputs for --monitor."""
    with _errors():
        from bachd.live.ports import compiled_backends, no_backend_message, probe

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
            from bachd.sound.audio import output_devices

            devices = output_devices()
        except BachdError as error:
            typer.echo(f"audio (for --monitor): not available: {error}")
        else:
            typer.echo("audio outputs (for --monitor --audio-device):" + ("" if devices else " none"))
            for device in devices:
                default = "  (default)" if device["default"] else ""
                typer.echo(f"  {device['index']}: {device['name']} [{device['hostapi']}, {device['channels']} "
                           f"channels]{default}")


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
            doctor = " (`bachd doctor` checks the whole setup)" if issubclass(kind, SetupError) else ""
            typer.echo(f"error: {value}{doctor}", err=True)
            raise typer.Exit(1)
        if issubclass(kind, KeyboardInterrupt):
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        return False


def main() -> None:
    app()
