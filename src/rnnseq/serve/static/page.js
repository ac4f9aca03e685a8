// The rnnseq page: pick a model, translate, read the n-best list and the attention heat map.
// Plain DOM code, no libraries: the page must work offline. User text only ever enters the
// page through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let current = null; // {lines, translations, line, hyp}

// Blues, light to dark: weight 0 is near the page colour, weight 1 the darkest stop.
const RAMP = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

function colour(w) {
  const x = Math.min(Math.max(w, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
  const c = RAMP[i].map((v, k) => Math.round(v + f * (RAMP[i + 1][k] - v)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function show(id, text) {
  $(id).hidden = !text;
  $(id).textContent = text || "";
}

async function loadModels() {
  try {
    const r = await fetch("v1/models");
    models = (await r.json()).models;
  } catch (err) {
    show("error", `Could not list the models: ${err}`);
    return;
  }
  const select = $("model");
  for (const m of models) select.append(el("option", "", m.name));
  select.addEventListener("change", describeModel);
  describeModel();
}

function describeModel() {
  const m = models.find((x) => x.name === $("model").value);
  if (!m) return;
  const n = m.model.parameters;
  const params = n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : n.toLocaleString();
  const parts = [m.task, `${m.model.cell.toUpperCase()}`, m.model.attention,
    m.model.copy_attention ? "copy" : "", `${params} parameters`,
    `vocab ${m.vocabulary.source.toLocaleString()} → ${m.vocabulary.target.toLocaleString()}`];
  $("model-info").textContent = parts.filter(Boolean).join(" · ");
  $("beam").value = m.decoding.beam_size;
}

async function translate() {
  const lines = $("source").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!lines.length) {
    show("error", "Type a sentence first.");
    return;
  }
  const beam = Math.max(1, parseInt($("beam").value, 10) || 1);
  const nBest = Math.min(beam, Math.max(1, parseInt($("nbest").value, 10) || 1));
  const body = {model: $("model").value, text: lines, beam_size: beam, n_best: nBest,
    return_scores: true, return_attention: true};
  show("error", "");
  $("translate").disabled = true;
  $("status").textContent = "Translating…";
  const start = performance.now();
  try {
    const r = await fetch("v1/translate", {method: "POST", body: JSON.stringify(body),
      headers: {"content-type": "application/json"}});
    const answer = await r.json();
    if (!r.ok) {
      show("error", answer.error || `The server answered ${r.status}.`);
      $("status").textContent = "";
      return;
    }
    $("status").textContent = `${Math.round(performance.now() - start)} ms`;
    show("warnings", (answer.warnings || []).join("\n"));
    current = {lines, translations: answer.translations, line: 0, hyp: 0};
    render();
  } catch (err) {
    show("error", `The request failed: ${err}`);
    $("status").textContent = "";
  } finally {
    $("translate").disabled = false;
  }
}

function hypotheses(t) {
  return t.n_best || [{text: t.text, score: t.score, attention: t.attention,
    target_tokens: t.target_tokens}];
}

function render() {
  $("results").hidden = false;
  const outputs = $("outputs");
  outputs.replaceChildren();
  current.translations.forEach((t, i) => {
    const li = el("li", i === current.line ? "selected" : "");
    li.append(el("div", "src muted", current.lines[i]), el("div", "hyp", t.text));
    li.addEventListener("click", () => { current.line = i; current.hyp = 0; render(); });
    outputs.append(li);
  });
  const list = $("nbest-list");
  list.replaceChildren();
  const t = current.translations[current.line];
  hypotheses(t).forEach((h, k) => {
    const li = el("li", k === current.hyp ? "selected" : "");
    li.append(el("span", "text", h.text), el("span", "score", h.score.toFixed(3)));
    li.addEventListener("click", () => { current.hyp = k; render(); });
    list.append(li);
  });
  const h = hypotheses(t)[current.hyp];
  heatmap(t.source_tokens, h.target_tokens, h.attention);
}

// One row per output token (and a last row for the end of the sentence when the model
// attended before stopping), one column per source token as the model read it.
function heatmap(src, tgt, weights) {
  const grid = $("heatmap");
  grid.replaceChildren();
  const rows = weights.map((_, i) => (i < tgt.length ? tgt[i] : "</s>"));
  grid.style.gridTemplateColumns = `max-content repeat(${src.length}, minmax(1.8rem, 1fr))`;
  // words stand on end so that every column stays one cell wide; characters need not
  grid.classList.toggle("upright", src.every((s) => s.length <= 2));
  grid.append(el("div", "corner"));
  src.forEach((s, j) => {
    const label = el("div", "col-label", s);
    label.dataset.col = j;
    grid.append(label);
  });
  weights.forEach((row, i) => {
    const label = el("div", "row-label", rows[i]);
    label.dataset.row = i;
    grid.append(label);
    row.forEach((w, j) => {
      const cell = el("div", "heat-cell");
      cell.style.background = colour(w);
      cell.dataset.row = i;
      cell.dataset.col = j;
      cell.dataset.weight = w.toFixed(3);
      cell.setAttribute("role", "gridcell");
      cell.setAttribute("aria-label", `${rows[i]} on ${src[j]}: ${w.toFixed(3)}`);
      grid.append(cell);
    });
  });
}

function hover(event) {
  const cell = event.target.closest(".heat-cell");
  for (const e of $("heatmap").querySelectorAll(".lit")) e.classList.remove("lit");
  const tip = $("tooltip");
  if (!cell) {
    tip.hidden = true;
    return;
  }
  const {row, col, weight} = cell.dataset;
  const grid = $("heatmap");
  grid.querySelector(`.row-label[data-row="${row}"]`).classList.add("lit");
  grid.querySelector(`.col-label[data-col="${col}"]`).classList.add("lit");
  cell.classList.add("lit");
  const target = grid.querySelector(`.row-label[data-row="${row}"]`).textContent;
  const source = grid.querySelector(`.col-label[data-col="${col}"]`).textContent;
  tip.replaceChildren(el("b", "", target), document.createTextNode(" ← "),
    el("b", "", source), el("span", "weight", weight));
  tip.hidden = false;
  tip.style.left = `${event.pageX + 14}px`;
  tip.style.top = `${event.pageY + 14}px`;
}

document.addEventListener("DOMContentLoaded", () => {
  loadModels();
  $("translate").addEventListener("click", translate);
  $("source").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) translate();
  });
  $("heatmap").addEventListener("mousemove", hover);
  $("heatmap").addEventListener("mouseleave", hover);
});
