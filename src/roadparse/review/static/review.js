// roadparse review: assign each over-cluster to a class (or discard, or split it), then save.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const state = {
  classes: [], clusters: [], choices: {}, splits: {}, focus: { cluster: null, part: null },
  view: "context", previewTimer: null,
};

function api(path, body) {
  const init = { headers: { "X-Review-Token": TOKEN } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init).then(async (r) => {
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  });
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
const classColour = (name) => {
  const c = state.classes.find((k) => k.name === name);
  return c ? rgb(c.color) : "#d0d5dd";
};
const memberSrc = (row) => `/api/member/${row}.jpg?view=${state.view}&token=${TOKEN}`;

// ---- choices ---------------------------------------------------------------------------

// choice: {kind: "class", name, source: "suggested" | "chosen" | "saved"}
//      or {kind: "split", k, seed, sizes, parts: [name | null], source, partSources: [source]}
function choiceOf(value, source) {
  if (typeof value === "string") return { kind: "class", name: value, source };
  return { kind: "split", k: value.split, seed: value.seed || 0, sizes: value.sizes, parts: [...value.parts],
           source, partSources: value.parts.map(() => source) };
}

function initialChoices(data) {
  if (data.saved) {
    for (const [id, value] of Object.entries(data.saved.clusters)) state.choices[id] = choiceOf(value, "saved");
  }
  for (const c of data.clusters) {
    if (c.id in state.choices) continue;
    const suggested = c.suggested_split || c.suggestion;  // a split that still reproduces, else the class
    if (suggested) state.choices[c.id] = choiceOf(suggested, "suggested");
  }
}

// the suggestion in words: "road", or "split into 2: white marking, other"
function suggestionText(c) {
  const words = (name) => name.replace(/_/g, " ");
  if (c.suggested_split) return `split into ${c.suggested_split.split}: ${c.suggested_split.parts.map(words).join(", ")}`;
  return c.suggestion ? words(c.suggestion) : null;
}

function payload(partial) {
  const clusters = {};
  for (const c of state.clusters) {
    const choice = state.choices[c.id];
    if (!choice) { if (partial) clusters[c.id] = "discard"; continue; }
    if (choice.kind === "class") clusters[c.id] = choice.name;
    else clusters[c.id] = { split: choice.k, seed: choice.seed, sizes: choice.sizes,
                            parts: choice.parts.map((p) => p || "discard") };
  }
  return { clusters };
}

function missing() {
  const out = [];
  for (const c of state.clusters) {
    const choice = state.choices[c.id];
    if (!choice) out.push(`cluster ${c.id}`);
    else if (choice.kind === "split") choice.parts.forEach((p, i) => { if (!p) out.push(`cluster ${c.id} part ${i + 1}`); });
  }
  return out;
}

function assign(name) {
  const { cluster, part } = state.focus;
  if (cluster === null) return;
  const choice = state.choices[cluster];
  if (part !== null && choice && choice.kind === "split") {
    choice.parts[part] = name;
    choice.source = "chosen";
    if (choice.partSources) choice.partSources[part] = "chosen";
  } else {
    state.choices[cluster] = { kind: "class", name, source: "chosen" };
  }
  renderCluster(cluster);
  changed();
  moveFocus(1);
}

function acceptSuggestion() {
  const { cluster, part } = state.focus;
  const choice = state.choices[cluster];
  if (part === null && choice && choice.kind === "class") { assign(choice.name); return; }
  if (part !== null && choice && choice.kind === "split" && choice.parts[part]) { assign(choice.parts[part]); return; }
  moveFocus(1);
}

async function split(clusterId, k) {
  try {
    const result = await api("/api/split", { cluster: clusterId, k, seed: 0 });
    state.splits[clusterId] = result;
    state.choices[clusterId] = { kind: "split", k, seed: 0, sizes: result.sizes, parts: result.parts.map(() => null),
                                 source: "chosen", partSources: result.parts.map(() => "chosen") };
    renderCluster(clusterId);
    setFocus(clusterId, 0);
    changed();
  } catch (err) { message(`Split failed: ${err.message}`, true); }
}

function unsplit(clusterId) {
  delete state.choices[clusterId];
  delete state.splits[clusterId];
  renderCluster(clusterId);
  setFocus(clusterId, null);
  changed();
}

// ---- rendering -------------------------------------------------------------------------

function classButtons(current, onPick) {
  const box = el("div", "buttons");
  state.classes.forEach((k, i) => {
    const b = el("button", "cls");
    b.type = "button";
    const sw = el("span", "sw"); sw.style.background = rgb(k.color);
    b.append(sw, el("span", "", k.name.replace(/_/g, " ")));
    if (i < 9) b.append(el("span", "num", String(i + 1)));
    b.dataset.cls = k.name;
    if (current && current.name === k.name) b.classList.add("on");
    if (current && current.name === k.name && current.source === "suggested") b.classList.add("suggested");
    b.addEventListener("click", (ev) => { ev.stopPropagation(); onPick(k.name); });
    box.append(b);
  });
  const d = el("button", "cls discard");
  d.type = "button";
  d.dataset.cls = "discard";
  d.append(el("span", "", "discard"), el("span", "num", "d"));
  if (current && current.name === "discard") d.classList.add("on");
  if (current && current.name === "discard" && current.source === "suggested") d.classList.add("suggested");
  d.addEventListener("click", (ev) => { ev.stopPropagation(); onPick("discard"); });
  box.append(d);
  return box;
}

function thumbs(typical, random, caption) {
  const box = el("div", "thumbs");
  const add = (rows, label) => {
    if (!rows.length) return;
    const strip = el("div", "strip");
    strip.append(el("span", "label", label));
    for (const row of rows) {
      const img = el("img");
      img.loading = "lazy";
      img.dataset.row = row;
      img.alt = `mask row ${row}`;
      img.src = memberSrc(row);
      img.addEventListener("mouseenter", () => showTile(row, caption));
      img.addEventListener("click", (ev) => { ev.stopPropagation(); pin(img, row, caption); });
      strip.append(img);
    }
    box.append(strip);
  };
  add(typical, "typical");
  add(random, "random");
  return box;
}

function renderCluster(clusterId) {
  const c = state.clusters.find((x) => x.id === clusterId);
  const old = document.getElementById(`cluster-${clusterId}`);
  const row = el("div", "row");
  row.id = `cluster-${clusterId}`;
  row.dataset.cluster = clusterId;
  row.addEventListener("click", () => setFocus(clusterId, null));
  const choice = state.choices[clusterId];
  row.style.borderLeftColor = choice && choice.kind === "class" ? classColour(choice.name) : "#d0d5dd";

  const meta = el("div", "meta");
  meta.append(el("div", "cid", `cluster ${clusterId}`));
  meta.append(el("div", "stat", `${c.size} masks · mean ${formatArea(c.mean_area)}`));
  const chosen = el("div", "choice");
  if (!choice) { chosen.textContent = "not assigned"; chosen.classList.add("pending"); }
  else if (choice.kind === "split") chosen.textContent = `split into ${choice.k}`;
  else chosen.textContent = choice.name.replace(/_/g, " ");
  if (choice && choice.source === "suggested") chosen.append(el("span", "badge suggested", "suggested"));
  if (choice && choice.source === "saved") chosen.append(el("span", "badge saved", "saved"));
  meta.append(chosen);
  const suggested = suggestionText(c);
  if (suggested && (!choice || choice.source !== "suggested")) {
    meta.append(el("div", "stat suggestion", `suggestion: ${suggested}`));
  }
  if (c.suggestion_warning) meta.append(el("div", "stat warn", c.suggestion_warning));
  if (c.suggestion_note) meta.append(el("div", "stat guess", c.suggestion_note));

  const body = el("div", "body");
  const isSplit = choice && choice.kind === "split";
  const buttons = classButtons(isSplit ? null : choice, (name) => { setFocus(clusterId, null); assign(name); });
  const splitter = el("span", "splitter");
  if (isSplit) {
    const merge = el("button", "", "merge parts back");
    merge.type = "button";
    merge.addEventListener("click", (ev) => { ev.stopPropagation(); unsplit(clusterId); });
    splitter.append(merge);
  } else {
    const select = el("select");
    select.title = "number of sub-clusters";
    for (let k = 2; k <= Math.min(6, c.size); k++) select.append(new Option(`k = ${k}`, k));
    const go = el("button", "", "Split");
    go.type = "button";
    go.title = "re-cluster this cluster's members into k parts (s)";
    go.addEventListener("click", (ev) => { ev.stopPropagation(); split(clusterId, Number(select.value)); });
    splitter.append("mixed?", select, go);
    if (c.size < 2) splitter.hidden = true;
  }
  meta.append(splitter);
  body.append(buttons);
  body.append(thumbs(c.typical, c.random, `cluster ${clusterId}`));
  if (isSplit) body.append(renderParts(clusterId, choice));
  row.append(meta, body);
  if (old) old.replaceWith(row); else document.getElementById("clusters").append(row);
  markFocus();
}

function renderParts(clusterId, choice) {
  const box = el("div", "parts");
  const result = state.splits[clusterId];
  choice.parts.forEach((name, i) => {
    const part = el("div", "part");
    part.id = `cluster-${clusterId}-part-${i}`;
    part.style.borderLeftColor = name ? classColour(name) : "#d0d5dd";
    part.addEventListener("click", (ev) => { ev.stopPropagation(); setFocus(clusterId, i); });
    const size = result ? result.parts[i].size : (choice.sizes ? choice.sizes[i] : "?");
    part.append(el("div", "ptitle", `part ${i + 1} · ${size} masks · ${name ? name.replace(/_/g, " ") : "not assigned"}`));
    const source = choice.partSources ? choice.partSources[i] : "chosen";
    part.append(classButtons(name ? { name, source } : null, (pick) => { setFocus(clusterId, i); assign(pick); }));
    if (result) part.append(thumbs(result.parts[i].typical, result.parts[i].random, `cluster ${clusterId}, part ${i + 1}`));
    box.append(part);
  });
  return box;
}

function formatArea(px) {
  return px >= 1000 ? `${(px / 1000).toFixed(1)}k px` : `${Math.round(px)} px`;
}

function renderAll() {
  document.getElementById("clusters").replaceChildren();
  for (const c of state.clusters) renderCluster(c.id);
}

// ---- focus and keys --------------------------------------------------------------------

function focusList() {
  const list = [];
  for (const c of state.clusters) {
    list.push([c.id, null]);
    const choice = state.choices[c.id];
    if (choice && choice.kind === "split") choice.parts.forEach((_, i) => list.push([c.id, i]));
  }
  return list;
}

function setFocus(cluster, part) {
  state.focus = { cluster, part };
  markFocus();
  const node = document.getElementById(part === null ? `cluster-${cluster}` : `cluster-${cluster}-part-${part}`);
  if (node) node.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function markFocus() {
  document.querySelectorAll(".focused").forEach((n) => n.classList.remove("focused"));
  const { cluster, part } = state.focus;
  if (cluster === null) return;
  const node = document.getElementById(part === null ? `cluster-${cluster}` : `cluster-${cluster}-part-${part}`);
  if (node) node.classList.add("focused");
}

function moveFocus(step) {
  const list = focusList();
  const at = list.findIndex(([c, p]) => c === state.focus.cluster && p === state.focus.part);
  let next = Math.max(0, Math.min(list.length - 1, at + step));
  // a split cluster's own row takes no class: step over it onto its parts
  const choice = state.choices[list[next][0]];
  if (list[next][1] === null && choice && choice.kind === "split" && step > 0 && next + 1 < list.length) next += 1;
  setFocus(...list[next]);
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT") return;
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); save(); return; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const n = Number(ev.key);
  if (Number.isInteger(n) && n >= 1 && n <= Math.min(9, state.classes.length)) { assign(state.classes[n - 1].name); ev.preventDefault(); }
  else if (ev.key === "d") { assign("discard"); ev.preventDefault(); }
  else if (ev.key === "j" || ev.key === "ArrowDown") { moveFocus(1); ev.preventDefault(); }
  else if (ev.key === "k" || ev.key === "ArrowUp") { moveFocus(-1); ev.preventDefault(); }
  else if (ev.key === "Enter") { acceptSuggestion(); ev.preventDefault(); }
  else if (ev.key === "v") { setView(state.view === "context" ? "crop" : "context"); }
  else if (ev.key === "s" && state.focus.cluster !== null) {
    const row = document.getElementById(`cluster-${state.focus.cluster}`);
    const select = row && row.querySelector(".splitter select");
    if (select) split(state.focus.cluster, Number(select.value));
  }
});

// ---- side panels -----------------------------------------------------------------------

function showTile(row, caption) {
  const img = document.getElementById("tile-view");
  img.src = `/api/tile/${row}.jpg?token=${TOKEN}`;
  document.getElementById("tile-caption").textContent = `${caption}: its masks outlined in magenta, this one in white`;
}

function pin(img, row, caption) {
  document.querySelectorAll(".thumbs img.pinned").forEach((n) => n.classList.remove("pinned"));
  img.classList.add("pinned");
  showTile(row, caption);
}

function setView(view) {
  state.view = view;
  document.getElementById("view-context").classList.toggle("on", view === "context");
  document.getElementById("view-crop").classList.toggle("on", view === "crop");
  document.querySelectorAll(".thumbs img").forEach((img) => { img.src = memberSrc(img.dataset.row); });
}

function changed() {
  updateProgress();
  clearTimeout(state.previewTimer);
  state.previewTimer = setTimeout(refreshPreview, 250);
}

function updateProgress() {
  const todo = missing().length;
  const suggested = Object.values(state.choices).filter((c) => c.source === "suggested").length;
  const node = document.getElementById("progress");
  node.textContent = todo ? `${todo} to assign` : `all ${state.clusters.length} assigned`
    + (suggested ? ` · ${suggested} as suggested` : "");
  node.classList.toggle("good", !todo);
}

async function refreshPreview() {
  try {
    const result = await api("/api/preview", payload(true));
    document.getElementById("unlabelled").textContent = `${(100 * result.unlabelled).toFixed(1)} % unlabelled`;
    document.getElementById("preview-note").textContent =
      `${(100 * result.unlabelled).toFixed(1)} % of pixels unlabelled (${result.tiles_counted} tiles)`;
    const shares = document.getElementById("shares");
    shares.replaceChildren();
    for (const k of state.classes) {
      const part = el("div");
      part.style.width = `${100 * (result.shares[k.name] || 0)}%`;
      part.style.background = rgb(k.color);
      part.title = `${k.name}: ${(100 * (result.shares[k.name] || 0)).toFixed(1)} %`;
      shares.append(part);
    }
    const rest = el("div");
    rest.style.width = `${100 * result.unlabelled}%`;
    rest.style.background = "#333";
    rest.title = `unlabelled: ${(100 * result.unlabelled).toFixed(1)} %`;
    shares.append(rest);
    const box = document.getElementById("preview");
    box.replaceChildren();
    for (const tile of result.images) {
      const img = el("img");
      img.src = tile.src;
      img.alt = `pseudo-labels of ${tile.tile}`;
      img.title = tile.tile;
      box.append(img);
    }
  } catch (err) { message(`Preview failed: ${err.message}`, true); }
}

function renderLegend() {
  const legend = document.getElementById("legend");
  for (const k of state.classes) {
    const item = el("span");
    const sw = el("i"); sw.style.background = rgb(k.color);
    item.append(sw, k.name.replace(/_/g, " "));
    legend.append(item);
  }
  const item = el("span");
  const sw = el("i"); sw.style.background = "#181818";
  item.append(sw, "unlabelled");
  legend.append(item);
}

function message(text, isError, code) {
  const box = document.getElementById("message");
  box.hidden = false;
  box.className = isError ? "error" : "";
  box.replaceChildren(el("span", "", text));
  for (const line of code || []) { box.append(" "); box.append(el("code", "", line)); }
}

async function save() {
  const todo = missing();
  if (todo.length) {
    message(`Assign every cluster first: ${todo.join(", ")} (press a number key or d on each).`, true);
    const first = focusList().find(([c, p]) => todo.includes(p === null ? `cluster ${c}` : `cluster ${c} part ${p + 1}`));
    if (first) setFocus(...first);
    return;
  }
  try {
    const result = await api("/api/save", payload(false));
    for (const choice of Object.values(state.choices)) {
      choice.source = "saved";
      if (choice.partSources) choice.partSources = choice.partSources.map(() => "saved");
    }
    renderAll();
    updateProgress();
    message(`Saved ${result.path}${result.backup ? ` (previous map kept as ${result.backup})` : ""}. Continue with`, false, result.next.slice(0, 1));
    document.title = "roadparse review · saved";
  } catch (err) { message(`Save failed: ${err.message}`, true); }
}

async function main() {
  const data = await api("/api/state");
  state.classes = data.classes;
  state.clusters = data.clusters;
  initialChoices(data);
  document.getElementById("workdir").textContent = data.workdir;
  document.getElementById("maxkey").textContent = String(Math.min(9, data.classes.length));
  document.getElementById("window-note").textContent = data.window_m
    ? `context windows: ${data.window_m} m × ${data.window_m} m of ground` : `context windows: ${data.window_px} px`;
  document.getElementById("view-context").addEventListener("click", () => setView("context"));
  document.getElementById("view-crop").addEventListener("click", () => setView("crop"));
  document.getElementById("save").addEventListener("click", save);
  renderLegend();
  renderAll();
  for (const [id, choice] of Object.entries(state.choices)) {
    if (choice.kind !== "split") continue;  // a saved split: fetch its parts' members
    api("/api/split", { cluster: Number(id), k: choice.k, seed: choice.seed })
      .then((result) => { state.splits[id] = result; renderCluster(Number(id)); })
      .catch((err) => message(`cluster ${id}: ${err.message}`, true));
  }
  if (data.warning) message(`merge_map.yaml: ${data.warning}`, true);
  const stale = data.clusters.filter((c) => c.suggestion_warning).map((c) => `cluster ${c.id}`);
  if (stale.length && !data.warning) message(`Suggested splits not shown (see their rows): ${stale.join(", ")}`, true);
  if (data.suggestion_warnings.length && !data.warning && !stale.length) {
    message(`The suggested map names no cluster as: ${data.suggestion_warnings.join(" · ")}`, true);
  }
  if (state.clusters.length) setFocus(state.clusters[0].id, null);
  window.scrollTo(0, 0);
  changed();
  document.body.dataset.ready = "1";
}

main().catch((err) => message(`Could not load the clusters: ${err.message}`, true));
