// tensorhouse viewer: plain JavaScript, no build step, no other origin.
// Every value from the dataset reaches the page through textContent or an
// attribute, never as HTML: a caption cannot inject markup.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const state = {
    info: null, branch: null, version: null, mode: "where", where: "", sql: "",
    offset: 0, limit: 48, imageColumn: null, compare: null, pageRowids: [], ctx: null,
  };
  let objectUrls = [];
  let rowsSeq = 0;
  const $ = (id) => document.getElementById(id);

  // -- DOM helpers ---------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "∅";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      return String(Number(v.toPrecision(4)));
    }
    if (typeof v === "boolean" || typeof v === "string") return String(v);
    return JSON.stringify(v);
  }
  function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") p.set(k, String(v));
    }
    return p.toString();
  }
  function refParams(ctx) {
    return { version: ctx.version, branch: ctx.branch };
  }

  async function api(path, params) {
    const resp = await fetch(path + "?" + qs(params || {}));
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      throw new Error((body && body.error) || `HTTP ${resp.status} ${resp.statusText}`);
    }
    return body;
  }
  function showError(msg) {
    const box = $("error");
    box.textContent = msg;
    box.hidden = false;
  }
  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }
  function setStatus(text) { $("status").textContent = text; }

  // -- dataset info, selectors, panels ----------------------------------------------------
  async function loadInfo(ref) {
    const info = await api("/api/info", ref);
    state.info = info;
    state.version = info.version;
    state.branch = info.branch;
    $("dataset-uri").textContent = info.uri;
    $("dataset-stats").textContent =
      `${info.rows.toLocaleString()} rows · version ${info.version} of ${info.latest_version} · ${info.branch}`;
    fillSelect($("branch-select"), info.branches.map((b) => [b, b]), info.branch);
    const byVersion = new Map(info.history.map((h) => [h.version, h]));
    fillSelect($("version-select"), info.versions.slice().reverse().map((v) => {
      const h = byVersion.get(v);
      return [String(v), h ? `v${v} · ${h.operation} · ${h.rows} rows` : `v${v}`];
    }), String(info.version));
    const tagOpts = [["", "—"]].concat(info.tags.map((t) => [t.name, `${t.name} (${t.branch} v${t.version})`]));
    const current = info.tags.find((t) => t.branch === info.branch && t.version === info.version);
    fillSelect($("tag-select"), tagOpts, current ? current.name : "");
    const images = info.schema.filter((c) => c.kind === "image").map((c) => c.name);
    if (!images.includes(state.imageColumn)) state.imageColumn = images[0] || null;
    fillSelect($("image-column"), images.map((n) => [n, n]), state.imageColumn);
    $("image-column-label").hidden = images.length < 2;
    renderSchema(info);
    renderHistory(info);
  }

  function fillSelect(select, options, selected) {
    select.replaceChildren(...options.map(([value, label]) => {
      const o = el("option", null, label);
      o.value = value;
      if (value === selected) o.selected = true;
      return o;
    }));
  }

  function renderSchema(info) {
    const panel = $("schema-panel");
    panel.replaceChildren();
    panel.append(el("div", "schema-col sub", "Click a name to add it to the query. The table is ds; _rowid is its row id."));
    for (const col of info.schema) {
      const row = el("div", "schema-col");
      const name = el("span", "name", col.name);
      name.title = "add to the query";
      name.addEventListener("click", () => insertIntoQuery(col.name));
      row.append(name, el("span", "type", col.label));
      const t = col.type;
      let sub = col.arrow;
      if (t.kind === "class_label") sub = t.classes.map((c, i) => `${i} = ${c}`).join(", ");
      else if (t.kind === "bbox") sub = `boxes as ${t.format}, float32 [n, 4] · ${col.arrow}`;
      row.append(el("div", "sub", sub));
      panel.append(row);
    }
  }

  function renderHistory(info) {
    const panel = $("history-panel");
    panel.replaceChildren();
    for (const h of info.history.slice().reverse()) {
      const item = el("div", "history-item" + (h.version === info.version ? " current" : ""));
      item.append(el("span", "v", `v${h.version}`), el("span", "op", `${h.operation} · ${h.rows.toLocaleString()} rows`));
      const actions = el("span", "actions");
      const view = el("button", null, "view");
      view.type = "button";
      view.title = `open version ${h.version}`;
      view.addEventListener("click", () => selectRef({ version: h.version, branch: info.branch }));
      const diff = el("button", "diff-btn", "diff");
      diff.type = "button";
      diff.title = `what changed from v${h.version} to v${info.version}`;
      diff.dataset.version = String(h.version);
      diff.addEventListener("click", () => startCompare(h.version));
      actions.append(view, diff);
      item.append(actions);
      const when = new Date(h.timestamp).toLocaleString();
      item.append(el("span", "msg", (h.message ? h.message + " · " : "") + when));
      panel.append(item);
    }
  }

  function insertIntoQuery(name) {
    const input = state.mode === "sql" ? $("sql-input") : $("where-input");
    const sep = input.value && !input.value.endsWith(" ") ? " " : "";
    input.value += sep + name;
    input.focus();
  }

  async function selectRef(ref) {
    try {
      clearError();
      state.compare = null;
      await loadInfo(ref);
      state.offset = 0;
      await loadRows();
    } catch (e) {
      showError(e.message);
    }
  }

  // -- rows ----------------------------------------------------------------------------
  async function loadRows() {
    syncUrl();
    const seq = ++rowsSeq;
    setStatus("loading…");
    let data;
    try {
      if (state.compare) {
        data = await api("/api/diff", {
          from: state.compare.from, to: state.version, branch: state.branch,
          kind: state.compare.kind, offset: state.offset, limit: state.limit,
        });
      } else {
        const q = state.mode === "sql" ? { sql: state.sql } : { where: state.where };
        data = await api("/api/rows", Object.assign(q, refParams(state), { offset: state.offset, limit: state.limit }));
      }
    } catch (e) {
      if (seq !== rowsSeq) return;
      setStatus("");
      showError(e.message);
      return;
    }
    if (seq !== rowsSeq) return;
    clearError();
    renderCompareBar(state.compare ? data : null);
    renderGrid(data, { version: data.version, branch: data.branch });
    const first = data.total ? data.offset + 1 : 0;
    const last = data.offset + data.rows.length;
    $("page-info").textContent = `${first.toLocaleString()}–${last.toLocaleString()} of ${data.total.toLocaleString()}`;
    $("prev-btn").disabled = data.offset === 0;
    $("next-btn").disabled = last >= data.total;
    setStatus(`${data.total.toLocaleString()} matching rows · ${data.elapsed_ms} ms`);
  }

  function renderGrid(data, ctx) {
    for (const u of objectUrls) URL.revokeObjectURL(u);
    objectUrls = [];
    state.ctx = ctx;
    state.pageRowids = data.rows.map((r) => r._rowid);
    const grid = $("grid");
    if (!data.rows.length) {
      grid.replaceChildren(el("div", "empty", "No rows match."));
      return;
    }
    grid.replaceChildren(...data.rows.map((row) => card(row, ctx, data.extras || [])));
  }

  function boxColumns(cells) {
    const out = [];
    state.info.schema.forEach((col) => {
      if (col.kind === "bbox" && cells[col.name]) {
        out.push({ format: col.type.format, boxes: cells[col.name].boxes || [] });
      }
    });
    return out;
  }

  function labelBadges(cells) {
    const badges = el("div", "badges");
    for (const col of state.info.schema) {
      if (col.kind !== "label") continue;
      const v = cells[col.name];
      const b = el("span", "label-badge", v ? (v.name !== null ? v.name : `#${v.index}`) : "∅");
      b.title = `${col.name} = ${v ? v.index : "NULL"}`;
      badges.append(b);
    }
    return badges;
  }

  function card(row, ctx, extras) {
    const c = el("div", "card");
    c.tabIndex = 0;
    c.dataset.rowid = String(row._rowid);
    const cells = row.cells;
    const badges = labelBadges(cells);
    if (state.imageColumn) {
      const thumb = thumbBox();
      thumb.wrap.append(badges);
      c.append(thumb.wrap);
      loadThumb(thumb, ctx, row._rowid, state.imageColumn, 256, boxColumns(cells));
    }
    const meta = el("div", "meta");
    meta.append(el("span", "rowid", `_rowid ${row._rowid}`));
    if (!state.imageColumn && badges.childElementCount) meta.append(badges);
    for (const col of state.info.schema) meta.append(...cellViews(col, cells[col.name]));
    for (const name of extras) {
      const kv = el("div", "kv extra");
      kv.append(el("span", "k", name), el("span", "v", fmt(row.extra[name])));
      meta.append(kv);
    }
    c.append(meta);
    c.addEventListener("click", () => openDetail(row._rowid));
    c.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openDetail(row._rowid); });
    return c;
  }

  function cellViews(col, v) {
    const kv = (value, title) => {
      const d = el("div", "kv");
      d.append(el("span", "k", col.name), el("span", "v", value));
      if (title) d.title = title;
      return d;
    };
    switch (col.kind) {
      case "scalar": return [kv(fmt(v))];
      case "text":
      case "json": {
        if (v === null || v === undefined) return [kv("∅")];
        const p = el("p", "caption", v);
        p.title = col.name;
        return [p];
      }
      case "vector": {
        if (!v) return [kv("∅")];
        const d = el("div", "kv");
        d.title = `${col.name}: ${v.n} values · min ${fmt(v.min)} · max ${fmt(v.max)} · mean ${fmt(v.mean)}`;
        d.append(el("span", "k", col.name), sparkline(v.spark || [], 90, 18), el("span", "n", String(v.n)));
        return [d];
      }
      case "bbox": return [kv(v ? `${v.n} box${v.n === 1 ? "" : "es"}` : "∅")];
      case "tensor": return [kv(col.label)];
      case "binary": return [kv("bytes")];
      default: return [];
    }
  }

  function sparkline(values, w, h) {
    const s = svgEl("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    const nums = values.map((x) => (typeof x === "number" ? x : 0));
    const lo = Math.min(...nums, 0);
    const hi = Math.max(...nums, 0);
    const span = hi - lo || 1;
    const y = (x) => h - 1 - ((x - lo) / span) * (h - 2);
    if (nums.length <= 32) {
      const bw = w / nums.length;
      const zero = y(0);
      nums.forEach((x, i) => {
        const top = Math.min(y(x), zero);
        s.append(svgEl("rect", { x: i * bw + 0.5, y: top, width: Math.max(bw - 1, 0.5), height: Math.max(Math.abs(y(x) - zero), 0.5) }));
      });
    } else {
      const pts = nums.map((x, i) => `${(i / (nums.length - 1)) * w},${y(x)}`).join(" ");
      s.append(svgEl("polyline", { points: pts }));
    }
    return s;
  }

  // -- thumbnails and boxes ------------------------------------------------------------------
  function thumbBox() {
    const wrap = el("div", "thumb");
    const img = el("img");
    img.alt = "";
    const overlay = svgEl("svg", { class: "overlay", preserveAspectRatio: "xMidYMid meet" });
    wrap.append(img, overlay);
    return { wrap, img, overlay };
  }

  async function loadThumb(thumb, ctx, rowid, column, size, boxCols) {
    const url = `/api/thumbnail/${encodeURIComponent(rowid)}/${encodeURIComponent(column)}?` +
      qs(Object.assign({ size }, refParams(ctx)));
    try {
      const resp = await fetch(url);
      if (!resp.ok) { thumb.wrap.classList.add("noimg"); return; }
      const w = Number(resp.headers.get("X-Image-Width"));
      const h = Number(resp.headers.get("X-Image-Height"));
      const objectUrl = URL.createObjectURL(await resp.blob());
      objectUrls.push(objectUrl);
      thumb.img.addEventListener("load", () => {
        // Tiny images (icons, masks) read better as pixels than as a blur.
        if (thumb.img.naturalWidth * 3 < thumb.wrap.clientWidth) thumb.img.classList.add("pixelated");
      }, { once: true });
      thumb.img.src = objectUrl;
      drawBoxes(thumb.overlay, w, h, boxCols);
    } catch (e) {
      thumb.wrap.classList.add("noimg");
    }
  }

  // Boxes are in the original image's pixels: the overlay's viewBox is the
  // original size, and "meet" scales it exactly as object-fit: contain scales the image.
  function drawBoxes(overlay, w, h, boxCols) {
    if (!w || !h) return;
    overlay.setAttribute("viewBox", `0 0 ${w} ${h}`);
    boxCols.forEach((col, ci) => {
      for (const b of col.boxes) {
        if (!Array.isArray(b) || b.length < 4) continue;
        const [x0, y0, a, c] = b.map(Number);
        const [bw, bh] = col.format === "xywh" ? [a, c] : [a - x0, c - y0];
        overlay.append(svgEl("rect", {
          x: x0, y: y0, width: Math.max(bw, 0), height: Math.max(bh, 0),
          class: `box c${ci % 6}`, "vector-effect": "non-scaling-stroke",
        }));
      }
    });
  }

  // -- detail view -------------------------------------------------------------------------
  async function openDetail(rowid) {
    const ctx = state.ctx || refParams(state);
    const modal = $("detail");
    const body = $("detail-body");
    $("detail-title").textContent = `_rowid ${rowid} · version ${ctx.version} · ${ctx.branch}`;
    body.replaceChildren(el("div", "stats-line", "loading…"));
    modal.hidden = false;
    modal.dataset.rowid = String(rowid);
    const idx = state.pageRowids.indexOf(rowid);
    $("detail-prev").disabled = idx <= 0;
    $("detail-next").disabled = idx < 0 || idx >= state.pageRowids.length - 1;
    try {
      const sample = await api(`/api/sample/${encodeURIComponent(rowid)}`, refParams(ctx));
      let before = null;
      if (state.compare && state.compare.kind === "changed") {
        before = await api(`/api/sample/${encodeURIComponent(rowid)}`, { version: state.compare.from, branch: ctx.branch });
      }
      if (modal.dataset.rowid !== String(rowid)) return;
      renderDetail(body, sample, before, ctx);
    } catch (e) {
      body.replaceChildren(el("div", "error", e.message));
    }
  }

  function renderDetail(body, sample, before, ctx) {
    body.replaceChildren();
    const boxCols = sample.columns.filter((c) => c.kind === "bbox" && c.value)
      .map((c) => ({ format: c.value.format, boxes: c.value.boxes }));
    const images = el("div", "detail-images");
    for (const col of sample.columns.filter((c) => c.kind === "image")) {
      const box = el("div", "detail-image");
      const thumb = thumbBox();
      thumb.wrap.append(labelBadges(Object.fromEntries(sample.columns.map((c) => [c.name, c.value]))));
      box.append(thumb.wrap);
      const v = col.value;
      box.append(el("div", "cap", v ? `${col.name}: ${v.codec || "raw"} ${(v.shape || []).join("×")}, ${v.nbytes.toLocaleString()} bytes` : `${col.name}: ∅`));
      images.append(box);
      if (v) loadThumb(thumb, ctx, sample._rowid, col.name, 768, boxCols);
      else thumb.wrap.classList.add("noimg");
    }
    if (images.childElementCount) body.append(images);
    const table = el("table", "columns");
    const head = el("tr");
    head.append(el("th", null, "column"), el("th", null, "type"));
    if (before) head.append(el("th", null, `v${before.version}`));
    head.append(el("th", null, before ? `v${sample.version}` : "value"));
    table.append(head);
    const old = before ? new Map(before.columns.map((c) => [c.name, c])) : null;
    for (const col of sample.columns) {
      const tr = el("tr");
      tr.append(el("td", "name", col.name), el("td", "type", col.label));
      if (old) {
        const prev = old.get(col.name);
        tr.append(valueCell(prev || { kind: col.kind, value: null }));
        if (JSON.stringify(prev && prev.value) !== JSON.stringify(col.value)) tr.classList.add("differs");
      }
      tr.append(valueCell(col));
      table.append(tr);
    }
    body.append(table);
  }

  function valueCell(col) {
    const td = el("td");
    const v = col.value;
    if (v === null || v === undefined) { td.append(el("span", "null", "null")); return td; }
    switch (col.kind) {
      case "scalar": td.textContent = fmt(v); break;
      case "label": td.textContent = `${v.name !== null ? v.name : "?"} (${v.index})`; break;
      case "text":
      case "json":
        td.append(el("pre", null, v.text));
        if (v.truncated) td.append(el("div", "stats-line", `${v.length.toLocaleString()} characters, truncated`));
        break;
      case "binary":
        td.append(el("div", null, `${v.nbytes.toLocaleString()} bytes`), el("pre", null, v.hex + (v.truncated ? " …" : "")));
        break;
      case "image":
        td.textContent = `${v.codec || "raw"} · shape ${(v.shape || ["?"]).join("×")} · ${v.nbytes.toLocaleString()} bytes`;
        break;
      case "bbox":
        td.append(el("div", null, `${v.shape[0]} boxes (${v.format})`));
        if (v.boxes.length) td.append(el("pre", null, v.boxes.map((b) => b.map(fmt).join(", ")).join("\n")));
        break;
      default: {
        td.append(el("div", null, `${v.dtype} [${v.shape.join(", ")}]`));
        if (v.stats) {
          const s = v.stats;
          td.append(el("div", "stats-line", `min ${fmt(s.min)} · max ${fmt(s.max)} · mean ${fmt(s.mean)} · std ${fmt(s.std)}` + (s.nan ? ` · ${s.nan} NaN` : "")));
        }
        if (v.spark) td.append(sparkline(v.spark, 320, 40));
        td.append(el("pre", null, formatValues(v.values) + (v.truncated ? " … (first values only)" : "")));
      }
    }
    return td;
  }

  // Nested arrays one row per line; numbers in full.
  function formatValues(v) {
    if (!Array.isArray(v)) return typeof v === "number" ? String(v) : fmt(v);
    if (v.length && Array.isArray(v[0])) return "[" + v.map(formatValues).join(",\n ") + "]";
    return "[" + v.map(formatValues).join(", ") + "]";
  }

  function closeDetail() {
    $("detail").hidden = true;
    $("detail").dataset.rowid = "";
  }
  function stepDetail(delta) {
    const i = state.pageRowids.indexOf(Number($("detail").dataset.rowid));
    const next = state.pageRowids[i + delta];
    if (i >= 0 && next !== undefined) openDetail(next);
  }

  // -- compare ---------------------------------------------------------------------------
  function startCompare(fromVersion) {
    state.compare = { from: fromVersion, kind: "added" };
    state.offset = 0;
    loadRows();
  }

  function renderCompareBar(diff) {
    const bar = $("compare-bar");
    if (!diff) { bar.hidden = true; bar.replaceChildren(); return; }
    bar.hidden = false;
    bar.replaceChildren(el("strong", null, `Comparing v${diff.from.version} → v${diff.to.version}`));
    for (const kind of ["added", "removed", "changed"]) {
      const b = el("button", "kind" + (kind === state.compare.kind ? " active" : ""), `${kind} ${diff.counts[kind].toLocaleString()}`);
      b.type = "button";
      b.dataset.kind = kind;
      b.addEventListener("click", () => { state.compare.kind = kind; state.offset = 0; loadRows(); });
      bar.append(b);
    }
    const s = diff.schema;
    const parts = [];
    if (s.added.length) parts.push(`columns added: ${s.added.join(", ")}`);
    if (s.removed.length) parts.push(`removed: ${s.removed.join(", ")}`);
    if (s.changed.length) parts.push(`retyped: ${s.changed.join(", ")}`);
    parts.push("changed = differs in a shared non-image column");
    bar.append(el("span", "note", parts.join(" · ")));
    const exit = el("button", null, "exit compare");
    exit.type = "button";
    exit.addEventListener("click", () => { state.compare = null; state.offset = 0; loadRows(); });
    bar.append(exit);
  }

  // -- query bar, URL, events ------------------------------------------------------------------
  function setMode(mode) {
    state.mode = mode;
    $("mode-where").classList.toggle("active", mode === "where");
    $("mode-sql").classList.toggle("active", mode === "sql");
    $("where-input").hidden = mode !== "where";
    $("sql-input").hidden = mode !== "sql";
    if (mode === "sql" && !$("sql-input").value) {
      const w = $("where-input").value.trim();
      $("sql-input").value = `SELECT _rowid FROM ds${w ? " WHERE " + w : ""} ORDER BY _rowid`;
    }
  }

  function run() {
    state.where = $("where-input").value.trim();
    state.sql = $("sql-input").value.trim();
    state.offset = 0;
    state.compare = null;
    loadRows();
  }

  function syncUrl() {
    const p = qs({
      version: state.version, branch: state.branch !== "main" ? state.branch : null,
      where: state.mode === "where" ? state.where : null, sql: state.mode === "sql" ? state.sql : null,
      offset: state.offset || null, limit: state.limit !== 48 ? state.limit : null,
    });
    history.replaceState(null, "", p ? "?" + p : location.pathname);
  }

  function bind() {
    $("run-btn").addEventListener("click", run);
    $("clear-btn").addEventListener("click", () => {
      $("where-input").value = "";
      $("sql-input").value = "";
      run();
    });
    $("where-input").addEventListener("keydown", (ev) => { if (ev.key === "Enter") run(); });
    $("sql-input").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) run(); });
    $("mode-where").addEventListener("click", () => setMode("where"));
    $("mode-sql").addEventListener("click", () => setMode("sql"));
    $("prev-btn").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadRows(); });
    $("next-btn").addEventListener("click", () => { state.offset += state.limit; loadRows(); });
    $("page-size").addEventListener("change", (ev) => { state.limit = Number(ev.target.value); state.offset = 0; loadRows(); });
    $("image-column").addEventListener("change", (ev) => { state.imageColumn = ev.target.value; loadRows(); });
    $("branch-select").addEventListener("change", (ev) => selectRef({ branch: ev.target.value }));
    $("version-select").addEventListener("change", (ev) => selectRef({ version: ev.target.value, branch: state.branch }));
    $("tag-select").addEventListener("change", (ev) => { if (ev.target.value) selectRef({ tag: ev.target.value }); });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        for (const t of document.querySelectorAll(".tab")) {
          t.classList.toggle("active", t === tab);
          $(t.dataset.tab).hidden = t !== tab;
        }
      });
    }
    $("detail-close").addEventListener("click", closeDetail);
    $("detail-prev").addEventListener("click", () => stepDetail(-1));
    $("detail-next").addEventListener("click", () => stepDetail(1));
    $("detail").addEventListener("click", (ev) => { if (ev.target === $("detail")) closeDetail(); });
    document.addEventListener("keydown", (ev) => {
      if ($("detail").hidden) {
        if (ev.key === "/" && document.activeElement === document.body) { ev.preventDefault(); $("where-input").focus(); }
        return;
      }
      if (ev.key === "Escape") closeDetail();
      else if (ev.key === "ArrowLeft") stepDetail(-1);
      else if (ev.key === "ArrowRight") stepDetail(1);
    });
  }

  async function init() {
    bind();
    const p = new URLSearchParams(location.search);
    state.where = p.get("where") || "";
    state.sql = p.get("sql") || "";
    state.offset = Math.max(0, Number(p.get("offset")) || 0);
    state.limit = Number(p.get("limit")) || 48;
    $("where-input").value = state.where;
    $("sql-input").value = state.sql;
    $("page-size").value = String(state.limit);
    setMode(state.sql ? "sql" : "where");
    try {
      await loadInfo({ version: p.get("version"), branch: p.get("branch"), tag: p.get("tag") });
    } catch (e) {
      showError(e.message);
      return;
    }
    await loadRows();
    document.body.dataset.ready = "1";
  }

  document.addEventListener("DOMContentLoaded", init);
})();
