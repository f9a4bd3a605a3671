"""Offline training: tf.data crops → Keras fit, with best-only checkpoints, resume, logs.

A run that stops part way (Ctrl-C, a time budget, a killed session) loses at most one
epoch: ``<out>.run/`` holds the last epoch's model and optimizer state plus the early
stopping state, and ``--resume`` continues from there with the same data order.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import bachd
from bachd.errors import BachdError
from bachd.model.keras_model import ModelConfig, build_model, config_of, input_names, keras, load_model, save_model, tf
from bachd.model.metrics import evaluate_pieces
from bachd.model.modelfile import card_path, read_config
from bachd.model.windows import CropSampler, WindowConfig, piece_key_row, piece_period, sequence_arrays
from bachd.music import encoding
from bachd.music.corpus import Corpus, Piece, load_corpora
from bachd.outputs import check_output

DISTRIBUTE = ("none", "mirrored", "multiworker")


@dataclass
class TrainConfig:
    corpora: list[str] = field(default_factory=lambda: ["bach"])
    out: str = "models/default.keras"
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    patience: int = 10
    seed: int = 1729
    window: WindowConfig = field(default_factory=WindowConfig)
    distribute: str = "none"
    max_minutes: float | None = None
    allow_pickle: bool = False
    label_smoothing: float = 0.0
    threads: int | None = None  # CPU threads for TensorFlow's kernels (None: all cores)
    init_from: str | None = None  # a bachd model whose weights and architecture the run starts from
    ema: float | None = None  # Polyak averaging: momentum of the weights' moving average (None: off)
    teachers: list[str] = field(default_factory=list)  # bachd models whose mixed distribution the run also learns
    teacher_weights: list[float] = field(default_factory=list)  # their mixture weights (empty: equal)
    distill: float = 0.5  # with teachers: the loss's share on the teachers' distribution

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1 or self.window.window_steps < 1:
            raise BachdError("--epochs, --batch-size and --window-steps must be at least 1")
        if self.distribute not in DISTRIBUTE:
            raise BachdError(f"--distribute must be one of {', '.join(DISTRIBUTE)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise BachdError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.threads is not None and self.threads < 1:
            raise BachdError("--threads must be at least 1")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise BachdError(f"--ema must be in (0, 1), got {self.ema}")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise BachdError(f"--init-from: {self.init_from} does not exist")
        for teacher in self.teachers:
            if not Path(teacher).is_file():
                raise BachdError(f"--teacher: {teacher} does not exist")
        if not 0.0 < self.distill <= 1.0:
            raise BachdError(f"--distill must be in (0, 1], got {self.distill}")
        from bachd.model.distill import mixture_weights

        mixture_weights(self.teachers, self.teacher_weights)
        check_output(Path(self.out), "--out", (".keras",))
        return self


def run_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".run")


def make_strategy(name: str):
    """The tf.distribute strategy for ``--distribute`` (multiworker reads TF_CONFIG)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise BachdError("--distribute multiworker needs TF_CONFIG describing the cluster")
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
            workers = cluster["cluster"]["worker"]
            index = int(cluster["task"]["index"])
        except (ValueError, KeyError, TypeError):
            raise BachdError("TF_CONFIG is not a cluster description: see the README's two-machine example") from None
        if not 0 <= index < len(workers):
            raise BachdError(f"TF_CONFIG: task index {index} is not one of the {len(workers)} workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_index() -> int:
    """This process's index in TF_CONFIG's cluster (0, the chief, when there is none)."""
    try:
        return int(json.loads(os.environ.get("TF_CONFIG", "{}"))["task"]["index"])
    except (ValueError, KeyError, TypeError):
        return 0


def _pieces(corpora: list[Corpus], split: str) -> list[Piece]:
    return [p for c in corpora for p in c.split(split)]


def _validation_arrays(pieces: list[Piece], window_steps: int, positions: int) -> dict[str, np.ndarray]:
    """Every valid piece cut into consecutive windows (no overlap, no transposition), each
    with its piece's key."""
    windows = [
        sequence_arrays(p.tokens, start, p.phase, window_steps, piece_period(p, positions), piece_key_row(p))
        for p in pieces
        for start in range(0, p.steps, window_steps)
    ]
    return {k: np.stack([w[k] for w in windows]) for k in windows[0]}


def make_datasets(config: TrainConfig, train: list[Piece], valid: list[Piece], strategy, first_epoch: int,
                  positions: int, inputs: tuple[str, ...] = ("tokens", "voices", "beats"), soft: dict | None = None):
    """Training and validation datasets of (``inputs``, targets, weights) batches. With
    ``soft`` (a teacher's tables, :mod:`bachd.model.distill`), the targets are packed: the
    teacher's distribution with the note's index after it (:func:`hard_targets`); validation
    packs the note itself as the distribution, so its loss is its NLL."""
    length = config.window.window_steps * encoding.NUM_VOICES
    spec = {
        name: tf.TensorSpec((length,), tf.float32 if name == "weights" else tf.int32)
        for name in ("tokens", "voices", "beats", "keys", "targets", "weights")
    }
    if soft is not None:
        spec["soft"] = tf.TensorSpec((length, encoding.VOCAB_SIZE), tf.float16)

    def _split_xy(batch: dict):
        targets = batch["targets"]
        if soft is not None:
            given = batch["soft"] if "soft" in batch else tf.one_hot(targets, encoding.VOCAB_SIZE, dtype=tf.float16)
            targets = tf.concat([tf.cast(given, tf.float32), tf.cast(targets, tf.float32)[..., None]], axis=-1)
        return ({k: batch[k] for k in inputs}, targets, batch["weights"])

    epoch_counter = [first_epoch]

    def generate():
        # A fresh, seeded sampler per epoch: the data order does not depend on resuming.
        sampler = CropSampler(train, config.window, config.seed * 100_003 + epoch_counter[0], positions, soft)
        epoch_counter[0] += 1
        yield from sampler.epoch()

    steps_per_epoch = max(1, CropSampler(train, config.window, config.seed).crops_per_epoch // config.batch_size)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    train_ds = (
        tf.data.Dataset.from_generator(generate, output_signature=spec)
        .repeat()  # each pass calls generate() again: fresh crops every epoch
        .batch(global_batch, drop_remainder=True)
        .map(_split_xy)
        .prefetch(tf.data.AUTOTUNE)
    )
    valid_ds = tf.data.Dataset.from_tensor_slices(_validation_arrays(valid, config.window.window_steps, positions))
    valid_ds = valid_ds.batch(global_batch).map(_split_xy).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    steps_per_epoch = max(1, steps_per_epoch // strategy.num_replicas_in_sync)
    return train_ds.with_options(options), valid_ds.with_options(options), steps_per_epoch


def hard_targets(y):
    """The notes' token indices from targets that may be packed with a teacher's distribution
    (:func:`make_datasets`)."""
    if len(y.shape) == 3:
        y = y[..., -1]
    return keras.ops.cast(y, "int32")


@keras.saving.register_keras_serializable(package="bachd")
class HardAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy on the notes, whether or not the targets carry a teacher's distribution."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(hard_targets(y_true), y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="bachd")
class HardNLL(keras.metrics.SparseCategoricalCrossentropy):
    """NLL of the notes, whether or not the targets carry a teacher's distribution."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(hard_targets(y_true), y_pred, sample_weight)


def compile_model(model: keras.Model, config: TrainConfig, total_steps: int) -> None:
    warmup = min(200, max(1, total_steps // 20))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.05,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        schedule, weight_decay=config.weight_decay, clipnorm=config.clipnorm,
        use_ema=config.ema is not None, ema_momentum=config.ema or 0.99,
    )
    model.compile(
        optimizer=optimizer,
        loss=SmoothedSparseCrossentropy(config.label_smoothing, config.distill if config.teachers else 0.0),
        weighted_metrics=[HardAccuracy(name="accuracy"), HardNLL(from_logits=True, name="nll")],
        jit_compile=False,
    )


@keras.saving.register_keras_serializable(package="bachd")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer targets with optional label smoothing: the target keeps
    1 - eps of the mass and eps is spread over the whole vocabulary. eps = 0 is plain NLL.

    With ``distill`` and targets packed with a teacher's distribution (:func:`make_datasets`),
    that share of the loss is the cross-entropy against the teacher's distribution instead."""

    def __init__(self, smoothing: float = 0.0, distill: float = 0.0, name: str = "smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)
        self.distill = float(distill)

    def call(self, y_true, y_pred):
        log_probs = keras.ops.log_softmax(keras.ops.cast(y_pred, "float32"), axis=-1)
        hard = hard_targets(y_true)
        nll = -keras.ops.squeeze(keras.ops.take_along_axis(log_probs, keras.ops.expand_dims(hard, -1), axis=-1), -1)
        if self.smoothing:
            nll = (1.0 - self.smoothing) * nll - self.smoothing * keras.ops.mean(log_probs, axis=-1)
        if not self.distill or len(y_true.shape) != 3:
            return nll
        taught = -keras.ops.sum(keras.ops.cast(y_true[..., :-1], "float32") * log_probs, axis=-1)
        return (1.0 - self.distill) * nll + self.distill * taught

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing, "distill": self.distill}


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow to ``threads`` CPU threads; must run before TensorFlow's first op."""
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        print("--threads ignored: TensorFlow was already running in this process", file=sys.stderr)


class RunState(keras.callbacks.Callback):
    """Best-only checkpoint, early stopping that restores the best weights, resumable state,
    and an optional time budget — one callback, because Keras' own callbacks forget their
    state when a run is resumed."""

    def __init__(self, config: TrainConfig, state: dict, started: float):
        super().__init__()
        self.config = config
        self.state = state
        self.started = started
        self.directory = run_dir(config.out)
        self.best_weights = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        # Checkpoints follow the validation NLL, not the loss, which label smoothing changes.
        val_loss = float(logs.get("val_nll", logs.get("val_loss", math.inf)))
        self.state["epoch"] = epoch + 1
        self.state["elapsed_seconds"] = self.state.get("elapsed_seconds_before", 0.0) + time.monotonic() - self.started
        if val_loss < self.state.get("best_val_loss", math.inf):
            self.state.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0)
            self.best_weights = self.model.get_weights()
            save_artifact(self.model, self.directory / "best.keras")
        else:
            self.state["wait"] = self.state.get("wait", 0) + 1
        self.model.save(str(self.directory / "last.keras"))
        (self.directory / "state.json").write_text(json.dumps(self.state, indent=2))
        if self.state["wait"] >= self.config.patience:
            print(f"early stopping: no improvement for {self.config.patience} epochs", file=sys.stderr)
            self.model.stop_training = True
        budget = self.config.max_minutes
        if budget is not None and self.state["elapsed_seconds"] >= budget * 60:
            print(f"stopping: time budget of {budget:g} minutes reached", file=sys.stderr)
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit_distributed(model: keras.Model, strategy, train_ds, valid_ds, config: TrainConfig, initial_epoch: int,
                    steps_per_epoch: int, callbacks: list) -> None:
    """The training loop for MultiWorkerMirroredStrategy, which Keras 3's ``fit()`` cannot
    run (keras-team/keras#20585): each replica computes the loss of its share of the global
    batch, the optimizer all-reduces the gradients, and every worker evaluates the same
    synchronised weights on the whole validation set. Logs and callbacks as ``fit()``'s."""
    loss_fn = SmoothedSparseCrossentropy(config.label_smoothing, config.distill if config.teachers else 0.0)
    replicas = strategy.num_replicas_in_sync
    optimizer = model.optimizer

    def sums(y, logits, w):
        """Weighted sums of loss, NLL and correct predictions, and the weight itself."""
        notes = hard_targets(y)
        nll = keras.losses.sparse_categorical_crossentropy(notes, logits, from_logits=True)
        right = tf.cast(tf.equal(tf.cast(tf.argmax(logits, -1), notes.dtype), notes), tf.float32)
        return tf.stack([tf.reduce_sum(t * w) for t in (loss_fn.call(y, logits), nll, right)] + [tf.reduce_sum(w)])

    def replica_step(x, y, w):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_sum(loss_fn.call(y, logits) * w) / tf.maximum(tf.reduce_sum(w), 1.0) / replicas
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums(y, logits, w)

    @tf.function
    def train_step(iterator):
        x, y, w = next(iterator)
        return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y, w)), axis=None)

    @tf.function
    def valid_step(x, y, w):
        return sums(y, tf.cast(model(x, training=False), tf.float32), w)

    def figures(sums) -> dict:
        loss, nll, right, weight = (float(v) for v in sums)
        weight = max(weight, 1.0)
        return {"loss": loss / weight, "nll": nll / weight, "accuracy": right / weight}

    @tf.function
    def stop_anywhere(flag):
        return strategy.reduce("SUM", strategy.run(lambda f: f, args=(flag,)), axis=None)

    def agree_to_stop(stop: bool) -> bool:
        return bool(stop_anywhere(tf.constant(1.0 if stop else 0.0)) > 0)

    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=config.epochs, steps=steps_per_epoch)
    hooks.on_train_begin()
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    verbose = sys.stderr.isatty()
    for epoch in range(initial_epoch, config.epochs):
        started = time.monotonic()
        hooks.on_epoch_begin(epoch)
        total = np.zeros(4)
        for _ in range(steps_per_epoch):
            total += train_step(iterator).numpy()
        valid = np.zeros(4)
        hooks.on_test_begin()  # as in fit(): with --ema, validation sees the averaged weights
        for x, y, w in valid_ds:
            valid += valid_step(x, y, w).numpy()
        hooks.on_test_end()
        logs = {**figures(total), **{f"val_{k}": v for k, v in figures(valid).items()}}
        if verbose or worker_index() == 0:
            print(f"epoch {epoch + 1}/{config.epochs} - {time.monotonic() - started:.0f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stderr)
        hooks.on_epoch_end(epoch, logs)
        # Every worker must stop at the same epoch, or the others wait forever for it: a stop
        # (time budget, early stopping) anywhere is a stop everywhere.
        if agree_to_stop(bool(model.stop_training)):
            break
    hooks.on_train_end()


def _swap_average(model: keras.Model) -> None:
    """Exchange the model's weights with the optimizer's moving average of them."""
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap._swap_variables()


def validation_nll(model: keras.Model, valid_ds) -> float:
    """The validation NLL the training loop logs (``val_nll``), for weights not yet trained."""
    total = weight = 0.0
    for x, y, w in valid_ds:
        logits = tf.cast(model(x, training=False), tf.float32)
        nll = keras.losses.sparse_categorical_crossentropy(hard_targets(y), logits, from_logits=True)
        total += float(tf.reduce_sum(nll * w))
        weight += float(tf.reduce_sum(w))
    return total / max(weight, 1.0)


def save_artifact(model: keras.Model, path: Path) -> None:
    """Save the weights in a fresh, uncompiled copy: no optimizer state in shipped models."""
    clean = build_model(config_of(model))
    clean.set_weights(model.get_weights())
    tmp = path.with_name(path.stem + ".tmp.keras")
    save_model(clean, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, model_config: ModelConfig, resume: bool = False, command: str = "") -> dict:
    """Train a model as configured; returns its model card (also written beside the model)."""
    if config.distribute == "multiworker" and worker_index() > 0:
        # One model is trained; the chief writes it. The other workers keep their copies apart,
        # and check only their own: two workers checking one path raced each other.
        chief = Path(config.out)
        config = replace(config, out=str(run_dir(chief) / f"worker-{worker_index()}" / chief.name))
    config.validate()
    model_config.validate()
    set_threads(config.threads)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything.
    strategy = make_strategy(config.distribute)
    out = Path(config.out)
    directory = run_dir(out)
    if directory.exists() and (directory / "state.json").exists() and not resume:
        raise BachdError(f"{directory} holds an unfinished run; pass --resume to continue it or delete it")
    if resume and not (directory / "last.keras").exists():
        raise BachdError(f"nothing to resume: {directory / 'last.keras'} does not exist")
    keras.utils.set_random_seed(config.seed)
    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    corpora = load_corpora(config.corpora, allow_pickle=config.allow_pickle)
    for corpus in corpora:
        for reason in corpus.skipped:
            print(f"skipped {reason}", file=sys.stderr)
    train_pieces, valid_pieces = _pieces(corpora, "train"), _pieces(corpora, "valid")
    if not train_pieces:
        raise BachdError("the corpora have no training pieces")
    if not valid_pieces:
        # A corpus without a validation split (a small MIDI folder) still needs one to stop early.
        valid_pieces = train_pieces[-max(1, len(train_pieces) // 10) :]
        train_pieces = train_pieces[: len(train_pieces) - len(valid_pieces)] or valid_pieces
    directory.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    state: dict = {"epoch": 0}
    if resume:
        state = json.loads((directory / "state.json").read_text())
        state["elapsed_seconds_before"] = state.get("elapsed_seconds", 0.0)
        if state.get("teachers"):
            # The run's own teachers, as its optimizer decides --ema: whatever the resume says.
            config = replace(config, teachers=state["teachers"], teacher_weights=state["teacher_weights"],
                             distill=state["distill"])
    elif config.teachers:
        state.update(teachers=config.teachers, teacher_weights=config.teacher_weights, distill=config.distill)
    if resume:  # the run's own model decides what its position input counts
        model_config = read_config(directory / "last.keras")
    start_weights = None
    if config.init_from is not None and not resume:  # fine-tuning: the starting model's architecture
        start = load_model(config.init_from)
        model_config, start_weights = config_of(start), start.get_weights()
    soft = None
    if config.teachers:
        from bachd.model.distill import soft_tables

        soft = soft_tables(config.teachers, config.teacher_weights, train_pieces, config.window.transpose)
    train_ds, valid_ds, steps_per_epoch = make_datasets(
        config,
        train_pieces,
        valid_pieces,
        strategy,
        state["epoch"],
        model_config.positions,
        input_names(model_config),
        soft,
    )
    with strategy.scope():
        if resume:
            model = load_model(directory / "last.keras", compile=True)
            # The run's own optimizer decides whether it averages, as its model decides the
            # architecture: last.keras holds the average in the model (what each epoch
            # checkpoints) and the trained weights in the optimizer; swap them back.
            averaging = bool(getattr(model.optimizer, "use_ema", False))
            config = replace(config, ema=model.optimizer.ema_momentum if averaging else None)
            if averaging:
                _swap_average(model)
        else:
            model = build_model(model_config)
            if start_weights is not None:
                model.set_weights(start_weights)
            compile_model(model, config, config.epochs * steps_per_epoch)
    if start_weights is not None:
        # The starting model is the checkpoint to beat: a fine-tune that only makes the
        # validation figure worse hands back the model it started from.
        start_nll = validation_nll(model, valid_ds)
        state.update(start_val_nll=start_nll, best_val_loss=start_nll, best_epoch=0, wait=0)
        print(f"starting from {config.init_from}: validation NLL {start_nll:.4f}", file=sys.stderr)
    print(
        f"training {model.count_params():,} parameters on {len(train_pieces)} pieces "
        f"({sum(p.steps for p in train_pieces):,} steps), validating on {len(valid_pieces)}; "
        f"{steps_per_epoch} batches per epoch, {strategy.num_replicas_in_sync} device(s)",
        file=sys.stderr,
    )
    state_callback = RunState(config, state, time.monotonic())
    callbacks = [
        # First: with --ema, validation and the checkpoints see the weights' moving average.
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema is not None else []),
        state_callback,
        keras.callbacks.CSVLogger(str(directory / "log.csv"), append=resume),
    ]
    if config.distribute != "multiworker":
        callbacks.append(
            keras.callbacks.TensorBoard(str(directory / "tensorboard"), write_graph=False, profile_batch=0)
        )
    if resume and (directory / "best.keras").exists():
        state_callback.best_weights = load_model(directory / "best.keras").get_weights()
    elif start_weights is not None:
        state_callback.best_weights = start_weights
        save_artifact(model, directory / "best.keras")
    budget_left = config.max_minutes is None or state.get("elapsed_seconds", 0.0) < config.max_minutes * 60
    if state["epoch"] < config.epochs and state.get("wait", 0) < config.patience and budget_left:
        if config.distribute == "multiworker":
            fit_distributed(model, strategy, train_ds, valid_ds, config, state["epoch"], steps_per_epoch, callbacks)
        else:
            model.fit(
                train_ds,
                validation_data=valid_ds,
                epochs=config.epochs,
                initial_epoch=state["epoch"],
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=1 if sys.stderr.isatty() else 2,
            )
    elif state_callback.best_weights is not None:
        model.set_weights(state_callback.best_weights)
    save_artifact(model, out)
    card = write_card(model, config, corpora, state, command)
    from bachd.sound.plots import plot_history

    plot_history(directory / "log.csv", out.with_name(out.stem + ".curves.png"))
    return card


def corpus_metrics(model, corpora: list[Corpus]) -> dict:
    """Each corpus's valid and test figures on their own: trained on several corpora, a
    model's benchmark figure is the one on its benchmark corpus alone."""
    return {
        corpus.spec: {
            split: evaluate_pieces(model, corpus.split(split)) for split in ("valid", "test") if corpus.split(split)
        }
        for corpus in corpora
    }


def write_card(model, config: TrainConfig, corpora, state: dict, command: str) -> dict:
    metrics = {}
    for split in ("valid", "test"):
        pieces = _pieces(corpora, split)
        if pieces:
            metrics[split] = evaluate_pieces(model, pieces)
    card = {
        "name": Path(config.out).stem,
        "bachd": bachd.__version__,
        "representation": {
            "version": encoding.REPRESENTATION_VERSION,
            "vocab_size": encoding.VOCAB_SIZE,
            "pitch_range": [encoding.PITCH_LOW, encoding.PITCH_HIGH],
            "tokens": "PAD=0, BOS=1, REST=2, attack(p)=3+2(p-low), hold(p)=4+2(p-low)",
            "steps_per_beat": encoding.STEPS_PER_BEAT,
            "voices": list(encoding.VOICES),
        },
        "model": config_of(model).to_dict(),
        "parameters": int(model.count_params()),
        "training": {**asdict(config), "resumed": "elapsed_seconds_before" in state},
        "corpora": [
            {
                "spec": c.spec,
                "pieces": {s: len(c.split(s)) for s in ("train", "valid", "test")},
                "skipped": len(c.skipped),
            }
            for c in corpora
        ],
        "split": "the corpus's own split where it has one, else 80/10/10 by a hash of each piece's name",
        "metrics": metrics,
        "metrics_by_corpus": corpus_metrics(model, corpora) if len(corpora) > 1 else {},
        "epochs_run": state.get("epoch", 0),
        "best_epoch": state.get("best_epoch"),
        "start_val_nll": state.get("start_val_nll"),
        "training_seconds": round(state.get("elapsed_seconds", 0.0), 1),
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
    }
    card_path(config.out).write_text(json.dumps(card, indent=2) + "\n")
    return card
