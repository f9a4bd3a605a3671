// Shared by the control surface and the studio: controls drawn from bachd's settings table,
// the piano roll, and requests that carry the page's origin (and its cookie) to bachd.
"use strict";

const PARTS = ["you", "soprano", "alto", "tenor", "bass"];
const COLOURS = ["#e8e6e1", "#d9a441", "#6fb3d2", "#8fcf8f", "#c98bd9"];
const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];

function noteName(pitch) { return NAMES[pitch % 12] + (Math.floor(pitch / 12) - 1); }

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: body instanceof Blob || body instanceof ArrayBuffer ? {"Content-Type": "application/octet-stream"} : {"Content-Type": "application/json"},
    body: body instanceof Blob || body instanceof ArrayBuffer ? body : JSON.stringify(body),
  };
  const response = await fetch(path, {credentials: "same-origin", ...init});
  let data;
  try { data = await response.json(); } catch (e) { data = {error: `bachd answered ${response.status}`}; }
  if (!response.ok) throw new Error(data.error || `bachd answered ${response.status}`);
  return data;
}

function say(element, text, error) {
  element.textContent = text;
  element.classList.toggle("error", !!error);
}

// One control per setting: a slider, a switch or a choice, labelled with the setting's name as
// users see it, bounded as the table bounds it. `onChange(name, value)` is called on release.
function buildControl(setting, onChange) {
  const row = document.createElement("div");
  row.className = "control";
  row.dataset.setting = setting.name;
  row.title = setting.help;
  const id = "setting-" + setting.name;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = setting.label;
  let input, output = document.createElement("output"), follow = null;
  if (setting.control === "switch") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.setAttribute("role", "switch");
    input.addEventListener("change", () => onChange(setting.name, input.checked));
  } else if (setting.control === "choice") {
    input = document.createElement("select");
    for (const choice of setting.choices) input.add(new Option(choice, choice));
    input.addEventListener("change", () => onChange(setting.name, input.value));
  } else if (setting.control === "slider") {
    input = document.createElement("input");
    input.type = "range";
    input.min = setting.low; input.max = setting.high; input.step = setting.step;
    const parse = v => setting.kind === "int" ? parseInt(v, 10) : parseFloat(v);
    input.addEventListener("input", () => { output.value = input.value; input.dataset.moving = "yes"; });
    input.addEventListener("change", () => { delete input.dataset.moving; onChange(setting.name, parse(input.value)); });
    if (setting.also.length) {  // "follow": a switch beside the slider
      follow = document.createElement("input");
      follow.type = "checkbox";
      follow.id = id + "-" + setting.also[0];
      follow.setAttribute("aria-label", `${setting.label}: ${setting.also[0]}`);
      follow.title = setting.also[0];
      follow.addEventListener("change", () => onChange(setting.name, follow.checked ? setting.also[0] : parse(input.value)));
    }
  } else if (setting.control === "number") {
    input = document.createElement("input");
    input.type = "number";
    input.min = setting.low; input.max = setting.high; input.step = 1;
    if (setting.optional) input.placeholder = "not set";
    input.addEventListener("change", () => onChange(setting.name, input.value === "" ? null : Number(input.value)));
  } else {
    input = document.createElement("input");
    input.type = "text";
    input.addEventListener("change", () => onChange(setting.name, input.value === "" ? null : input.value));
  }
  input.id = id;
  input.name = setting.name;
  input.setAttribute("aria-description", setting.help);
  row.append(label, input, follow || (setting.control === "slider" ? output : document.createElement("span")));
  return {row, input, output, follow, setting};
}

function showValue(control, value) {
  const {input, output, follow, setting} = control;
  if (input.dataset.moving) return;  // the musician's hand is on the slider
  if (setting.control === "switch") input.checked = !!value;
  else if (follow && typeof value === "string") { follow.checked = true; }
  else {
    if (follow) follow.checked = false;
    input.value = value === null ? "" : value;
    output.value = value === null ? "" : (typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : value);
  }
}

// A piano roll: notes [part, pitch, start, end|null] on [first, last] (steps or seconds).
function drawRoll(canvas, notes, first, last, options = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const low = 36, high = 86, row = height / (high - low);
  const x = t => (t - first) / Math.max(1e-9, last - first) * width;
  if (options.grid) {  // bar and beat lines
    for (let s = Math.ceil(first / options.grid.beat) * options.grid.beat; s <= last; s += options.grid.beat) {
      g.fillStyle = s % options.grid.bar === 0 ? "#343944" : "#1f232a";
      g.fillRect(x(s), 0, 1, height);
    }
  }
  for (const [part, pitch, start, end] of notes) {
    const stop = end === null ? last + (options.unit || 1) : end;
    g.fillStyle = COLOURS[part] || "#888";
    g.globalAlpha = part === 0 ? 0.85 : 0.95;
    const y = height - (pitch - low + 1) * row;
    g.fillRect(x(start) + 1, y, Math.max(2, x(stop) - x(start) - 2), Math.max(3, row - 1));
  }
  g.globalAlpha = 1;
}

function legend(element) {
  // Built node by node: the page's policy allows no inline style attributes.
  element.replaceChildren(...PARTS.map((part, i) => {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLOURS[i];
    span.append(swatch, part);
    return span;
  }));
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
