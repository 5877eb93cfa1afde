// sealcam viewer: cameras, a day timeline, MSE playback of the decrypted fMP4 stream, export.
"use strict";
const $ = (id) => document.getElementById(id);
const US = 1e6;
const state = { cams: [], cam: null, dayStart: 0, win: null, data: null, cursor: 0, generation: -1, live: false };

function fmt(us, withDate) {
  if (us === null || us === undefined) return "--";
  const d = new Date(us / 1000);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${t}` : t;
}
function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}

// ---- player ------------------------------------------------------------------------------------------
class Player {
  constructor(video) {
    this.video = video; this.base = null; this.ctrl = null; this.ms = null; this.sb = null;
    this.metrics = {}; this.session = 0;
    video.addEventListener("playing", () => { this.mark("playing"); });
    video.addEventListener("seeked", () => { this.mark("seeked"); });
    setInterval(() => this.tick(), 250);
  }
  mark(name) { if (this.metrics[name] === undefined) this.metrics[name] = performance.now(); }
  wallTime() { return this.base === null ? null : this.base + this.video.currentTime * US; }
  inBuffer(sec) {
    const b = this.video.buffered;
    for (let i = 0; i < b.length; i++) if (sec >= b.start(i) && sec < b.end(i) - 0.05) return true;
    return false;
  }
  stop() {
    this.session++;
    if (this.ctrl) this.ctrl.abort();
    this.ctrl = null;
  }
  async seek(handle, wallUs, live = false) {
    this.metrics = { request: performance.now(), target: wallUs };
    const sec = this.base === null ? -1 : (wallUs - this.base) / US;
    if (!live && this.handle === handle && sec >= 0 && this.inBuffer(sec)) {
      this.video.currentTime = sec;  // already here: no new request
      this.video.play().catch(() => {});
      return;
    }
    await this.open(handle, wallUs, live);
  }
  async open(handle, wallUs, live) {
    this.stop();
    const session = this.session;
    const ctrl = new AbortController(); this.ctrl = ctrl; this.handle = handle;
    setMsg("");
    let resp;
    try {
      resp = await fetch(`/api/cameras/${handle}/stream?t=${Math.round(wallUs)}&live=${live ? 1 : 0}`,
                         { signal: ctrl.signal });
    } catch (e) { if (session === this.session) setMsg(`playback failed: ${e}`); return; }
    if (!resp.ok) { setMsg(resp.status === 404 ? "no footage at or after that time" : `error ${resp.status}`); return; }
    this.metrics.headers = performance.now();
    const codecs = resp.headers.get("X-Codecs");
    const mime = `video/mp4; codecs="${codecs}"`;
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) {
      setMsg(`this browser cannot play ${mime} through Media Source Extensions`); ctrl.abort(); return;
    }
    const ms = new MediaSource();
    this.video.src = URL.createObjectURL(ms);
    await new Promise((r) => ms.addEventListener("sourceopen", r, { once: true }));
    if (session !== this.session) return;
    const sb = ms.addSourceBuffer(mime);
    this.ms = ms; this.sb = sb; this.base = Number(resp.headers.get("X-Base-Us"));
    const target = Math.max(0, (wallUs - this.base) / US);
    const reader = resp.body.getReader();
    let started = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (session !== this.session) { reader.cancel().catch(() => {}); return; }
        if (done) break;
        if (this.metrics.firstBytes === undefined) this.metrics.firstBytes = performance.now();
        await this.append(value);
        if (!started && this.video.buffered.length && this.bufferedEnd() > target) {
          started = true;
          this.video.currentTime = this.inBuffer(target) ? target : this.nextStart(target);
          this.video.play().catch(() => {});
        }
        await this.throttle(session);
      }
    } catch (e) {
      if (session === this.session && e.name !== "AbortError") setMsg(`playback stopped: ${e.message || e}`);
      return;
    }
    if (!started && this.video.buffered.length) {
      this.video.currentTime = this.video.buffered.start(0); this.video.play().catch(() => {});
    }
    if (ms.readyState === "open" && !sb.updating) ms.endOfStream();
  }
  bufferedEnd() { const b = this.video.buffered; return b.length ? b.end(b.length - 1) : 0; }
  nextStart(sec) {
    const b = this.video.buffered;
    for (let i = 0; i < b.length; i++) if (b.start(i) >= sec) return b.start(i);
    return sec;
  }
  append(bytes) {
    return new Promise((resolve, reject) => {
      const sb = this.sb;
      const done = () => { sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail); resolve(); };
      const fail = () => { sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail);
        reject(new Error("the browser rejected the video data")); };
      sb.addEventListener("updateend", done); sb.addEventListener("error", fail);
      try { sb.appendBuffer(bytes); } catch (e) {
        sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail);
        if (e.name === "QuotaExceededError") { this.evict(5).then(() => this.append(bytes)).then(resolve, reject); }
        else reject(e);
      }
    });
  }
  async evict(keep) {
    const ct = this.video.currentTime;
    if (ct - keep > 0 && !this.sb.updating) {
      await new Promise((r) => { this.sb.addEventListener("updateend", r, { once: true }); this.sb.remove(0, ct - keep); });
    }
  }
  async throttle(session) {  // read no further than 30 s ahead of the playhead; drop what is 60 s behind
    while (session === this.session && this.bufferedEnd() - this.video.currentTime > 30) {
      await new Promise((r) => setTimeout(r, 250));
    }
    if (this.video.currentTime > 90) await this.evict(60);
  }
  tick() {  // step over gaps in the recording (holes in the buffered ranges)
    const v = this.video, b = v.buffered;
    if (this.base !== null) { state.playAt = this.wallTime(); drawPlayhead(); }
    if (v.paused || !b.length) return;
    for (let i = 0; i < b.length - 1; i++) {
      if (v.currentTime >= b.end(i) - 0.3 && v.currentTime < b.start(i + 1)) { v.currentTime = b.start(i + 1); return; }
    }
    if (v.currentTime < b.start(0)) v.currentTime = b.start(0);
  }
}
const player = new Player($("video"));
function setMsg(t) { $("player-msg").textContent = t; }

// ---- cameras -------------------------------------------------------------------------------------------
async function loadCameras() {
  const j = await getJSON("/api/cameras");
  $("verify-state").textContent = { running: "full verification running…", done: "fully verified",
    pending: "verifying…", off: "verified from signed tails" }[j.verify] || j.verify;
  state.cams = j.cameras;
  const nav = $("cameras");
  nav.replaceChildren(...j.cameras.map((c) => el("button", {
    type: "button", "aria-current": String(state.cam === c.handle), onclick: () => selectCamera(c.handle),
  }, c.name || c.handle.slice(0, 8), c.live ? " ● live" : "",
  c.problems ? el("span", { class: "bad", text: ` ⚠ ${c.problems}` }) : "")));
  if (!j.cameras.length) nav.replaceChildren(el("p", { text: "No sealed footage found on this storage." }));
  if (!state.cam && j.cameras.length) selectCamera(j.cameras[0].handle);
  else if (state.cam && j.generation !== state.generation) loadTimeline();
}
function camInfo() { return state.cams.find((c) => c.handle === state.cam); }
function selectCamera(handle) {
  state.cam = handle; state.generation = -1;
  const c = camInfo();
  const last = c && c.last ? new Date(c.last / 1000) : new Date();
  setDay(new Date(last.getFullYear(), last.getMonth(), last.getDate()));
  for (const b of $("cameras").children) b.setAttribute("aria-current", String(b.textContent.startsWith(c.name || handle.slice(0, 8))));
  $("camera").hidden = false;
}
function setDay(d) {
  state.dayStart = d.getTime() * 1000;
  const p = (n) => String(n).padStart(2, "0");
  $("day").value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  state.win = null;
  loadTimeline();
}
function dayEnd() { const d = new Date(state.dayStart / 1000); return new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime() * 1000; }

// ---- timeline ------------------------------------------------------------------------------------------
async function loadTimeline() {
  const handle = state.cam;
  const j = await getJSON(`/api/cameras/${handle}/timeline?from=${state.dayStart}&until=${dayEnd()}`);
  if (handle !== state.cam) return;
  state.data = j; state.generation = j.generation;
  if (!state.win) fit();
  if (!state.cursor || state.cursor < state.dayStart || state.cursor >= dayEnd()) {
    state.cursor = j.spans.length ? j.spans[0].from : state.dayStart;
  }
  render();
}
function extent() {
  const d = state.data, xs = [...d.spans, ...d.gaps, ...d.suspicious, ...d.events];
  if (!xs.length) return null;
  return [Math.min(...xs.map((x) => x.from)), Math.max(...xs.map((x) => x.until))];
}
function fit() {
  const e = extent();
  if (!e) { state.win = [state.dayStart, dayEnd()]; return; }
  const pad = Math.max((e[1] - e[0]) * 0.03, 5 * US);
  state.win = [Math.max(state.dayStart, e[0] - pad), Math.min(dayEnd(), e[1] + pad)];
}
function pct(t) { const [a, b] = state.win; return ((t - a) / (b - a)) * 100; }
function place(x, cls, title) {
  const l = Math.max(0, pct(x.from)), r = Math.min(100, pct(x.until));
  if (r < 0 || l > 100) return null;
  const d = el("div", { class: cls, title });
  d.style.left = `${l}%`; d.style.width = `${Math.max(r - l, 0)}%`;  // CSSOM: the CSP forbids style attributes
  return d;
}
function render() {
  const d = state.data;
  const items = [];
  for (const s of d.spans) items.push(place(s, `span ${s.ok ? "ok" : "bad"}`, s.ok ? "recorded" : "failed verification"));
  for (const g of d.gaps) items.push(place(g, "gap", `declared gap: ${g.reason}${g.detail ? " — " + g.detail : ""}`));
  for (const s of d.suspicious) items.push(place(s, "suspicious", s.messages.join("\n")));
  for (const e of d.events) items.push(place(e, "event", `${e.label} ${fmt(e.from)}`));
  $("tl-items").replaceChildren(...items.filter(Boolean));
  $("tl-from").textContent = fmt(state.win[0], true);
  $("tl-until").textContent = fmt(state.win[1], true);
  drawCursor(); drawPlayhead();
  const probs = $("problems");
  probs.hidden = !d.problems.length;
  probs.replaceChildren(el("h2", { text: `Verification found ${d.problems.length} problem(s)` }),
    el("ul", {}, ...d.problems.map((p) => el("li", { class: "problem", text: p.text }))));
  $("gaps").replaceChildren(...(d.gaps.length ? d.gaps.map((g) => el("li", {
    text: `${fmt(g.from, true)} – ${fmt(g.until)}: ${g.reason}${g.detail ? " (" + g.detail + ")" : ""}` +
          (g.lost ? `, segments ${g.lost[0]}..${g.lost[1]} declared lost` : "") })) : [el("li", { text: "none" })]));
  $("events").replaceChildren(...(d.events.length ? d.events.map(eventCard) : [el("p", { text: "No events this day." })]));
}
function eventCard(e) {
  const img = e.thumb ? el("img", { src: `/api/cameras/${state.cam}/thumb/${e.thumb.seq}/${e.thumb.index}`,
    alt: `${e.label} at ${fmt(e.from)}`, loading: "lazy" }) : el("div", { class: "noimg", text: "no thumbnail" });
  return el("button", { type: "button", class: "event-card", onclick: () => playAt(e.from) }, img,
    el("div", { text: `${e.label}${e.score ? " " + Math.round(e.score / 10) + "%" : ""}` }),
    el("div", { class: "muted", text: `${fmt(e.from)} – ${fmt(e.until)}` }));
}
function drawCursor() {
  const c = $("tl-cursor"), p = pct(state.cursor);
  c.style.left = `${Math.min(100, Math.max(0, p))}%`;
  $("tl-cursor-text").textContent = fmt(state.cursor, true);
  const tl = $("timeline");
  tl.setAttribute("aria-valuenow", String(Math.round(p)));
  tl.setAttribute("aria-valuetext", fmt(state.cursor, true));
}
function drawPlayhead() {
  const t = state.playAt;
  $("clock").textContent = t ? fmt(t, true) : "--";
  if (!state.win || !t) return;
  $("tl-play").style.left = `${Math.min(100, Math.max(0, pct(t)))}%`;
}
function playAt(t, live = false) {
  state.cursor = t; drawCursor();
  player.seek(state.cam, t, live);
}
function zoom(f) {
  const [a, b] = state.win, c = state.cursor >= a && state.cursor <= b ? state.cursor : (a + b) / 2;
  const w = Math.max(10 * US, Math.min(dayEnd() - state.dayStart, (b - a) * f));
  let na = c - (c - a) * (w / (b - a));
  na = Math.max(state.dayStart, Math.min(na, dayEnd() - w));
  state.win = [na, na + w]; render();
}
function onKey(ev) {
  const step = ev.shiftKey ? 60 * US : 10 * US;
  const e = extent();
  const moves = { ArrowLeft: -step, ArrowRight: step, PageUp: -600 * US, PageDown: 600 * US };
  if (ev.key in moves) state.cursor += moves[ev.key];
  else if (ev.key === "Home") state.cursor = e ? e[0] : state.dayStart;
  else if (ev.key === "End") state.cursor = e ? e[1] : dayEnd();
  else if (ev.key === "Enter" || ev.key === " ") { playAt(state.cursor); ev.preventDefault(); return; }
  else if (ev.key === "+" || ev.key === "=") { zoom(0.5); ev.preventDefault(); return; }
  else if (ev.key === "-") { zoom(2); ev.preventDefault(); return; }
  else return;
  ev.preventDefault();
  state.cursor = Math.max(state.dayStart, Math.min(dayEnd() - 1, state.cursor));
  const [a, b] = state.win;
  if (state.cursor < a || state.cursor > b) { const w = b - a; state.win = [state.cursor - w / 2, state.cursor + w / 2]; render(); }
  drawCursor();
}

// ---- export --------------------------------------------------------------------------------------------
function toLocalInput(us) {
  const d = new Date(us / 1000), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
function fromLocalInput(v) { return v ? new Date(v).getTime() * 1000 : null; }
async function doExport() {
  const a = fromLocalInput($("ex-from").value), b = fromLocalInput($("ex-until").value);
  const msg = $("export-msg");
  if (a === null || b === null || b <= a) { msg.textContent = "choose a start and a later end"; return; }
  msg.textContent = "building the export…";
  const r = await fetch(`/api/export-report?handle=${state.cam}&from=${a}&until=${b}`);
  if (!r.ok) { msg.textContent = `export failed: ${await r.text()}`; return; }
  const rep = await r.json();
  msg.replaceChildren(el("span", { text: `chain ${rep.chain.ok ? "intact" : "HAS PROBLEMS"}, ${rep.segments.length} segment(s), signer ${rep.signer_fingerprint}. ` }),
    el("a", { href: `/api/cameras/${state.cam}/export?from=${a}&until=${b}`, download: "", text: "Download clip.mp4 + report (zip)" }));
}

// ---- wiring --------------------------------------------------------------------------------------------
function init() {
  const tl = $("timeline");
  tl.addEventListener("click", (ev) => {
    const r = tl.getBoundingClientRect(), [a, b] = state.win;
    playAt(a + ((ev.clientX - r.left) / r.width) * (b - a));
  });
  tl.addEventListener("keydown", onKey);
  $("prev-day").onclick = () => setDay(new Date(state.dayStart / 1000 - 12 * 3600e3));
  $("next-day").onclick = () => setDay(new Date(dayEnd() / 1000 + 12 * 3600e3));
  $("day").onchange = () => { const [y, m, d] = $("day").value.split("-").map(Number); if (y) setDay(new Date(y, m - 1, d)); };
  $("fit").onclick = () => { fit(); render(); };
  $("whole-day").onclick = () => { state.win = [state.dayStart, dayEnd()]; render(); };
  $("zoom-in").onclick = () => zoom(0.5);
  $("zoom-out").onclick = () => zoom(2);
  $("live").onclick = () => { const c = camInfo(); playAt(c && c.last ? c.last : Date.now() * 1000, true); };
  $("mark-in").onclick = () => { $("ex-from").value = toLocalInput(player.wallTime() || state.cursor); };
  $("mark-out").onclick = () => { $("ex-until").value = toLocalInput(player.wallTime() || state.cursor); };
  $("export").onclick = doExport;
  loadCameras().catch((e) => setMsg(String(e)));
  setInterval(() => loadCameras().catch(() => {}), 3000);
}
window.sealcamViewer = { player, state, playAt, loadTimeline };
init();
