// The vaekit explorer page: talks to the local server's /api/* and draws on canvases. No libraries.
"use strict";

const state = { info: null, z: null, points: null, labels: null, a: null, b: null, timings: [] };
window.vaekit = state;  // for tests and the curious

const MAX_SLIDERS = 16;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const answer = await response.json();
  if (!response.ok) { throw new Error(answer.error || response.statusText); }
  return answer;
}

function say(text) { document.getElementById("status").textContent = text; }

function drawPixels(canvas, pixels, shape) {
  // pixels: C*H*W values in [0, 1]; shape: [C, H, W]
  const [c, h, w] = shape;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const r = pixels[i], g = c === 3 ? pixels[h * w + i] : r, b = c === 3 ? pixels[2 * h * w + i] : r;
    image.data[4 * i] = 255 * r; image.data[4 * i + 1] = 255 * g; image.data[4 * i + 2] = 255 * b; image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  canvas.width = w; canvas.height = h;
  canvas.getContext("2d").drawImage(small, 0, 0);
}

function drawStrip(canvas, frames, shape) {
  const [c, h, w] = shape;
  canvas.width = w * frames.length; canvas.height = h;
  const ctx = canvas.getContext("2d");
  frames.forEach((frame, k) => {
    const tile = document.createElement("canvas");
    drawPixels(tile, frame, shape);
    ctx.drawImage(tile, k * w, 0);
  });
}

// ---- the latent map ------------------------------------------------------------------------------
function mapTransform() {
  const xs = state.points.map(p => p[0]), ys = state.points.map(p => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const canvas = document.getElementById("map"), pad = 12;
  const sx = (canvas.width - 2 * pad) / Math.max(x1 - x0, 1e-9), sy = (canvas.height - 2 * pad) / Math.max(y1 - y0, 1e-9);
  return p => [pad + (p[0] - x0) * sx, canvas.height - pad - (p[1] - y0) * sy];
}

function drawMap() {
  const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const at = mapTransform();
  state.points.forEach((p, i) => {
    const [x, y] = at(p);
    ctx.fillStyle = state.labels ? COLORS[state.labels[i] % COLORS.length] : "#1f77b4";
    ctx.globalAlpha = 0.7;
    ctx.fillRect(x - 2, y - 2, 4, 4);
  });
  ctx.globalAlpha = 1;
  for (const [key, mark] of [["a", "A"], ["b", "B"]]) {
    if (state[key] === null) continue;
    const [x, y] = at(state.points[state[key]]);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.strokeRect(x - 5, y - 5, 10, 10);
    ctx.fillStyle = "#000"; ctx.font = "12px sans-serif"; ctx.fillText(mark, x + 7, y - 7);
  }
}

function nearestPoint(event) {
  const canvas = document.getElementById("map"), box = canvas.getBoundingClientRect();
  const mx = (event.clientX - box.left) * canvas.width / box.width, my = (event.clientY - box.top) * canvas.height / box.height;
  const at = mapTransform();
  let best = 0, bestD = Infinity;
  state.points.forEach((p, i) => { const [x, y] = at(p); const d = (x - mx) ** 2 + (y - my) ** 2; if (d < bestD) { bestD = d; best = i; } });
  return best;
}

async function showExample(i, which) {
  const answer = await api(`/api/example?i=${i}`);
  drawPixels(document.getElementById(`example-${which}`), answer.x, state.info.shape);
  if (which === "a") { drawPixels(document.getElementById("recon-a"), answer.recon, state.info.shape); setCode(answer.z); }
}

async function drawInterpolation() {
  if (state.a === null || state.b === null) return;
  const method = document.getElementById("method").value;
  const answer = await api("/api/interpolate", { i: state.a, j: state.b, steps: 10, method });
  drawStrip(document.getElementById("strip"), answer.frames, state.info.shape);
  state.strips = (state.strips || 0) + 1;
  say(`interpolated ${state.a} -> ${state.b} (${method})`);
}

async function onMapClick(event) {
  const i = nearestPoint(event);
  if (state.a === null || state.b !== null) { state.a = i; state.b = null; await showExample(i, "a"); }
  else { state.b = i; await showExample(i, "b"); await drawInterpolation(); }
  drawMap();
}

// ---- sliders ---------------------------------------------------------------------------------------
function classLabel() {
  const select = document.getElementById("class");
  return state.info.conditional ? Number(select.value) : null;
}

let pending = null, busy = false;
async function decodeNow() {
  if (busy) { pending = true; return; }
  busy = true;
  const start = performance.now();
  try {
    const answer = await api("/api/decode", { z: state.z, label: classLabel() });
    drawPixels(document.getElementById("decoded"), answer.pixels, state.info.shape);
    state.timings.push(performance.now() - start);
  } catch (error) { say(error.message); }
  busy = false;
  if (pending) { pending = null; decodeNow(); }
}

function setCode(z) {
  state.z = z.slice();
  document.querySelectorAll("#sliders input").forEach(input => {
    const d = Number(input.dataset.dim);
    input.value = state.z[d];
    input.parentElement.querySelector("output").textContent = state.z[d].toFixed(2);
  });
  decodeNow();
}

function buildSliders() {
  const box = document.getElementById("sliders");
  const info = state.info;
  info.order.slice(0, MAX_SLIDERS).forEach((d, k) => {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<span>z<sub>${d}</sub> (KL ${info.kl[d].toFixed(2)})</span>` +
      `<input type="range" id="slider-${k}" data-dim="${d}" min="${info.low[d]}" max="${info.high[d]}" step="${(info.high[d] - info.low[d]) / 200}">` +
      `<output>0</output>`;
    const input = row.querySelector("input");
    input.addEventListener("input", () => {
      state.z[d] = Number(input.value);
      row.querySelector("output").textContent = state.z[d].toFixed(2);
      decodeNow();
    });
    box.appendChild(row);
  });
}

async function randomSample() {
  const t = Number(document.getElementById("temperature").value);
  const label = classLabel();
  const answer = await api(`/api/sample?n=1&t=${t}` + (label === null ? "" : `&label=${label}`));
  drawPixels(document.getElementById("decoded"), answer.images[0], state.info.shape);
  say(`a sample at temperature ${t}`);
}

// ---- drawing ----------------------------------------------------------------------------------------
function setupDrawing() {
  const canvas = document.getElementById("draw"), ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  let down = false;
  const paint = event => {
    if (!down) return;
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * canvas.width / box.width, y = (event.clientY - box.top) * canvas.height / box.height;
    ctx.fillStyle = "#fff"; ctx.beginPath(); ctx.arc(x, y, canvas.width / 18, 0, 2 * Math.PI); ctx.fill();
  };
  canvas.addEventListener("pointerdown", e => { down = true; paint(e); });
  canvas.addEventListener("pointermove", paint);
  window.addEventListener("pointerup", () => { down = false; });
  document.getElementById("clear").onclick = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  document.getElementById("encode").onclick = encodeDrawing;
  document.getElementById("upload").onchange = event => {
    const file = event.target.files[0];
    if (!file) return;
    const image = new Image();
    image.onload = () => { ctx.drawImage(image, 0, 0, canvas.width, canvas.height); encodeDrawing(); };
    image.src = URL.createObjectURL(file);
  };
}

async function encodeDrawing() {
  const [c, h, w] = state.info.shape;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const sctx = small.getContext("2d");
  sctx.drawImage(document.getElementById("draw"), 0, 0, w, h);
  const data = sctx.getImageData(0, 0, w, h).data;
  const pixels = [];
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < h * w; i++) {
      pixels.push(c === 3 ? data[4 * i + ch] / 255 : (data[4 * i] + data[4 * i + 1] + data[4 * i + 2]) / 765);
    }
  }
  const answer = await api("/api/encode", { pixels });
  drawPixels(document.getElementById("draw-recon"), answer.recon, state.info.shape);
  if (answer.z) setCode(answer.z);
  say("encoded the drawing");
}

// ---- start ------------------------------------------------------------------------------------------
async function start() {
  try {
    state.info = await api("/api/info");
    const info = state.info;
    say(`${info.name}: ${info.model}, ${info.latent === "vector" ? info.latent_dim + " latent dimensions" : "discrete codes"}, ${info.n} held-out examples`);
    if (info.conditional) {
      const select = document.getElementById("class");
      for (let k = 0; k < info.num_classes; k++) select.add(new Option(String(k), String(k)));
      document.getElementById("class-box").hidden = false;
      select.onchange = decodeNow;
    }
    document.getElementById("random").onclick = randomSample;
    setupDrawing();
    if (info.latent !== "vector") {
      document.getElementById("map-panel").hidden = true;
      document.getElementById("sliders").textContent = "This model's latent is a grid of discrete codes: use sample.";
      document.getElementById("arith-box").hidden = true;
      await randomSample();
      return;
    }
    const answer = await api("/api/points");
    state.points = answer.points; state.labels = answer.labels;
    drawMap();
    document.getElementById("map").addEventListener("click", onMapClick);
    document.getElementById("method").onchange = drawInterpolation;
    buildSliders();
    document.getElementById("reset").onclick = () => setCode(info.mean);
    if (state.labels) {
      const classes = [...new Set(state.labels)].sort((p, q) => p - q);
      for (const id of ["arith-a", "arith-b", "arith-c"]) {
        const select = document.getElementById(id);
        classes.forEach(k => select.add(new Option(String(k), String(k))));
      }
      document.getElementById("arith-go").onclick = async () => {
        const [a, b, c] = ["arith-a", "arith-b", "arith-c"].map(id => Number(document.getElementById(id).value));
        const result = await api("/api/arithmetic", { a, b, c, label: classLabel() });
        drawPixels(document.getElementById("arith"), result.pixels, info.shape);
      };
    } else {
      document.getElementById("arith-box").textContent = "(needs labelled data)";
    }
    setCode(info.mean);
    state.ready = true;
  } catch (error) {
    say(`error: ${error.message}`);
  }
}

start();
