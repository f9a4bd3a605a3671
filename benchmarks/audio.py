"""Audio figures: how fast the built-in organ and a General MIDI SoundFont (FluidSynth) render,
and how the live monitor behaves with each.

    python benchmarks/audio.py [--seconds 60] [--chorale 269] [--soundfont PATH]

The SoundFont is ``--soundfont``, else the first General MIDI font bachd finds (Debian:
``timgm6mb-soundfont``); without one (or without libfluidsynth) only the organ is measured.

1. Rendering: a four-voice chorale from music21's corpus (written to MIDI by bachd, then
   rendered by ``bachd.sound.synth.render_midi`` at 48 kHz), best of 5; reported as times faster
   than real time.
2. Monitor, once per sound: starts ``jackd -d dummy -r 48000 -p 64`` (the server the live tests use), runs
   ``bachd run --backend jack --monitor`` in continue mode for ``--seconds`` while a separate
   JACK MIDI client plays a call every few seconds so bachd keeps answering, then reads
   bachd's own figures: PortAudio's reported output latency at the default block size,
   bachd's write-ahead buffer, underruns, and the MIDI output lateness while audio runs.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def render_speed(chorale: str, soundfont: Path | None = None) -> dict:
    from bachd.files.generation import load_seed
    from bachd.music.midifile import write_midi
    from bachd.sound.soundfont import make_synth
    from bachd.sound.synth import render_midi

    seed = load_seed(None, chorale)
    midi = Path(tempfile.mkdtemp()) / "chorale.mid"
    notes = write_midi(seed.tokens, midi, bpm=90)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        audio = render_midi(midi, 48000, make_synth(soundfont, 48000))
        best = min(best, time.perf_counter() - started)
    seconds = len(audio) / 48000
    return {"chorale": chorale, "notes": len(notes), "audio_seconds": round(seconds, 2),
            "render_seconds": round(best, 4), "times_real_time": round(seconds / best, 1)}


def monitor_run(seconds: float, sound: str) -> dict:
    from jackprobe import Bachd, JackServer, MidiProbe, hanging_notes, play_call

    with JackServer(period=64) as server:
        stats_path = Path(tempfile.mkstemp(suffix=".json")[1])
        bachd = Bachd(server, "--mode", "continue", "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5",
                      "--rng-seed", "4", "--monitor", "--monitor-input", "--soundfont", sound, "--stats-json", str(stats_path))
        probe = MidiProbe()
        time.sleep(0.5)
        rng = random.Random(5)
        started, calls, answered = time.monotonic(), 0, 0
        while time.monotonic() - started < seconds:
            calls += 1
            answered += play_call(probe, rng)
            time.sleep(2.4)
        run_seconds = time.monotonic() - started
        code, _, err = bachd.stop(signal.SIGTERM)
        probe.close()
        stats = json.loads(stats_path.read_text())
    audio = stats["audio"]
    return {
        "run_seconds": round(run_seconds, 1),
        "calls": calls,
        "calls_answered": answered,
        "device": audio["device"],
        "sample_rate": audio["sample_rate"],
        "block_frames": audio["block_frames"],
        "portaudio_output_latency_ms": round(audio["output_latency_seconds"] * 1000, 2),
        "write_ahead_ms": round(audio["ring_seconds"] * 1000, 2),
        "audio_seconds_played": round(audio["blocks"] * audio["block_frames"] / audio["sample_rate"], 1),
        "underruns": audio["underruns"],
        "late_events": audio["late_events"],
        "audio_error": audio["error"],
        "midi_scheduled_lateness_ms": stats["lateness_ms"],
        "hanging_notes": len(hanging_notes([r.message for r in probe.received])),
        "exit_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chorale", default="269")
    parser.add_argument("--soundfont", default=None, help="A General MIDI SoundFont (default: the first one found).")
    args = parser.parse_args()
    from bachd.sound.soundfont import resolve_sound

    font = resolve_sound(args.soundfont)
    sounds = {"organ": None, **({"soundfont": font} if font is not None else {})}
    results = {}
    for name, path in sounds.items():
        r = render_speed(args.chorale, path)
        m = monitor_run(args.seconds, str(path) if path is not None else "organ")
        results[name] = {"sound": str(path) if path else "built-in organ", "render": r, "monitor": m}
        print(f"{name} ({results[name]['sound']}):")
        print(f"  render: BWV {r['chorale']}, {r['notes']} notes, {r['audio_seconds']} s of audio in "
              f"{r['render_seconds']} s = {r['times_real_time']}x real time")
        print(f"  monitor: {m['run_seconds']} s on '{m['device']}' at {m['sample_rate']} Hz, blocks of {m['block_frames']}: "
              f"PortAudio output latency {m['portaudio_output_latency_ms']} ms + write-ahead {m['write_ahead_ms']} ms; "
              f"{m['underruns']} underruns; {m['calls_answered']}/{m['calls']} calls answered; "
              f"MIDI lateness p99 {m['midi_scheduled_lateness_ms']['p99']:.3f} ms; {m['hanging_notes']} hanging notes")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
