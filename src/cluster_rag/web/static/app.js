// cluster-rag explorer: plain JS over the JSON API (no build step). Plotly comes from the
// installed plotly Python package, served at /static/plotly.min.js.
"use strict";

const state = { topics: [], byId: new Map(), probed: new Set(), topic: null, offset: 0, limit: 20, mapReady: false };
const $ = (id) => document.getElementById(id);
const PLOT_CONFIG = { responsive: true, displaylogo: false };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function showStatus(message, ok = false) {
  const box = $("status");
  box.textContent = message;
  box.className = ok ? "ok" : "";
  box.hidden = !message;
}

async function api(path, options = {}) {
  const init = { headers: { "Content-Type": "application/json" }, ...options };
  if (init.body !== undefined && typeof init.body !== "string") init.body = JSON.stringify(init.body);
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail || response.statusText));
  }
  return data;
}

function run(promise) {
  promise.catch((err) => showStatus(err.message || String(err)));
}

// topics -------------------------------------------------------------------------------------
async function loadTopics() {
  const data = await api("/api/topics?representatives=0");
  state.topics = data.topics;
  state.byId = new Map(data.topics.map((t) => [t.id, t]));
  $("topic-count").textContent = `(${data.topics.length})`;
  renderList();
}

function renderList() {
  const needle = $("filter").value.trim().toLowerCase();
  const list = $("topic-list");
  list.replaceChildren();
  const shown = [...state.topics].sort((a, b) => b.size - a.size || a.id - b.id).filter((t) =>
    !needle || t.display_label.toLowerCase().includes(needle) || t.keywords.some((k) => k.toLowerCase().includes(needle)) || String(t.id) === needle);
  for (const t of shown) {
    const item = el("li", { "data-topic-id": String(t.id), class: state.probed.has(t.id) ? "probed" : "",
      onclick: () => { location.hash = `topic/${t.id}`; } },
      el("span", { class: "size" }, String(t.size)),
      el("span", { class: "swatch", style: `background:${t.color}` }),
      el("span", { class: "label" }, t.display_label),
      t.pinned ? el("span", { class: "badge" }, "pinned") : null,
      el("span", { class: "kw" }, t.keywords.slice(0, 6).join(", ")));
    list.append(item);
  }
}

// map ----------------------------------------------------------------------------------------
async function loadMap() {
  const fig = await api("/api/map");
  const layout = { ...fig.layout, autosize: true };
  delete layout.width;
  delete layout.height;
  await Plotly.react("map", fig.data, layout, PLOT_CONFIG);
  if (!state.mapReady) {
    $("map").on("plotly_click", (ev) => {
      const point = ev.points && ev.points[0];
      if (point && point.customdata) location.hash = `topic/${point.customdata[0]}`;
    });
    state.mapReady = true;
  }
  applyHighlight();
}

function applyHighlight() {
  const gd = $("map");
  if (!state.mapReady || !gd.data) return;
  const trace = gd.data.findIndex((t) => t.name === "topics");
  if (trace < 0) return;
  const ids = gd.data[trace].customdata.map((row) => row[0]);
  Plotly.restyle(gd, {
    "marker.line.width": [ids.map((id) => (state.probed.has(id) ? 4 : 1))],
    "marker.line.color": [ids.map((id) => (state.probed.has(id) ? "#111" : "#fff"))],
  }, [trace]);
  for (const li of document.querySelectorAll("#topic-list li")) {
    li.classList.toggle("probed", state.probed.has(Number(li.dataset.topicId)));
  }
}

// search -------------------------------------------------------------------------------------
async function search(query) {
  const data = await api("/api/search", { method: "POST", body: { query, k: 10 } });
  state.probed = new Set(data.probed.map((p) => p.topic_id));
  const probedNames = data.probed.map((p) => {
    const t = state.byId.get(p.topic_id);
    return el("a", { class: "chip probed", href: `#topic/${p.topic_id}` }, t ? t.display_label : `topic ${p.topic_id}`);
  });
  $("probed").replaceChildren(`Probed ${data.probed.length} topic(s) (outlined on the map): `, ...probedNames);
  const hits = $("hits");
  hits.replaceChildren();
  for (const h of data.hits) {
    const t = state.byId.get(h.topic_id);
    hits.append(el("li", { class: "hit", "data-topic-id": String(h.topic_id) },
      el("span", {}, h.text),
      el("span", { class: "hit-meta" },
        el("a", { class: "chip", href: `#topic/${h.topic_id}` }, t ? t.display_label : `topic ${h.topic_id}`),
        `score ${h.score.toFixed(3)} · ${h.id}`)));
  }
  if (!data.hits.length) hits.append(el("li", {}, "no hits"));
  $("search-panel").hidden = false;
  applyHighlight();
}

// topic page ---------------------------------------------------------------------------------
async function openTopic(id, offset = 0, scroll = true) {
  const t = await api(`/api/topics/${id}?offset=${offset}&limit=${state.limit}`);
  state.topic = t;
  state.offset = offset;
  $("topic-panel").hidden = false;
  $("topic-title").textContent = t.display_label;
  $("topic-swatch").style.background = t.color;
  $("topic-pin").hidden = !t.pinned;
  $("topic-meta").textContent = `topic ${t.id} · ${t.size} chunks · label by ${t.label_source} · model version ${t.version}`;
  $("topic-description").textContent = t.description || "";
  $("rename-input").value = t.label;
  $("pin-btn").textContent = t.pinned ? "Unpin" : "Pin";
  const cov = [...t.keyword_coverage].reverse();
  await Plotly.react("kw-chart", [{
    type: "bar", orientation: "h", x: cov.map((c) => c.share), y: cov.map((c) => c.keyword),
    marker: { color: t.color }, hovertemplate: "%{y}: %{x:.0%} of the chunks<extra></extra>",
  }], {
    title: { text: "Keywords: share of the topic's chunks using each", font: { size: 13 }, x: 0 },
    margin: { l: 120, r: 10, t: 30, b: 30 }, xaxis: { tickformat: ".0%", range: [0, 1] }, autosize: true,
  }, PLOT_CONFIG);
  $("representatives").replaceChildren(...t.representatives.map((r) => el("li", {}, r.text)));
  const m = t.members;
  $("members").setAttribute("start", String(m.offset + 1));
  $("members").replaceChildren(...m.items.map((c) =>
    el("li", {}, c.text, el("span", { class: "hit-meta" }, `cosine to centroid ${c.score.toFixed(3)} · ${c.id}`))));
  const last = Math.min(m.offset + m.limit, m.total);
  $("members-range").textContent = m.total ? `${m.offset + 1}–${last} of ${m.total}, nearest the centroid first` : "(none)";
  $("prev-page").disabled = m.offset === 0;
  $("next-page").disabled = last >= m.total;
  if (scroll) $("topic-panel").scrollIntoView({ block: "start" });
}

async function rename(name) {
  const t = state.topic;
  const renamed = await api(`/api/topics/${t.id}/rename`, { method: "POST", body: { name } });
  showStatus(`Topic ${renamed.id} is now “${renamed.label}” (pinned).`, true);
  await Promise.all([loadTopics(), loadMap()]);
  await openTopic(t.id, state.offset, false);
}

async function togglePin() {
  const t = state.topic;
  const action = t.pinned ? "unpin" : "pin";
  await api(`/api/topics/${t.id}/${action}`, { method: "POST" });
  await loadTopics();
  await openTopic(t.id, state.offset, false);
}

// versions and drift -------------------------------------------------------------------------
async function loadVersions() {
  const [v, drift] = await Promise.all([api("/api/versions"), api("/api/drift")]);
  const body = $("versions").querySelector("tbody");
  body.replaceChildren();
  for (const info of [...v.versions].reverse()) {
    const active = info.version === v.active;
    const action = active ? el("span", { class: "badge" }, "active") :
      el("button", { type: "button", onclick: () => run(rollback(info.version)) }, "roll back to this");
    body.append(el("tr", { class: active ? "active" : "" },
      el("td", {}, String(info.version)), el("td", {}, String(info.k)), el("td", {}, String(info.n_chunks)),
      el("td", {}, info.created_at.replace("T", " ").slice(0, 16)), el("td", {}, action)));
  }
  $("refit").textContent = v.refit ? `Last refit (from version ${v.refit.previous_version}): ${v.refit.summary}` :
    "The active version is a first fit (no refit report).";
  const verdict = el("strong", { class: `verdict-${drift.recommendation}` }, drift.recommendation);
  const added = drift.n_added
    ? ` — ${drift.n_added} chunk(s) added since the fit of version ${drift.version}: ` +
      `outliers ${(100 * drift.outlier_share).toFixed(0)} %, inertia ratio ${drift.inertia_ratio.toFixed(2)}, ` +
      `size JS divergence ${drift.js_divergence.toFixed(3)}` + (drift.reasons.length ? `. ${drift.reasons.join("; ")}` : "")
    : ` — no chunks added since the fit of version ${drift.version}`;
  $("drift").replaceChildren("Drift: ", verdict, added);
}

async function rollback(version) {
  if (!window.confirm(`Make version ${version} the active one?`)) return;
  const info = await api("/api/rollback", { method: "POST", body: { version } });
  showStatus(`Version ${info.version} is active now.`, true);
  await refreshAll();
}

async function loadInfo() {
  const info = await api("/api/info");
  $("info").textContent = `${info.chunks} chunks · k=${info.k} · version ${info.active_version}`;
}

async function refreshAll() {
  await Promise.all([loadInfo(), loadTopics(), loadVersions()]);
  await loadMap();
  await route();
}

// routing ------------------------------------------------------------------------------------
async function route() {
  const match = location.hash.match(/^#topic\/(-?\d+)$/);
  if (match) await openTopic(Number(match[1]), 0);
  else $("topic-panel").hidden = true;
}

window.addEventListener("hashchange", () => run(route()));
$("filter").addEventListener("input", renderList);
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const query = $("q").value.trim();
  if (query) run(search(query));
});
$("rename-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("rename-input").value.trim();
  if (name) run(rename(name));
});
$("pin-btn").addEventListener("click", () => run(togglePin()));
$("prev-page").addEventListener("click", () => run(openTopic(state.topic.id, Math.max(0, state.offset - state.limit), false)));
$("next-page").addEventListener("click", () => run(openTopic(state.topic.id, state.offset + state.limit, false)));
run(refreshAll().then(() => document.body.setAttribute("data-ready", "1")));
