"""The figures of a ``bachd run``, read once into a :class:`Figures` and rendered four ways:
the status line, the control surface's ``/api/state``, the ``--stats-json`` file and the line
bachd prints when it stops. Reading touches nothing, from any thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Protocol

from bachd.live.clock import Clock
from bachd.live.performer import Performer
from bachd.live.recorder import LiveRecording
from bachd.live.router import Router
from bachd.live.scheduler import Output
from bachd.settings import SETTINGS


class Run(Protocol):
    """What the figures are read from (:class:`bachd.live.daemon.Daemon`)."""

    performer: Performer
    clock: Clock
    output: Output
    router: Router
    ports: Any
    recording: Optional[LiveRecording]
    monitor: Any
    audio_error: Optional[str]
    output_stalls: int

    def input_dropped(self) -> int: ...


@dataclass(frozen=True)
class Figures:
    mode: str
    activity: str  # stopped, or the mode's: listening, answering, harmonizing
    clock: str  # the clock's name
    running: bool
    bpm: float
    position: Optional[str]  # bar.beat while running
    clock_detail: Optional[str]  # what more the clock shows (Link's peers)
    sets_tempo: bool  # whether the tempo can be set on this clock
    notes_in: int
    notes_out: int
    modes: dict[str, int]  # every registered mode's figures (answers, melody_chords...)
    performer: dict[str, int]  # panics, starts, stops, song positions, input resets
    late_count: int
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    messages_lost: int  # input lost before bachd could read it (a flood)
    ignored_messages: int
    input_parse: dict[str, int]  # what the parser delivered and dropped
    expired_holds: int  # keys held past max_hold_beats
    notes_sounding: int
    output_stalls: int
    recording: Optional[str]
    recording_ok: bool
    audio: Optional[dict[str, Any]]

    @property
    def late(self) -> Optional[tuple[float, float]]:
        """Output lateness (p50, p99) in ms, None before anything was sent on a schedule."""
        return (self.late_p50_ms, self.late_p99_ms) if self.late_count else None


def read(daemon: Run, now_seconds: float) -> Figures:
    performer, clock, output = daemon.performer, daemon.clock, daemon.output
    p50, p99 = output.lateness.percentiles_ms(50, 99)
    position = None
    if clock.running:
        bar, within = divmod(max(0, int(clock.step_at(now_seconds))), performer.settings.steps_per_bar)
        position = f"{bar + 1}.{within // 4 + 1}"
    stats = performer.stats
    return Figures(
        mode=performer.mode, activity=performer.state, clock=clock.name, running=clock.running, bpm=clock.bpm,
        position=position, clock_detail=clock.detail(), sets_tempo=clock.sets_tempo,
        notes_in=stats.notes_in, notes_out=output.notes_out, modes=performer.figures(),
        performer={"panics": stats.panics, "starts": stats.starts, "stops": stats.stops,
                   "song_positions": stats.relocations, "input_resets": stats.input_resets},
        late_count=output.lateness.count, late_p50_ms=p50, late_p99_ms=p99,
        late_max_ms=output.lateness.worst_seconds * 1000,
        messages_lost=daemon.input_dropped(), ignored_messages=daemon.router.ignored,
        input_parse=asdict(daemon.router.parser.stats), expired_holds=performer.player.expired,
        notes_sounding=output.voicer.notes_sounding, output_stalls=daemon.output_stalls,
        recording=None if daemon.recording is None else str(daemon.recording.path),
        recording_ok=daemon.recording is not None and daemon.recording.error is None,
        audio=_audio(daemon),
    )


def _audio(daemon: Run) -> Optional[dict[str, Any]]:
    monitor = daemon.monitor
    if monitor is None:
        return None
    return {**asdict(monitor.stats), "error": daemon.audio_error,
            "sample_rate": monitor.synth.sample_rate if monitor.synth else None, "block_frames": monitor.block_frames}


def ready_line(run: Run, extras: list[str]) -> str:
    """The line bachd prints once it plays: the mode, the clock, where to play and listen."""
    from bachd.sound.soundfont import sound_name

    return (
        f"bachd ready: {run.performer.settings.mode} mode, {run.clock.describe()}. Play into '{run.ports.in_label}', "
        f"listen on '{run.ports.out_label}' ({run.ports.backend})."
        + (f" Recording to {run.recording.path}." if run.recording is not None else "")
        + (f" Monitor: {sound_name(run.monitor.soundfont)}." if run.monitor is not None else "")
        + " Silent? `bachd doctor` checks the setup."
        + "".join(f" {extra}" for extra in extras)
        + " Ctrl-C to stop."
    )


def status_line(f: Figures) -> str:
    late = f"late p50 {f.late[0]:.2f} p99 {f.late[1]:.2f} ms" if f.late else "late -"
    audio = ""
    if f.audio is not None:
        audio = (" | audio stopped" if f.audio["error"] else
                 f" | audio {(f.audio['output_latency_seconds'] + f.audio['ring_seconds']) * 1000:.0f} ms, "
                 f"{f.audio['underruns']} underruns")
    lost = f" | lost {f.messages_lost:,}" if f.messages_lost else ""
    return (
        f"bachd | {f.mode} | {f.bpm:5.1f} bpm | {f.activity:11s} | in {f.notes_in}{lost} | out {f.notes_out} | "
        f"{late}{audio}" + (" | rec" if f.recording_ok else "") + (f" | {f.clock_detail}" if f.clock_detail else "")
    )


def summary(f: Figures) -> str:
    """The line bachd prints when it stops."""
    late = f", output lateness p50 {f.late[0]:.2f} ms, p99 {f.late[1]:.2f} ms" if f.late else ""
    return f"bachd stopped: {f.notes_in} notes in, {f.notes_out} out, {f.modes.get('answers', 0)} answers{late}"


def state(f: Figures, daemon: Run, roll: dict[str, Any]) -> dict[str, Any]:
    """``/api/state``: the settings by their preset names, mode, clock and transport, the
    figures and the piano roll."""
    settings = daemon.performer.settings
    return {
        "mode": f.mode,
        "activity": f.activity,
        "settings": {name: getattr(settings, name) for name in SETTINGS},
        "cc": dict(settings.cc),  # role -> controller number (None: off)
        "clock": {"kind": f.clock, "running": f.running, "bpm": round(f.bpm, 2), "position": f.position,
                  "beats_per_bar": settings.beats_per_bar, "sets_tempo": f.sets_tempo, "detail": f.clock_detail},
        "figures": {
            "notes_in": f.notes_in, "notes_out": f.notes_out, **f.modes, "panics": f.performer["panics"],
            "late_p50_ms": round(f.late_p50_ms, 3) if f.late else None,
            "late_p99_ms": round(f.late_p99_ms, 3) if f.late else None,
            "messages_lost": f.messages_lost, "broken_messages": f.input_parse["dropped_messages"],
            "input_resets": f.performer["input_resets"], "notes_sounding": f.notes_sounding,
        },
        "ports": {"backend": daemon.ports.backend, "input": daemon.ports.in_label, "output": daemon.ports.out_label},
        "recording": f.recording,
        "roll": roll,
    }


def stats(f: Figures, daemon: Run) -> dict[str, Any]:
    """The ``--stats-json`` file: the figures, and the samples behind the lateness figures."""
    output = daemon.output
    return {
        "mode": f.mode, "clock": f.clock, "clock_detail": f.clock_detail, "recording": f.recording, "bpm": f.bpm,
        "notes_in": f.notes_in, "notes_out": f.notes_out, **f.modes,
        "panics": f.performer["panics"], "input_resets": f.performer["input_resets"],
        "transport": {name: f.performer[name] for name in ("starts", "stops", "song_positions")},
        "ignored_messages": f.ignored_messages, "dropped_messages": f.messages_lost, "input_parse": f.input_parse,
        "expired_holds": f.expired_holds, "output_stalls": f.output_stalls,
        "lateness_ms": {"count": f.late_count, "p50": f.late_p50_ms, "p99": f.late_p99_ms, "max": f.late_max_ms},
        "lateness_samples_ms": [round(x * 1000, 4) for x in output.lateness.samples_seconds()],
        "answer_first_lateness_ms": [round(x * 1000, 4) for x in output.first_lateness],
        "response_samples_ms": [round(x * 1000, 4) for x in output.response.samples_seconds()],
        "notes_sounding_at_exit": f.notes_sounding,
        "audio": f.audio,
    }
