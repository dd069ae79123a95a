// quiver explorer: a client of the same JSON API as any other (/api/...).
"use strict";

const $ = (id) => document.getElementById(id);
const palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const typeColors = new Map();
const colorOf = (type) => {
  if (!typeColors.has(type)) typeColors.set(type, palette[typeColors.size % palette.length]);
  return typeColors.get(type);
};

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("quiver-token");
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  const json = await r.json();
  if (r.status === 401) {
    $("token").hidden = false;
    $("token").focus();
  }
  if (!r.ok) throw Object.assign(new Error(json.error.message), json.error);
  return json;
}

$("token").addEventListener("change", (e) => { sessionStorage.setItem("quiver-token", e.target.value); init(); });

// Views
function show(view) {
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  if (view === "graph") { graph().resize(); graph().fit(undefined, 30); }
  if (view === "map") loadMap();
  if (view === "models") loadModels();
}
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));

// Query editor, history, errors at their line and column
let last = { columns: [], rows: [] };
function showError(e) {
  const box = $("error");
  box.hidden = false;
  box.textContent = e.line ? `line ${e.line}, column ${e.column}: ${e.message}` : e.message;
  if (e.line) {
    const lines = $("query").value.split("\n");
    let at = 0;
    for (let i = 0; i < e.line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at += e.column - 1;
    $("query").focus();
    $("query").setSelectionRange(at, at + 1);
  }
}
function remember(text) {
  const h = JSON.parse(localStorage.getItem("quiver-history") || "[]").filter((q) => q !== text);
  h.unshift(text);
  localStorage.setItem("quiver-history", JSON.stringify(h.slice(0, 50)));
  fillHistory();
}
function fillHistory() {
  const sel = $("history");
  sel.length = 1;
  for (const q of JSON.parse(localStorage.getItem("quiver-history") || "[]")) sel.add(new Option(q.slice(0, 80), q));
}
$("history").addEventListener("change", (e) => { if (e.target.value) $("query").value = e.target.value; });
async function run() {
  const text = $("query").value;
  $("error").hidden = true;
  $("status").textContent = "running…";
  try {
    last = await api("/api/query", { query: text, params: {} });
    $("status").textContent = `${last.rows.length} rows in ${last.elapsed_ms.toFixed(1)} ms`;
    remember(text);
    renderTable(last);
    graph().elements().remove();
    addToGraph(last);
  } catch (e) {
    $("status").textContent = "";
    showError(e);
  }
}
$("run").addEventListener("click", run);
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });

const isNode = (v) => v && typeof v === "object" && "key" in v && "type" in v && Object.keys(v).length === 2;
const isEdge = (v) => v && typeof v === "object" && "src" in v && "dst" in v;
const isPath = (v) => v && typeof v === "object" && Array.isArray(v.nodes) && Array.isArray(v.relationships);
const text = (v) => isNode(v) ? `(:${v.type} ${v.key})` : isEdge(v) ? `[:${v.type} ${v.src}→${v.dst}]`
  : isPath(v) ? v.nodes.map((n, i) => (i ? `-[:${v.relationships[i - 1].type}]-` : "") + `(:${n.type} ${n.key})`).join("")
  : JSON.stringify(v);
function renderTable(res) {
  const t = $("results");
  t.replaceChildren();
  const head = t.createTHead().insertRow();
  for (const c of res.columns) head.appendChild(Object.assign(document.createElement("th"), { textContent: c }));
  const body = t.createTBody();
  for (const r of res.rows) {
    const tr = body.insertRow();
    for (const v of r) {
      const td = tr.insertCell();
      td.textContent = text(v);
      if (isNode(v)) { td.style.cursor = "pointer"; td.onclick = () => openNode(v.type, v.key); }
    }
  }
}

// Graph: nodes coloured by type, edges labelled by relation; a click expands a node
let cy = null;
function graph() {
  if (cy) return cy;
  cy = cytoscape({
    container: $("graph"),
    style: [
      { selector: "node", style: { "background-color": "data(color)", label: "data(key)", "font-size": 9 } },
      { selector: "edge", style: { label: "data(rel)", "font-size": 8, "curve-style": "bezier", "target-arrow-shape": "triangle", width: 1, "line-color": "#aaa", "target-arrow-color": "#aaa" } },
    ],
  });
  cy.on("tap", "node", (e) => { const d = e.target.data(); openNode(d.type, d.key); expand(d.type, d.key); });
  return cy;
}
function relTypes() { return window.schema ? new Map(window.schema.relations.map((r) => [r.name, r])) : new Map(); }
function addNode(type, key) {
  const id = type + "\u0000" + key;
  if (!cy.getElementById(id).length) cy.add({ data: { id, type, key, color: colorOf(type) } });
  return id;
}
function addToGraph(res) {
  graph();
  const rels = relTypes();
  const visit = (v) => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (isPath(v)) return [...v.nodes, ...v.relationships].forEach(visit);
    if (isNode(v)) addNode(v.type, v.key);
    else if (isEdge(v)) {
      const r = rels.get(v.type);
      if (!r) return;
      const a = addNode(r.from, v.src), b = addNode(r.to, v.dst);
      const id = `${a}\u0001${v.type}\u0001${b}`;
      if (!cy.getElementById(id).length) cy.add({ data: { id, source: a, target: b, rel: v.type } });
    }
  };
  res.rows.forEach((r) => r.forEach(visit));
  cy.layout({ name: "cose", animate: false }).run();
}
async function expand(type, key) {
  const res = await api("/api/query", { query: `MATCH (n:\`${type}\` {key: $key})-[r]-(m) RETURN n, r, m LIMIT 50`, params: { key } });
  addToGraph(res);
}

// Node panel: the node, its relations, and its nearest neighbours by the chosen model
async function openNode(type, key) {
  const p = $("panel");
  p.hidden = false;
  p.replaceChildren(Object.assign(document.createElement("h3"), { textContent: `${type} ${key}` }));
  const close = Object.assign(document.createElement("button"), { textContent: "close", onclick: () => { p.hidden = true; } });
  p.appendChild(close);
  try {
    const props = await api("/api/query", { query: `MATCH (n:\`${type}\` {key: $key}) RETURN properties(n)`, params: { key } });
    const dl = document.createElement("ul");
    for (const [k, v] of Object.entries((props.rows[0] || [{}])[0])) {
      dl.appendChild(Object.assign(document.createElement("li"), { textContent: `${k}: ${JSON.stringify(v)}` }));
    }
    p.appendChild(dl);
    const deg = await api("/api/query", { query: `MATCH (n:\`${type}\` {key: $key})-[r]-() RETURN type(r) AS relation, count(*) AS edges`, params: { key } });
    const ul = document.createElement("ul");
    for (const [rel, n] of deg.rows) ul.appendChild(Object.assign(document.createElement("li"), { textContent: `${rel}: ${n}` }));
    p.appendChild(ul);
    const model = $("model").value;
    if (model) {
      const nn = await api(`/api/neighbors?model=${encodeURIComponent(model)}&type=${encodeURIComponent(type)}&key=${encodeURIComponent(key)}&k=10`);
      p.appendChild(Object.assign(document.createElement("h4"), { textContent: `nearest by ${model}` }));
      const ol = document.createElement("ol");
      for (const [node, score] of nn.rows) {
        const li = Object.assign(document.createElement("li"), { textContent: `${node.key} (${score.toFixed(3)})` });
        li.style.cursor = "pointer";
        li.onclick = () => openNode(node.type, node.key);
        ol.appendChild(li);
      }
      p.appendChild(ol);
    }
  } catch (e) {
    p.appendChild(Object.assign(document.createElement("p"), { textContent: e.message }));
  }
}

// Embedding map: a 2-D projection of a node type's rows; hover shows the key, a click opens the node
let map = null;
async function loadMap() {
  const model = $("model").value, type = $("map-type").value, modes = +$("map-colour").value;
  if (!model || !type) { $("map-status").textContent = "train a model first"; return; }
  $("map-status").textContent = "loading…";
  try {
    const m = await api(`/api/embedding-map?model=${encodeURIComponent(model)}&type=${encodeURIComponent(type)}&n=10000${modes ? "&modes=" + modes : ""}`);
    const c = $("map"), w = c.width, h = c.height, pad = 10;
    const [x0, x1] = [Math.min(...m.x), Math.max(...m.x)], [y0, y1] = [Math.min(...m.y), Math.max(...m.y)];
    const px = m.x.map((x) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad));
    const py = m.y.map((y) => pad + ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad));
    map = { ...m, px, py };
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    g.globalAlpha = 0.6;
    for (let i = 0; i < px.length; i++) {
      g.fillStyle = m.mode ? palette[m.mode[i] % palette.length] : colorOf(type);
      g.fillRect(px[i] - 1.5, py[i] - 1.5, 3, 3);
    }
    $("map-status").textContent = `${m.keys.length} of ${m.rows} rows (first two principal components${m.mode ? `, ${modes} k-means modes` : ""})`;
  } catch (e) {
    $("map-status").textContent = e.message;
  }
}
function nearestPoint(ev) {
  if (!map) return -1;
  const r = $("map").getBoundingClientRect();
  const x = ev.clientX - r.left, y = ev.clientY - r.top;
  let best = -1, bd = 36;
  for (let i = 0; i < map.px.length; i++) {
    const d = (map.px[i] - x) ** 2 + (map.py[i] - y) ** 2;
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}
$("map").addEventListener("mousemove", (ev) => {
  const i = nearestPoint(ev), tip = $("tip");
  tip.hidden = i < 0;
  if (i >= 0) {
    tip.textContent = map.mode ? `${map.keys[i]} (mode ${map.mode[i]})` : map.keys[i];
    tip.style.left = ev.offsetX + 20 + "px";
    tip.style.top = ev.offsetY + $("map").offsetTop + "px";
  }
});
$("map").addEventListener("click", (ev) => { const i = nearestPoint(ev); if (i >= 0) openNode(map.type, map.keys[i]); });
$("map-type").addEventListener("change", loadMap);
$("map-colour").addEventListener("change", loadMap);
$("model").addEventListener("change", () => { if (!$("view-map").hidden) loadMap(); });

// Models: settings, evaluation figures and the validation curve
async function loadModels() {
  const box = $("models");
  box.replaceChildren();
  for (const m of await api("/api/models")) {
    const div = Object.assign(document.createElement("div"), { className: "model" });
    div.appendChild(Object.assign(document.createElement("h3"), { textContent: m.name + (m.finished ? "" : " (unfinished)") }));
    const c = (m.settings && m.settings.config) || {};
    div.appendChild(Object.assign(document.createElement("p"), { textContent: `dim ${c.dim}, ${c.score} score, ${c.loss} loss, epochs ${c.epochs}` }));
    const metrics = m.metrics || {};
    for (const [k, v] of Object.entries(metrics)) {
      if (k !== "valid" && k !== "loss") div.appendChild(Object.assign(document.createElement("pre"), { textContent: `${k}: ${JSON.stringify(v)}` }));
    }
    box.appendChild(div);
    const plot = (testid, title, points, series) => {
      if (!points || !points.length) return;
      const chart = document.createElement("div");
      chart.dataset.testid = testid;
      div.appendChild(chart);
      new uPlot({ width: 600, height: 200, title, scales: { x: { time: false } },
        series: [{ label: "epoch" }, ...series.map(([label, , stroke]) => ({ label, stroke }))] },
      [points.map((p) => p.epoch), ...series.map(([, key]) => points.map((p) => p[key]))], chart);
    };
    plot("loss-curve", "mean loss per edge", metrics.loss, [["loss", "mean_loss", "#e15759"]]);
    plot("curve", "validation", metrics.valid && metrics.valid.curve,
      [["MRR", "mrr", "#4e79a7"], ["Hits@10", "hits@10", "#f28e2b"]]);
  }
}

async function init() {
  try {
    window.schema = await api("/api/schema");
    const models = await api("/api/models");
    $("model").replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    $("map-type").replaceChildren(...window.schema.node_types.map((t) => new Option(t, t)));
  } catch (e) {
    showError(e);
  }
}
fillHistory();
init();
