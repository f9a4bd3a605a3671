"""The live path measured end to end through a real JACK server (dummy driver).

    python benchmarks/live.py [--notes 600] [--calls 20] [--period 64] [--model M]

Starts its own ``jackd -d dummy -r 48000 -p PERIOD``, then for each part starts
``bachd run --backend jack`` as a separate process and plays into ``bachd-in`` from a
separate JACK MIDI client that also listens on ``bachd-out``:

1. JACK floor: the same client against a trivial echo client, so the share of the MIDI
   system itself is visible.
2. Harmonize: from a melody note-on leaving the client to the third harmony note-on
   arriving back (p50/p99/max over ``--notes`` notes), plus bachd's own output lateness.
   Then the same again with ``--ui`` and the control surface open in a real browser
   (Chromium, headless, driven by Playwright) streaming its piano roll, so the panel's cost
   on the MIDI path is measured in the same run (``--no-panel`` leaves this part out).
   Then, with ``--hostile N`` (default 1000), the same with ``--ui`` twice: quiet, and while
   another process holds N idle connections to the control surface without the token,
   opening a new one whenever bachd closes one; a token holder asks for /api/state on a new
   connection every 25 notes. Reports the p95 difference, the token holder's answer times,
   bachd's open descriptors and what it wrote on stderr.
3. Continue: ``--calls`` short calls; the lateness of each answer's first note against its
   grid time (measured by bachd where it sends), scheduled-output lateness, and a check
   that every note-on it sent was matched by a note-off.
4. Transport: ``--rounds`` rounds of Start, a call, the answer and a Stop on the DAW's MIDI
   clock: the first answer after launch against those after a Stop and a Start, and how
   soon a Stop silences everything.
Also: time from launch to the ready line, and resident memory while playing.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from jackprobe import Bachd, JackServer, MidiProbe, hanging_notes, is_note_on, play_call  # noqa: E402


def pct(values_ms: list[float]) -> dict:
    a = np.asarray(values_ms, dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), **{f"p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 95, 99)}, "max": round(float(a.max()), 3)}


def jack_floor(notes: int) -> dict:
    """Round trip through an echo client that answers every message at once."""
    import rtmidi

    echo_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bachd-in")
    echo_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bachd-out")
    echo_in.open_virtual_port("bachd-in")
    echo_out.open_virtual_port("bachd-out")
    echo_in.set_callback(lambda event, _: echo_out.send_message(event[0]))
    probe = MidiProbe()
    time.sleep(0.3)
    latencies = []
    for i in range(notes):
        since = len(probe.received)
        sent = probe.send(0x90, 60 + i % 12, 90)
        hits = probe.wait_for(is_note_on, since=since, timeout=1.0)
        if hits:
            latencies.append((hits[0].t_seconds - sent) * 1000)
        probe.send(0x80, 60 + i % 12, 0)
        time.sleep(0.01 + random.random() * 0.01)
    probe.close()
    for port in (echo_in, echo_out):
        port.close_port()
        port.delete()
    return pct(latencies)


def xruns(server: JackServer) -> int:
    server.log.seek(0)
    return server.log.read().decode(errors="replace").count("XRun")


def open_panel(ready_line: str):
    """The control surface of the bachd that printed ``ready_line``, open in headless Chromium;
    returns (page, close). The page counts the roll updates it draws."""
    import re
    import shutil

    from playwright.sync_api import sync_playwright

    url = re.search(r"Control surface: (\S+)", ready_line).group(1)
    executable = next(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n))
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_label("Temperature", exact=True).wait_for()
    page.evaluate("""() => { window.rollUpdates = 0;
        new MutationObserver(() => window.rollUpdates++).observe(document.getElementById('sounding'), {childList: true, characterData: true, subtree: true}); }""")

    def close() -> int:
        updates = page.evaluate("window.rollUpdates")
        browser.close()
        playwright.stop()
        return updates

    return page, close


ATTACKER = r"""
import resource, selectors, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
chooser = selectors.DefaultSelector()
opened = 0

def dial():
    global opened
    connection = socket.socket()
    connection.setblocking(False)
    connection.connect_ex(("127.0.0.1", port))
    chooser.register(connection, selectors.EVENT_READ)
    opened += 1

for _ in range(count):
    dial()
print("holding", count, flush=True)
while True:  # whatever bachd closes is opened again at once: always N idle connections
    for key, _ in chooser.select(timeout=1.0):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            chooser.unregister(key.fileobj)
            key.fileobj.close()
            dial()
    sys.stderr.write(f"\ropened {opened}")
"""


def hostile_crowd(ready_line: str, count: int):
    """A separate process holding ``count`` idle connections to the control surface."""
    import re
    import subprocess

    port = int(re.search(r"Control surface: http://127\.0\.0\.1:(\d+)/", ready_line).group(1))
    crowd = subprocess.Popen([sys.executable, "-c", ATTACKER, str(port), str(count)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert crowd.stdout.readline().startswith("holding"), crowd.stderr.read()
    return crowd


def token_holder_ms(ready_line: str) -> float:
    """A new connection with the token asking for /api/state: milliseconds to the answer."""
    import re
    import urllib.request

    url = re.search(r"Control surface: (\S+)", ready_line).group(1).replace("/?token=", "/api/state?token=")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            response.read()
    except OSError:
        return float("inf")
    return (time.monotonic() - started) * 1000


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def harmonize(server: JackServer, notes: int, model: str | None, panel: bool = False, ui: bool = False,
              hostile: int = 0) -> dict:
    stats_path = Path(tempfile.mkstemp(suffix=".json")[1])
    args = ["--mode", "harmonize", "--clock", "internal", "--bpm", "100", "--rng-seed", "1", "--stats-json", str(stats_path)]
    bachd = Bachd(server, *args, *(["--model", model] if model else []), *(["--ui"] if panel or ui or hostile else []))
    page = close_panel = crowd = None
    if panel:
        page, close_panel = open_panel(bachd.ready_line)
    if hostile:
        crowd = hostile_crowd(bachd.ready_line, hostile)
    holder_ms, descriptors = [], []
    probe = MidiProbe()
    time.sleep(0.5)
    xruns_before = xruns(server)
    rng = random.Random(7)
    pitch, latencies, missing, rss = 72, [], 0, []
    for i in range(notes):
        pitch = min(81, max(62, pitch + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3, 0])))
        since = len(probe.received)
        sent = probe.send(0x90, pitch, 70 + rng.randrange(40))
        hits = probe.wait_for(is_note_on, count=3, since=since, timeout=1.0)
        if len(hits) >= 3:
            latencies.append((hits[2].t_seconds - sent) * 1000)
        else:
            missing += 1
        time.sleep(rng.uniform(0.06, 0.22))
        probe.send(0x80, pitch, 0)
        time.sleep(rng.uniform(0.01, 0.06))
        if i % 100 == 0:
            rss.append(bachd.rss_mb())
        if (ui or hostile) and i % 25 == 12:
            holder_ms.append(token_holder_ms(bachd.ready_line))
            descriptors.append(open_descriptors(bachd.process.pid))
    time.sleep(0.5)
    roll_updates = close_panel() if close_panel is not None else None
    if crowd is not None:
        crowd.kill()
        crowd.communicate()
    code, _, err = bachd.stop(signal.SIGTERM)
    probe.close()
    stats = json.loads(stats_path.read_text())
    web = {}
    if ui or hostile:
        web = {"hostile_connections": hostile, "token_holder_ms": pct(holder_ms), "bachd_descriptors_max": max(descriptors),
               "stderr_lines": len(err.splitlines()), "stderr_tracebacks": err.count("Traceback"),
               "stderr_first_lines": err.splitlines()[:4]}
    return {**web,
        "panel_roll_updates": roll_updates,
        "ready_seconds": round(bachd.ready_seconds, 2),
        "rss_mb": round(max(rss), 1),
        "note_to_harmony_ms": pct(latencies),
        "notes_without_three_voices": missing,
        "scheduled_lateness_ms": pct(stats["lateness_samples_ms"]),
        "inside_bachd_ms": pct(stats["response_samples_ms"]),
        "melody_chords": stats["melody_chords"],
        "chords_computed_ahead": stats["chords_ahead"],
        "hanging_after_sigterm": len(hanging_notes([r.message for r in probe.received])),
        "note_ons_sent": stats["notes_out"],
        "note_ons_received": sum(is_note_on(r.message) for r in probe.received),
        "bachd_ledger_at_exit": stats["notes_sounding_at_exit"],
        "jack_xruns": xruns(server) - xruns_before,
        "exit_code": code,
    }


def continue_mode(server: JackServer, calls: int, model: str | None) -> dict:
    stats_path = Path(tempfile.mkstemp(suffix=".json")[1])
    args = ["--mode", "continue", "--clock", "internal", "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5",
            "--start-on", "beat", "--rng-seed", "2", "--stats-json", str(stats_path)]
    bachd = Bachd(server, *args, *(["--model", model] if model else []))
    probe = MidiProbe()
    time.sleep(0.5)
    rng = random.Random(3)
    answered = 0
    for _ in range(calls):
        answered += play_call(probe, rng)
        time.sleep(2.4)
    code, _, _ = bachd.stop(signal.SIGTERM)
    probe.close()
    stats = json.loads(stats_path.read_text())
    return {
        "answers": stats["answers"],
        "calls_answered": answered,
        "first_note_lateness_ms": pct(stats["answer_first_lateness_ms"]),
        "scheduled_lateness_ms": pct(stats["lateness_samples_ms"]),
        "hanging_notes": len(hanging_notes([r.message for r in probe.received])),
        "exit_code": code,
    }


def transport(server: JackServer, rounds: int, model: str | None) -> dict:
    """Continue mode on the DAW's MIDI clock: each round Start, a call, end-of-call, the
    answer, then Stop halfway through it. Round 0 is the first call after launch; the others
    follow a Stop and a Start. Measures, per round, end-of-call → first answer note heard,
    bachd's own first-note lateness against the grid, and Stop → every note released."""
    stats_path = Path(tempfile.mkstemp(suffix=".json")[1])
    args = ["--mode", "continue", "--clock", "midi", "--response-bars", "2", "--listen-gap", "0.5", "--start-on", "beat",
            "--rng-seed", "2", "--stats-json", str(stats_path)]
    bachd = Bachd(server, *args, *(["--model", model] if model else []))
    probe = MidiProbe()
    time.sleep(0.5)
    period = 60 / (120 * 24)
    clock = {"next": time.monotonic(), "running": False}

    def play_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if clock["running"] and time.monotonic() >= clock["next"]:
                probe.send(0xF8)
                clock["next"] += period
            time.sleep(0.0003)

    to_answer, to_silence = [], []
    for _ in range(rounds):
        probe.send(0xFA)
        clock.update(next=time.monotonic(), running=True)
        play_for(0.25)
        for pitch in (67, 71, 74):
            probe.send(0x90, pitch, 90)
            play_for(0.2)
            probe.send(0x80, pitch, 0)
            play_for(0.05)
        since = len(probe.received)
        ended = probe.send(0xB0, 24, 127)
        play_for(1.2)
        hits = [r for r in probe.received[since:] if is_note_on(r.message)]
        to_answer.append((hits[0].t_seconds - ended) * 1000 if hits else float("nan"))
        stopped = probe.send(0xFC)
        clock["running"] = False
        deadline = time.monotonic() + 1.0
        while hanging_notes([r.message for r in probe.received]) and time.monotonic() < deadline:
            time.sleep(0.0005)
        released = [r.t_seconds for r in probe.received if r.t_seconds >= stopped]
        to_silence.append((max(released) - stopped) * 1000 if released else 0.0)
        time.sleep(0.3)
    code, _, _ = bachd.stop(signal.SIGTERM)
    probe.close()
    stats = json.loads(stats_path.read_text())
    first = stats["answer_first_lateness_ms"]
    return {
        "rounds": rounds,
        "answers": stats["answers"],
        "end_of_call_to_answer_ms": {"after_launch": round(to_answer[0], 2), "after_start": pct(to_answer[1:])},
        "first_note_lateness_ms": {"after_launch": first[0] if first else None, "after_start": pct(first[1:])},
        "stop_to_silence_ms": pct(to_silence),
        "hanging_notes": len(hanging_notes([r.message for r in probe.received])),
        "exit_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=600)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10, help="Start/Stop rounds on MIDI clock")
    parser.add_argument("--period", type=int, default=64)
    parser.add_argument("--model", default=None)
    parser.add_argument("--hostile", type=int, default=1000,
                        help="Also harmonize with --ui, quiet and under this many idle connections without the token (0: not)")
    parser.add_argument("--panel", action=argparse.BooleanOptionalAction, default=True,
                        help="Also harmonize with the control surface open in Chromium (needs chromium and playwright)")
    args = parser.parse_args()
    with JackServer(period=args.period) as server:
        results = {"jack_period_frames": args.period, "jack_rate": server.rate}
        results["jack_echo_round_trip_ms"] = jack_floor(min(args.notes, 300))
        results["harmonize"] = harmonize(server, args.notes, args.model)
        if args.panel:
            results["harmonize_with_panel"] = harmonize(server, args.notes, args.model, panel=True)
        if args.hostile:
            results["harmonize_ui_quiet"] = harmonize(server, args.notes, args.model, ui=True)
            results["harmonize_ui_hostile"] = harmonize(server, args.notes, args.model, hostile=args.hostile)
        results["continue"] = continue_mode(server, args.calls, args.model)
        results["transport"] = transport(server, args.rounds, args.model)
    h, c = results["harmonize"], results["continue"]
    print(f"JACK echo round trip (floor):      {results['jack_echo_round_trip_ms']}")
    print(f"ready after launch:                 {h['ready_seconds']} s, resident memory {h['rss_mb']} MB")
    print(f"harmonize note -> 3 harmony notes:  {h['note_to_harmony_ms']} ms ({h['notes_without_three_voices']} incomplete)")
    print(f"  of which inside bachd:            {h['inside_bachd_ms']} ms (input polled -> harmony sent)")
    print(f"harmonize scheduled lateness:       {h['scheduled_lateness_ms']} ms")
    if "harmonize_with_panel" in results:
        w = results["harmonize_with_panel"]
        print(f"  with the panel open in Chromium:  {w['note_to_harmony_ms']} ms ({w['notes_without_three_voices']} incomplete; "
              f"p95 {w['note_to_harmony_ms'].get('p95', float('nan')) - h['note_to_harmony_ms'].get('p95', float('nan')):+.3f} ms "
              f"against the row above; {w['panel_roll_updates']} roll updates drawn, {w['jack_xruns']} JACK xruns)")
    if "harmonize_ui_hostile" in results:
        q, x = results["harmonize_ui_quiet"], results["harmonize_ui_hostile"]
        for name, row in (("--ui, quiet", q), (f"--ui, {x['hostile_connections']} idle hostile connections", x)):
            print(f"  {name + ':':<34}{row['note_to_harmony_ms']} ms ({row['notes_without_three_voices']} incomplete); "
                  f"token holder's /api/state {row['token_holder_ms']} ms; at most {row['bachd_descriptors_max']} descriptors; "
                  f"{row['stderr_lines']} stderr lines, {row['stderr_tracebacks']} tracebacks")
        print(f"  hostile against quiet:            p95 {x['note_to_harmony_ms']['p95'] - q['note_to_harmony_ms']['p95']:+.3f} ms")
    print(f"continue first-note lateness:       {c['first_note_lateness_ms']} ms ({c['answers']} answers)")
    print(f"continue scheduled lateness:        {c['scheduled_lateness_ms']} ms")
    print(f"hanging notes after SIGTERM:        harmonize {h['hanging_after_sigterm']}, continue {c['hanging_notes']}")
    t = results["transport"]
    print(f"MIDI clock, end of call -> answer:  after launch {t['end_of_call_to_answer_ms']['after_launch']} ms, "
          f"after Stop + Start {t['end_of_call_to_answer_ms']['after_start']} ms ({t['answers']} answers in {t['rounds']} rounds)")
    print(f"  first-note lateness (bachd):      after launch {t['first_note_lateness_ms']['after_launch']} ms, "
          f"after Stop + Start {t['first_note_lateness_ms']['after_start']} ms")
    print(f"Stop -> every note released:        {t['stop_to_silence_ms']} ms; hanging notes {t['hanging_notes']}")
    print(f"harmonize: bachd sent {h['note_ons_sent']} note-ons, the client received {h['note_ons_received']}; "
          f"{h['jack_xruns']} JACK xruns; bachd's ledger at exit: {h['bachd_ledger_at_exit']} notes")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
