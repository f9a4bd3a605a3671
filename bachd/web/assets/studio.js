// The studio: a file or a chorale in; harmonize, continue or generate; hear, see, download.
"use strict";

let STUDIO = [];  // the settings a job reads, from bachd (/api/studio)
const message = document.getElementById("message");
const controls = {};
const values = {};
let schema = {};
let upload = null;

function action() { return document.querySelector("input[name=action]:checked").value; }

function resetValues(preset) {
  // The action's own defaults (generate: the offline ones), then the preset's keys.
  for (const name of STUDIO) {
    const s = schema[name];
    values[name] = preset ? preset[name] : (action() === "generate" ? s.offline_default : s.default);
    showValue(controls[name], values[name]);
  }
}

async function setup() {
  const {settings} = await api("/api/settings");
  STUDIO = (await api("/api/studio")).settings;
  const box = document.getElementById("settings");
  for (const s of settings) schema[s.name] = s;
  for (const name of STUDIO) {
    const control = buildControl(schema[name], (key, value) => { values[key] = value; });
    controls[name] = control;
    box.append(control.row);
  }
  resetValues(null);
  legend(document.getElementById("legend"));
  const {presets} = await api("/api/presets");
  for (const preset of presets) document.getElementById("preset").add(new Option(preset.name, preset.name));
  api("/api/chorales").then(({chorales}) => {
    const select = document.getElementById("chorale");
    for (const name of chorales) select.add(new Option(name, name));
  }).catch(error => say(message, error.message, true));
}

async function sendFile(file) {
  say(message, `Reading ${file.name}…`);
  try {
    const answer = await api("/api/upload", file);
    upload = answer.upload;
    document.getElementById("chorale").value = "";
    say(document.getElementById("source"), `${file.name}: ${answer.notes} notes`);
    say(message, "");
  } catch (error) {
    upload = null;
    say(document.getElementById("source"), "Nothing chosen yet.");
    say(message, `${file.name}: ${error.message}`, true);
  }
}

// The engraved score, with a cursor on the notes sounding as the audio plays.
let timemap = [];
let playing = [];

async function showScore(result) {
  const box = document.getElementById("score");
  const response = await fetch(result.score, {credentials: "same-origin"});
  const parsed = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
  box.replaceChildren(document.importNode(parsed.documentElement, true));
  timemap = result.timemap;
  playing = [];
}

function followAudio() {
  const audio = document.getElementById("audio");
  const now = audio.currentTime * 1000;
  let low = 0, high = timemap.length - 1, found = -1;
  while (low <= high) {  // the last onset at or before now
    const middle = (low + high) >> 1;
    if (timemap[middle][0] <= now) { found = middle; low = middle + 1; } else high = middle - 1;
  }
  const ids = found >= 0 ? timemap[found][1] : [];
  if (ids !== playing) {
    for (const id of playing) document.getElementById(id)?.classList.remove("playing");
    for (const id of ids) document.getElementById(id)?.classList.add("playing");
    playing = ids;
  }
  if (!audio.paused) requestAnimationFrame(followAudio);
}

async function make() {
  const chorale = document.getElementById("chorale").value;
  if (!upload && !chorale) { say(message, "Choose a MIDI file or a chorale first.", true); return; }
  const body = {action: action(), bars: parseInt(document.getElementById("bars").value, 10),
                preset: document.getElementById("preset").value || null, settings: values};
  if (upload) body.upload = upload; else body.chorale = chorale;
  const button = document.getElementById("make");
  button.disabled = true;
  say(message, `bachd is at work (${body.action})…`);
  try {
    const result = await api("/api/make", body);
    say(message, "");
    document.getElementById("summary").textContent = `${result.summary} · ${result.seconds} s with ${result.sound}`;
    const audio = document.getElementById("audio");
    audio.src = result.wav;
    for (const [id, url] of [["download-midi", result.midi], ["download-wav", result.wav],
                             ["download-musicxml", result.musicxml], ["download-pdf", result.pdf]]) {
      const link = document.getElementById(id);
      link.hidden = !url;
      if (url) link.href = url + "?download=1";
    }
    await showScore(result);
    const end = Math.max(1, ...result.notes.map(n => n[3]));
    drawRoll(document.getElementById("roll"), result.notes, 0, end, {unit: 0});
  } catch (error) {
    say(message, error.message, true);
  } finally {
    button.disabled = false;
  }
}

document.getElementById("audio").addEventListener("play", () => requestAnimationFrame(followAudio));
document.getElementById("audio").addEventListener("seeked", followAudio);
document.getElementById("file").addEventListener("change", event => { if (event.target.files[0]) sendFile(event.target.files[0]); });
const drop = document.getElementById("drop");
drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", event => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) sendFile(event.dataTransfer.files[0]);
});
document.getElementById("chorale").addEventListener("change", event => {
  if (event.target.value) { upload = null; document.getElementById("file").value = ""; say(document.getElementById("source"), `Chorale BWV ${event.target.value}`); }
});
for (const radio of document.querySelectorAll("input[name=action]")) radio.addEventListener("change", () => resetValues(null));
document.getElementById("preset").addEventListener("change", async event => {
  if (!event.target.value) { resetValues(null); return; }
  try { resetValues((await api(`/api/presets/${encodeURIComponent(event.target.value)}`)).settings); }
  catch (error) { say(message, error.message, true); }
});
document.getElementById("make").addEventListener("click", make);
setup().catch(error => say(message, error.message, true));
