// The control surface: controls from the settings table, state pushed over a WebSocket.
"use strict";

const message = document.getElementById("message");
const controls = {};
let latest = null;

const FIGURES = [
  ["notes_in", "Notes in"], ["notes_out", "Notes out"], ["answers", "Answers"], ["melody_chords", "Chords under the melody"],
  ["late_p50_ms", "Output lateness p50 (ms)"], ["late_p99_ms", "Output lateness p99 (ms)"],
  ["messages_lost", "Messages lost"], ["broken_messages", "Broken messages"], ["panics", "Panics"],
  ["input_resets", "Clean slates after lost input"], ["notes_sounding", "Notes sounding"],
];

async function change(name, value) {
  try {
    const answer = await api("/api/settings", {[name]: value});
    say(message, `${name.replace(/_/g, " ")}: ${JSON.stringify(answer.changed[name])}`);
  } catch (error) {
    say(message, error.message, true);
    if (latest) showValue(controls[name], latest.settings[name]);
  }
}

async function setup() {
  const {settings} = await api("/api/settings");
  const live = document.getElementById("settings"), fixed = document.getElementById("fixed");
  for (const setting of settings) {
    if (!setting.live) continue;
    const control = buildControl(setting, change);
    controls[setting.name] = control;
    live.append(control.row);
  }
  const heading = document.createElement("h2");
  heading.textContent = "Until restart";
  heading.style.marginTop = "1rem";
  fixed.append(heading);
  const list = document.createElement("dl");
  list.className = "figures";
  list.id = "fixed-list";
  fixed.append(list);
  await loadPresets();
  legend(document.getElementById("legend"));
  connect();
  refreshPorts();
}

async function loadPresets() {
  const {presets} = await api("/api/presets");
  const select = document.getElementById("preset");
  select.innerHTML = "";
  for (const preset of presets) select.add(new Option(preset.name + (preset.user ? " (yours)" : ""), preset.name));
}

function connect() {
  const socket = new WebSocket(`ws://${location.host}/ws`);
  socket.onmessage = event => { latest = JSON.parse(event.data); render(latest); };
  socket.onclose = async () => {
    const activity = document.getElementById("activity");
    activity.classList.remove("on");
    activity.textContent = "not connected: is bachd running?";
    try {
      const answer = await fetch("/api/state", {credentials: "same-origin"});
      if (answer.status === 403) {  // a new run of bachd, with a new token
        activity.textContent = "bachd was restarted: open the address in its new ready line";
        return;
      }
    } catch (error) { /* not there (yet): try again */ }
    setTimeout(connect, 1000);
  };
}

let drawing = false;
function render(state) {
  const activity = document.getElementById("activity");
  activity.textContent = `${state.mode} · ${state.activity}`;
  activity.classList.toggle("on", state.activity !== "stopped" && state.activity !== "listening");
  const clock = state.clock;
  document.getElementById("clock").textContent = clock.kind;
  document.getElementById("transport").textContent = clock.running ? "playing" : "stopped";
  document.getElementById("tempo").textContent = `${clock.bpm.toFixed(1)} bpm`;
  document.getElementById("position").textContent = clock.position || "—";
  document.getElementById("link").textContent = clock.detail === null ? `${state.ports.backend}` : clock.detail;
  for (const [name, control] of Object.entries(controls)) {
    showValue(control, state.settings[name]);
    const cc = state.cc[name];
    control.row.title = control.setting.help + (cc === undefined || cc === null ? "" : ` (also CC ${cc} on your controller)`);
    const fixedTempo = name === "bpm" && !clock.sets_tempo;
    control.input.disabled = fixedTempo;
    control.row.classList.toggle("fixed", fixedTempo);
  }
  const fixedList = document.getElementById("fixed-list");
  if (fixedList && !fixedList.childElementCount) {
    for (const [name, value] of Object.entries(state.settings)) {
      if (controls[name] || name === "description") continue;
      fixedList.insertAdjacentHTML("beforeend", `<dt>${name.replace(/_/g, " ")}</dt><dd>${value === null ? "—" : escapeHtml(value)}</dd>`);
    }
  }
  document.getElementById("panic").title = state.cc.panic === null ? "Release every note bachd sounds" : `Release every note bachd sounds (also CC ${state.cc.panic})`;
  document.getElementById("figures").innerHTML = FIGURES.map(([key, label]) =>
    `<dt>${label}</dt><dd data-figure="${key}">${state.figures[key] === null ? "—" : state.figures[key]}</dd>`).join("");
  const roll = state.roll;
  const sounding = roll.notes.filter(n => n[3] === null).map(n => `${noteName(n[1])} ${PARTS[n[0]]}`);
  const heard = roll.notes.filter(n => n[0] === 0).map(n => `${noteName(n[1])} you`);
  document.getElementById("sounding").textContent = "Sounding: " + (sounding.join(", ") || "—") + " · Played: " + ([...new Set(heard)].join(", ") || "—");
  if (!drawing) {
    drawing = true;
    requestAnimationFrame(() => {
      drawing = false;
      const r = latest.roll, perBar = latest.clock.beats_per_bar * 4;
      if (r.present === null) drawRoll(document.getElementById("roll"), [], 0, 1);
      else drawRoll(document.getElementById("roll"), r.notes, r.first, r.present + 1, {grid: {beat: 4, bar: perBar}});
    });
  }
}

async function refreshPorts() {
  const box = document.getElementById("ports");
  try {
    const ports = await api("/api/ports");
    const row = (side, other, connected) => {
      const verb = connected ? "Disconnect" : "Connect";
      return `<li>${connected ? "● " : "○ "}${escapeHtml(other)} <button data-side="${side}" data-port="${encodeURIComponent(other)}" data-connect="${!connected}" aria-label="${verb} ${side} ${escapeHtml(other)}">${verb}</button></li>`;
    };
    const list = (side, candidates, connected) => candidates.length || connected.length
      ? `<ul>${[...new Set([...connected, ...candidates])].map(p => ports.patchable ? row(side, p, connected.includes(p)) : `<li>${escapeHtml(p)}</li>`).join("")}</ul>` : "<ul><li>none</li></ul>";
    box.innerHTML = `<p>bachd listens on <b>${escapeHtml(ports.input)}</b> and plays on <b>${escapeHtml(ports.output)}</b>.</p>` +
      `<p>Into bachd, from:</p>${list("input", ports.sources, ports.input_from)}` +
      `<p>Out of bachd, to:</p>${list("output", ports.destinations, ports.output_to)}` +
      (ports.patchable ? "" : "<p class='message'>Connect these in your DAW or MIDI settings.</p>");
    for (const button of box.querySelectorAll("button")) {
      button.addEventListener("click", async () => {
        try {
          await api("/api/ports", {side: button.dataset.side, port: decodeURIComponent(button.dataset.port), connect: button.dataset.connect === "true"});
          refreshPorts();
        } catch (error) { say(message, error.message, true); }
      });
    }
  } catch (error) { say(message, error.message, true); }
}

document.getElementById("panic").addEventListener("click", async () => {
  try { await api("/api/panic", {}); say(message, "Panic: every note released"); } catch (error) { say(message, error.message, true); }
});
document.getElementById("use-preset").addEventListener("click", async () => {
  const name = document.getElementById("preset").value;
  try {
    const answer = await api("/api/preset", {name});
    const restart = answer.needs_restart.length ? ` (${answer.needs_restart.join(", ")} take effect at the next start)` : "";
    say(message, `Preset ${name}: ${Object.keys(answer.changed).length} settings changed${restart}`);
  } catch (error) { say(message, error.message, true); }
});
document.getElementById("save-preset").addEventListener("click", async () => {
  const name = document.getElementById("preset-name").value.trim();
  try {
    const answer = await api("/api/preset/save", {name});
    say(message, `Saved preset ${answer.saved} to ${answer.path}`);
    await loadPresets();
  } catch (error) { say(message, error.message, true); }
});
document.getElementById("refresh-ports").addEventListener("click", refreshPorts);
setup().catch(error => say(message, error.message, true));
