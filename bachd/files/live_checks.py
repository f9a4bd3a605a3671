"""``bachd eval --harmonize``: Bach's own melodies played into the live harmonizer, and what
it plays measured beside Bach's harmonizations of the same melodies.

Each chorale's soprano is played note by note, on the grid, into a
:class:`~bachd.live.session.Session` in harmonize mode, exactly as from a DAW; bachd's alto,
tenor and bass are read back onto the grid. Figures (each for bachd and for Bach):

- parallel 5ths/8ves in similar and in contrary motion, per 100 chord changes;
- notes in the detected key (Krumhansl–Kessler; minor admits the raised 6th and 7th), and
  in the key of Bach's harmonization (one key for both);
- chord vocabulary: share of beats whose four voices make a complete triad or seventh;
- cadences at the melody's phrase ends (a note of a half note or longer, or one before a
  rest): the last two chords V–I or IV–I in root position, in any key and in the home key;
- chord changes per beat; spacing (more than an octave between soprano and alto or alto
  and tenor, % of steps); voice crossings (% of steps);
- note-in-chord: melody attacks whose four-voice sonority is a triad or seventh (so the
  melody note is a chord tone);
- agreement with Bach's alto, tenor and bass, note by note;
- and, for the model alone, the NLL of Bach's lower voices given the soprano (nats per
  token, pitch-level), as the live harmonizer conditions on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

import numpy as np

from bachd.files.replay import PlayedFile, perform
from bachd.midi import NOTE_OFF, NOTE_ON, is_note_on
from bachd.music import analysis, encoding
from bachd.music.analysis import Margin
from bachd.presets import LiveSettings

SILENT = encoding.SILENT
V = encoding.NUM_VOICES
BPM = 100.0  # the tempo the melodies are played at
DOWNBEAT = (0, encoding.STEPS_PER_BAR)  # (phase, bar steps) of a 4/4 piece starting on beat 1


def melody_of(tokens: np.ndarray, bpm: float = BPM, lead: int = 0) -> PlayedFile:
    """The soprano of a (T, 4) token array as timed note events on the grid, after ``lead``
    silent steps (a piece whose first step falls at 16th ``lead`` of its bar)."""
    pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
    step_seconds = 60.0 / bpm / encoding.STEPS_PER_BEAT
    events, start = [], None
    soprano = pitches[:, 0]
    for step in range(len(soprano) + 1):
        pitch = soprano[step] if step < len(soprano) else SILENT
        new = step < len(soprano) and attacks[step, 0]
        if start is not None and (pitch != soprano[start] or new):
            events.append((step * step_seconds, (NOTE_OFF, int(soprano[start]), 0)))
            start = None
        if pitch != SILENT and start is None:
            events.append((step * step_seconds, (NOTE_ON, int(pitch), 80)))
            start = step
    events = [(t + lead * step_seconds, message) for t, message in events]
    events.sort(key=lambda e: (e[0], e[1][0] == NOTE_ON))
    return PlayedFile(events, bpm, (lead + len(soprano)) * step_seconds)


def grid_of(sent: list[tuple[float, tuple]], melody: np.ndarray, step_seconds: float) -> np.ndarray:
    """bachd's output messages back onto the grid, under the soprano of ``melody`` (T, 4
    tokens): bachd's (T, 4) tokens."""
    pitches, attacks = encoding.decode_pitches(melody)
    ours, our_attacks = _on_grid(sent, pitches.shape[0], step_seconds, voices=range(1, V))
    pitches[:, 1:], attacks[:, 1:] = ours[:, 1:], our_attacks[:, 1:]
    return encoding.encode_pitches(pitches, attacks)


def _on_grid(
    sent: list[tuple[float, tuple]], steps: int, step_seconds: float, voices=range(V)
) -> tuple[np.ndarray, np.ndarray]:
    """(pitches, attacks), (steps, 4), of the messages sent on the channels of ``voices``."""
    pitches = np.full((steps, V), SILENT, np.int64)
    attacks = np.zeros((steps, V), bool)
    sounding: dict[int, tuple[int, int]] = {}  # voice → (pitch, start step)
    for t, (status, note, velocity) in sent:
        voice, step = status & 0x0F, min(steps, round(t / step_seconds))
        if voice not in voices:
            continue
        if voice in sounding:  # any message for a voice ends what it sounded
            pitch, start = sounding.pop(voice)
            pitches[start:step, voice] = pitch  # a note released as it was struck never sounded
            attacks[start, voice] |= step > start
        if is_note_on((status, 0, velocity)) and step < steps:
            sounding[voice] = (note, step)
    for voice, (pitch, start) in sounding.items():
        pitches[start:, voice] = pitch
        attacks[start, voice] = True
    return pitches, attacks & (pitches != SILENT)


def harmonize(engine, settings: LiveSettings, tokens: np.ndarray, phase: int = 0,
              bar_steps: int = encoding.STEPS_PER_BAR) -> np.ndarray:
    """Bach's soprano of ``tokens`` through the live harmonizer, its bar lines where Bach's
    are (the first step at 16th ``phase`` of a bar of ``bar_steps``): bachd's (T, 4) tokens."""
    from dataclasses import replace

    beats = bar_steps // encoding.STEPS_PER_BEAT
    settings = replace(settings, mode="harmonize", clock="internal", bpm=BPM, beats_per_bar=beats)
    step_seconds = 60.0 / BPM / encoding.STEPS_PER_BEAT
    session = perform(engine, settings, melody_of(tokens, lead=phase))
    sent = [(t - phase * step_seconds, message) for t, message in session.sent]
    return grid_of(sent, np.asarray(tokens), step_seconds)


# --- figures ------------------------------------------------------------------------------------
def piece_counts(tokens: np.ndarray, key: Optional[tuple[int, bool]] = None, phase: int = 0,
                 bar_steps: int = encoding.STEPS_PER_BAR) -> dict[str, float]:
    """Raw counts for one piece whose first step falls at 16th ``phase`` of a bar of
    ``bar_steps``; with ``key``, also its sounding steps in that key's scale
    (``bach_key_steps``: under a melody, the key of Bach's harmonization of it)."""
    pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
    steps = pitches.shape[0]
    full = (pitches != SILENT).all(axis=1)
    counts = {name: value for name, value in analysis.piece_counts(tokens, phase, bar_steps).items() if name in (
        "parallels", "antiparallels", "crossing_steps", "in_key_steps", "sounding_steps", "chord_changes",
        "full_steps", "wide_steps", "phrase_ends", "cadences", "home_cadences", "beat_triads",
        "root_position_triads", "heard_phrase_ends", "heard_closes", "full_beats", "chord_beats", "triad_beats",
        "strong_beats", "dissonant_strong_beats", "held_melody_steps", "held_melody_changes")}
    counts.update(steps=steps, beats=steps / encoding.STEPS_PER_BEAT, pieces=1)
    melody = [s for s in range(steps) if attacks[s, 0] and full[s]]
    counts["melody_attacks"] = len(melody)
    counts["melody_in_chord"] = sum(analysis.complete(pitches[s]) for s in melody)
    if key is not None:
        counts["bach_key_steps"] = analysis.steps_in_key(pitches, key)[0]
    return counts


def summarize(counts: list[dict[str, float]]) -> dict[str, float]:
    total = {key: float(sum(c[key] for c in counts)) for key in counts[0]}
    changes = max(total["chord_changes"], 1.0)
    per_16_bars = total["steps"] / (16 * encoding.STEPS_PER_BAR)
    return {
        "triads_on_beats_pct": round(100 * total["triad_beats"] / max(total["full_beats"], 1.0), 2),
        "dissonant_strong_beats_pct": round(
            100 * total["dissonant_strong_beats"] / max(total["strong_beats"], 1.0), 2),
        "chord_changes_per_beat": round(total["chord_changes"] / max(total["beats"], 1.0), 3),
        "held_melody_changes_per_beat": round(
            total["held_melody_changes"] / max(total["held_melody_steps"] / encoding.STEPS_PER_BEAT, 1.0), 3),
        "heard_phrase_ends_per_16_bars": round(total["heard_phrase_ends"] / max(per_16_bars, 1e-9), 2),
        "heard_closes_pct": round(100 * total["heard_closes"] / max(total["heard_phrase_ends"], 1.0), 2),
        "parallels_per_100_changes": round(100 * total["parallels"] / changes, 3),
        "antiparallels_per_100_changes": round(100 * total["antiparallels"] / changes, 3),
        "in_key_pct": round(100 * total["in_key_steps"] / max(total["sounding_steps"], 1.0), 2),
        "triads_and_sevenths_on_beats_pct": round(100 * total["chord_beats"] / max(total["full_beats"], 1.0), 2),
        "cadences_at_phrase_ends_pct": round(100 * total["cadences"] / max(total["phrase_ends"], 1.0), 2),
        "home_key_cadences_pct": round(100 * total["home_cadences"] / max(total["phrase_ends"], 1.0), 2),
        "root_position_pct": round(100 * total["root_position_triads"] / max(total["beat_triads"], 1.0), 2),
        "wide_spacing_pct": round(100 * total["wide_steps"] / max(total["full_steps"], 1.0), 2),
        "voice_crossing_pct": round(100 * total["crossing_steps"] / max(total["steps"], 1.0), 2),
        "melody_in_chord_pct": round(100 * total["melody_in_chord"] / max(total["melody_attacks"], 1.0), 2),
        "pieces": int(total["pieces"]),
    } | (
        {"in_bach_key_pct": round(100 * total["bach_key_steps"] / max(total["sounding_steps"], 1.0), 2)}
        if "bach_key_steps" in total
        else {}
    )


LABELS = {
    "triads_on_beats_pct": "beats on a complete major or minor triad (%)",
    "dissonant_strong_beats_pct": "strong beats on a dissonant chord (%)",
    "chord_changes_per_beat": "chord changes per beat",
    "held_melody_changes_per_beat": "... under a held melody note, per beat of it",
    "heard_phrase_ends_per_16_bars": "phrase ends as heard, per 16 bars",
    "heard_closes_pct": "... closing V-I or IV-I, any key (%)",
    "parallels_per_100_changes": "parallel 5ths/8ves, similar motion, per 100 chord changes",
    "antiparallels_per_100_changes": "5ths/8ves in contrary motion, per 100 chord changes",
    "in_key_pct": "steps in the detected key (%)",
    "in_bach_key_pct": "... in the key of Bach's harmonization (%)",
    "triads_and_sevenths_on_beats_pct": "beats on a complete triad or seventh (%)",
    "cadences_at_phrase_ends_pct": "melody's long notes closing V-I or IV-I in root position (%)",
    "home_key_cadences_pct": "... in the home key (%)",
    "root_position_pct": "triads on the beat with the bass on the root (%)",
    "wide_spacing_pct": "more than an octave S-A or A-T (% of steps)",
    "voice_crossing_pct": "steps with voice crossing (%)",
    "melody_in_chord_pct": "melody notes that are chord tones (%)",
}

# What a listener hears, held to Bach's harmonizations of the same melodies (``eval
# --harmonize --check``): full and consonant beat chords, few dissonant strong beats, his
# harmonic rhythm, phrase ends that stand and close; and the rules the harmonizer keeps.
MARGINS: dict[str, Margin] = {
    "triads_on_beats_pct": Margin(0.10, "rel", side="below"),
    "dissonant_strong_beats_pct": Margin(0.20, "rel", side="above"),
    "chord_changes_per_beat": Margin(0.15, "rel", side="above"),
    "heard_phrase_ends_per_16_bars": Margin(0.20, "rel", side="below"),
    "heard_closes_pct": Margin(0.20, "rel", side="below"),
    "in_bach_key_pct": Margin(1.5, side="below"),
}


def margin_rows(bach: dict[str, float], ours: dict[str, float]) -> list[dict]:
    """One row per figure, Bach's and bachd's side by side; those with a margin say whether
    bachd is within it. Parallels must stay at none."""
    rows = []
    for key, label in LABELS.items():
        if key not in ours:
            continue
        row = {"figure": key, "label": label, "bach": bach[key], "bachd": ours[key]}
        if key in MARGINS:
            row.update(margin=MARGINS[key].describe(), ok=MARGINS[key].allows(ours[key], bach[key]))
        elif key == "parallels_per_100_changes":
            row.update(margin="none", ok=ours[key] == 0)
        rows.append(row)
    return rows


def agreement(ours: list[np.ndarray], bach: list[np.ndarray]) -> float:
    """Share (%) of Bach's sounding alto, tenor and bass steps where bachd has the same pitch."""
    same = total = 0
    for mine, theirs in zip(ours, bach):
        a, b = encoding.decode_pitches(mine)[0][:, 1:], encoding.decode_pitches(theirs)[0][:, 1:]
        sounding = b != SILENT
        same += int((a[sounding] == b[sounding]).sum())
        total += int(sounding.sum())
    return round(100 * same / max(total, 1), 2)


def lower_voice_nll(engine, pieces: list[np.ndarray], bars: Optional[list[tuple[int, int]]] = None) -> float:
    """Nats per token of Bach's alto, tenor and bass at the pitch level (attack and hold of
    a pitch together), each given the soprano and all before it, streamed as live."""
    classes = encoding.pitch_class_table()
    total, count = 0.0, 0
    for tokens, (phase, bar_steps) in zip(pieces, bars or [DOWNBEAT] * len(pieces)):
        engine.reset()
        previous = encoding.BOS
        for step, row in enumerate(np.asarray(tokens)):
            beat = (step + phase) % bar_steps
            for voice in range(V):
                logits = engine.step(previous, voice, beat)[0].astype(np.float64)
                target = int(row[voice])
                if voice:
                    log_probs = logits - logits.max()
                    log_probs -= math.log(np.exp(log_probs).sum())
                    same_class = np.exp(log_probs[classes == classes[target]]).sum()
                    total -= math.log(max(same_class, 1e-12))
                    count += 1
                previous = target
    return round(total / max(count, 1), 4)


def harmonizations(model, settings: LiveSettings, pieces: list[np.ndarray], bars: list[tuple[int, int]],
                   seeds: Sequence[int], jobs: int = 1) -> list[list[np.ndarray]]:
    """bachd's harmonization of each piece's melody under each rng seed, ``[seed][piece]``;
    ``jobs`` processes share the work (each harmonization depends on its seed alone, so the
    result is the same however many)."""
    from dataclasses import replace

    tasks = [(replace(settings, rng_seed=seed), tokens, where) for seed in seeds for tokens, where in zip(pieces, bars)]
    if jobs <= 1 or len(tasks) <= 1:
        _load_engine(model)
        done = [_harmonize_task(task) for task in tasks]
    else:
        with ProcessPoolExecutor(min(jobs, len(tasks)), initializer=_load_engine, initargs=(model,)) as pool:
            done = list(pool.map(_harmonize_task, tasks))
    return [done[i : i + len(pieces)] for i in range(0, len(done), len(pieces))]


_engine: list = []  # the engine of this process (one per worker of harmonizations())


def _load_engine(model) -> None:
    from bachd.model.engine import make_engine

    _engine[:] = [make_engine(model)]


def _harmonize_task(task: tuple[LiveSettings, np.ndarray, tuple[int, int]]) -> np.ndarray:
    settings, tokens, (phase, bar_steps) = task
    return harmonize(_engine[0], settings, tokens, phase, bar_steps)


def report(model, settings: LiveSettings, pieces: list[np.ndarray], nll: bool = True,
           bars: Optional[list[tuple[int, int]]] = None, seeds: Sequence[int] = (0,), jobs: int = 1) -> dict:
    """bachd's harmonizations of the pieces' melodies (under each of ``seeds``) beside
    Bach's, figure by figure; ``bars``: where each piece's first step falls in its bar, and
    the bar's length in steps (default: a 4/4 piece that starts on a downbeat)."""
    bars = bars or [DOWNBEAT] * len(pieces)
    runs = harmonizations(model, settings, pieces, bars, seeds, jobs)
    # The detected key of a harmonization turns on its chords (a minor key's scale, with the
    # raised 6th and 7th, holds more notes than its relative major's), so steps in the key
    # are also counted in one key for both: the key of Bach's harmonization.
    keys = [analysis.detect_key(encoding.decode_pitches(np.asarray(p))[0]) for p in pieces]
    bach_figures = summarize([piece_counts(p, key, *where) for p, key, where in zip(pieces, keys, bars)])
    our_figures = summarize([piece_counts(p, key, *where) for run in runs for p, key, where in zip(run, keys, bars)])
    rows = margin_rows(bach_figures, our_figures)
    result = {"pieces": len(pieces), "seeds": list(seeds), "rows": rows,
              "agreement_pct": agreement([p for run in runs for p in run], pieces * len(runs)),
              "within_margins": all(row.get("ok", True) for row in rows),
              "melody_notes": len(runs) * sum(int(encoding.decode_pitches(p)[1][:, 0].sum()) for p in pieces),
              "melody_notes_harmonized": sum(_harmonized(run) for run in runs)}
    if nll:
        from bachd.model.engine import make_engine

        result["lower_voice_nll"] = lower_voice_nll(make_engine(model), pieces, bars)
    return result


def _harmonized(ours: list[np.ndarray]) -> int:
    """Melody attacks with all three lower voices sounding under them."""
    count = 0
    for tokens in ours:
        pitches, attacks = encoding.decode_pitches(tokens)
        count += int((attacks[:, 0] & (pitches[:, 1:] != SILENT).all(axis=1)).sum())
    return count


# --- continue: does the answer stay in the call's key? ------------------------------------------
def answer_keys(engine, settings: LiveSettings, pieces: list[np.ndarray], call_bars: int = 4,
                bars: Optional[list[tuple[int, int]]] = None) -> dict:
    """The soprano of each piece's first ``call_bars`` bars played as a call into the live
    continue performer. For each answer: is its detected key the call's (detected on Bach's
    four voices of those bars), and what share of its steps lie in the call key's scale;
    beside the same for Bach's own next bars. Also how often the key bachd named from the
    melody it heard is that key."""
    from dataclasses import replace

    settings = replace(settings, mode="continue", clock="internal", bpm=BPM, start_on="beat")
    step_seconds = 60.0 / BPM / encoding.STEPS_PER_BEAT
    longest = settings.meter.bars(call_bars + settings.response_bars)  # a 4/4 call and answer
    same = {"bach": 0, "bachd": 0}
    scale = {"bach": [0, 0], "bachd": [0, 0]}
    answered = named = 0
    chords: dict[str, list] = {"bach": [], "bachd": []}
    chosen = [(p, where) for p, where in zip(pieces, bars or [DOWNBEAT] * len(pieces)) if p.shape[0] >= longest]
    for tokens, (phase, bar_steps) in chosen:
        in_metre = replace(settings, beats_per_bar=bar_steps // encoding.STEPS_PER_BEAT)
        call_steps, answer_steps = in_metre.meter.bars(call_bars), in_metre.meter.bars(settings.response_bars)
        call = np.asarray(tokens)[:call_steps]
        call_pitches = encoding.decode_pitches(call)[0]
        # One answer, to the whole call: a rest inside the call must not end it.
        gap = _longest_inner_rest(call_pitches[:, 0]) / encoding.STEPS_PER_BEAT + 1
        in_metre = replace(in_metre, listen_gap=min(16.0, max(settings.listen_gap, gap)))
        key = analysis.detect_key(call_pitches)
        session = perform(engine, in_metre, melody_of(call, lead=phase))
        named += session.performer.stream.keys.key == key  # the key bachd heard in the melody
        answers = {"bach": encoding.decode_pitches(np.asarray(tokens)[call_steps : call_steps + answer_steps])}
        if session.sent:
            answered += 1
            first = min(t for t, _ in session.sent)
            answers["bachd"] = _on_grid([(t - first, m) for t, m in session.sent], answer_steps, step_seconds)
        for who, (pitches, attacks) in answers.items():
            chords[who].append(piece_counts(encoding.encode_pitches(pitches, attacks)))
            same[who] += analysis.detect_key(pitches) == key
            inside, steps = analysis.steps_in_key(pitches, key)
            scale[who][0] += inside
            scale[who][1] += steps
    count = max(len(chosen), 1)
    figures = {
        "calls": len(chosen),
        "answered": answered,
        "call_bars": call_bars,
        "answer_bars": settings.response_bars,
        "call_key_named_pct": round(100 * named / count, 2),
    }
    for who in ("bach", "bachd"):
        figures[f"{who}_same_key_pct"] = round(100 * same[who] / count, 2)
        figures[f"{who}_in_call_scale_pct"] = round(100 * scale[who][0] / max(scale[who][1], 1), 2)
        if chords[who]:
            summary = summarize(chords[who])
            for name in ANSWER_CHORDS:
                figures[f"{who}_{name}"] = summary[name]
    return figures


def _longest_inner_rest(soprano: np.ndarray) -> int:
    """The longest run of steps without a melody note between the first note and the last."""
    sounding = np.flatnonzero(soprano != SILENT)
    if sounding.size < 2:
        return 0
    return int(np.diff(sounding).max()) - 1


ANSWER_CHORDS = ("triads_and_sevenths_on_beats_pct", "root_position_pct", "chord_changes_per_beat",
                 "parallels_per_100_changes", "antiparallels_per_100_changes")


def live_report(model, corpora: list[str], split: str, pieces: int, preset: Optional[str], flags: dict,
                allow_pickle: bool = False, answers: bool = False, seeds: int = 1,
                jobs: int = 1) -> tuple[dict, list[str]]:
    """What ``bachd eval --harmonize`` (or ``--answers``) reports: the figures, and as lines
    of text."""
    from bachd.errors import BachdError
    from bachd.model.engine import make_engine
    from bachd.music.corpus import load_corpora
    from bachd.presets import resolve

    settings = resolve(preset or ("chorale" if answers else "harmonizer"), flags)
    valid = [p for c in load_corpora(corpora, allow_pickle=allow_pickle) for p in c.split(split)][:pieces]
    chosen, bars = [p.tokens for p in valid], [(p.phase, p.bar_steps) for p in valid]
    if not chosen:
        raise BachdError(f"the {split} split of {', '.join(corpora)} is empty")
    where = f"{', '.join(corpora)}, {split}"
    if answers:
        figures = answer_keys(make_engine(model), settings, chosen, bars=bars)
        return figures, [
            f"{model}, live continue mode answering the opening {figures['call_bars']} bars of {figures['calls']} "
            f"melodies ({where}) with {figures['answer_bars']} bars: {figures['answered']} answered",
            f"  {'':58s} {'Bach':>8s} {'bachd':>8s}",
            f"  {'answers in the key detected for the call (%)':58s} {figures['bach_same_key_pct']:8g} "
            f"{figures['bachd_same_key_pct']:8g}",
            f"  {'answer steps in the scale of that key (%)':58s} {figures['bach_in_call_scale_pct']:8g} "
            f"{figures['bachd_in_call_scale_pct']:8g}",
            *(
                f"  {LABELS[name]:58s} {figures['bach_' + name]:8g} {figures.get('bachd_' + name, float('nan')):8g}"
                for name in ANSWER_CHORDS
            ),
            f"  the call's key as bachd named it from the melody: right for {figures['call_key_named_pct']:g} % of "
            "calls",
        ]
    first = settings.rng_seed or 0
    figures = report(model, settings, chosen, bars=bars, seeds=range(first, first + seeds), jobs=jobs)
    figures.update(model=str(model), corpora=corpora, split=split, settings={
        k: getattr(settings, k) for k in ("temperature", "top_p", "rhythm_temperature", "allow_parallels", "rng_seed")})
    seeded = f"rng seed {first}" if seeds == 1 else f"rng seeds {first}-{first + seeds - 1}"
    lines = [f"{model}, live harmonizer on the melodies of {len(chosen)} chorales ({where}); "
             f"temperature {settings.temperature:g}, top-p {settings.top_p:g}, {seeded}",
             f"  {'figure':62s} {'Bach':>8s} {'bachd':>8s}  margin"]
    lines += [f"  {row['label']:62s} {row['bach']:8g} {row['bachd']:8g}" + (
        f"  {row['margin']} ({'ok' if row['ok'] else 'OUTSIDE'})" if "ok" in row else "") for row in figures["rows"]]
    lines += [
        f"  melody notes with all three voices under them: {figures['melody_notes_harmonized']} of "
        f"{figures['melody_notes']}",
        f"  agreement with Bach's alto, tenor and bass, note by note: {figures['agreement_pct']:g} %",
        f"  NLL of Bach's lower voices given the soprano: {figures['lower_voice_nll']:.4f} nats/token",
        "within every margin" if figures["within_margins"] else "outside a margin: see the rows marked OUTSIDE",
    ]
    return figures, lines
