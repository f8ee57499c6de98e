// Supervisor wallboard (docs/wallboard.md; protocol: docs/console-protocol.md).
// Queue tiles (waiting, longest wait, service level against its target, today's calls, agents by state, a
// sparkline of the day's SL and offered calls) and campaign tiles come from the live statistics: one
// subscription per topic (snapshot, then sequenced deltas; resumed from the last seq after a reconnect).
// The "wallboard" push (sent after every (re)connect, then every second) gives the roster (which queues,
// campaigns and agents there are), the agents' states and calls, the campaigns' pacer and the links' health.
// Thresholds per queue are set here and kept in this browser (localStorage); a crossing turns the tile to
// the warning colour, says so in words and beeps once (WebAudio).
// Supervisor actions: each agent row has an Actions menu (force not ready, log out, edit skills; listen,
// whisper, barge on a call), each campaign tile Pause/Resume and a mode/cap form; every outcome (or the
// server's refusal, in its words) goes to one ARIA live region. Log out and barge ask again in the page.
// The "recording" push puts a recording indicator (a dot and words) on the agent's call.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { ConsoleConnection, formatDuration, el, STATE_LABELS } = window.CTI;
  const SVG = "http://www.w3.org/2000/svg";
  const THRESHOLDS_KEY = "cti.wallboard.thresholds";
  const SOUND_KEY = "cti.wallboard.sound";
  const STATE_ICONS = Object.freeze({
    ready: "\u2713", reserved: "\u260F", on_call: "\u260E", wrap_up: "\u270E", not_ready: "\u2016",
    logged_out: "\u25CB",
  });
  const DASH = "\u2014";

  let conn = null;
  let board = null;                 // the last "wallboard" push
  const streams = new Map();        // topic -> {epoch, seq, figures}
  const subscribed = new Set();     // topics subscribed on this connection
  const pending = new Map();        // topic -> deltas that came while its subscribe was on its way
  const refused = new Set();        // topics the server does not know
  let statsOff = false;             // the server keeps no statistics: the wallboard push alone
  let thresholds = load(THRESHOLDS_KEY, {});
  let soundOn = load(SOUND_KEY, true) !== false;
  const crossed = new Map();        // queue -> Set of the rules crossed now
  let audio = null;
  let beeps = 0;

  function load(key, fallback) {
    try { const v = JSON.parse(localStorage.getItem(key)); return v === null ? fallback : v; } catch (e) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: kept for this page */ }
  }

  // ------------------------------------------------------------------ sign-in and connection
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("login-agent").value.trim();
    const password = $("login-password").value;
    const token = $("login-token").value.trim();
    if (!id || (!password && !token)) { return; }
    unlockAudio();  // a user gesture: the browser lets the page make sound from now on
    const hello = token ? { agent_id: id, token: token } : { agent_id: id, password: password, role: "supervisor" };
    hello.client = "wallboard";
    if (conn) { conn.stop(); }
    conn = new ConsoleConnection(hello, {
      onAuthenticated: (res) => {
        notReadyReasons = (res && res.not_ready_reasons) || [];
        $("login-password").value = "";
        $("login").hidden = true;
        $("app").hidden = false;
        subscribed.clear();
        pending.clear();
        if (board) { ensureSubscribed(); }
      },
      onLost: () => { subscribed.clear(); pending.clear(); },
      onAuthFailed: (err) => {
        conn.stop();
        $("login-error").textContent = err.message || "Sign-in failed";
        $("login-error").hidden = false;
      },
      onPush: onPush,
    }, $("conn-banner"));
    conn.open();
  });

  function onPush(msg) {
    if (msg.type === "wallboard") {
      board = msg;
      ensureSubscribed();
      scheduleRender();
    } else if (msg.type === "recording" && msg.agent_id) {
      recordings.set(msg.agent_id, { call_id: msg.call_id, state: msg.state });
      scheduleRender();
    } else if (msg.type === "stats_delta") {
      if (pending.has(msg.topic)) { pending.get(msg.topic).push(msg); return; }
      take(msg);
      scheduleRender();
    }
  }

  // Frames come in bursts (a delta per topic, the wallboard push): the page is drawn once per frame, and
  // at least once a second (the timers) by the interval below, also in a background tab.
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) { return; }
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  // ------------------------------------------------------------------ live statistics
  function wantedTopics() {
    if (!board || statsOff) { return []; }
    return [...(board.queues || []).map((q) => "queue:" + q.name),
            ...(board.campaigns || []).map((c) => "campaign:" + c.campaign)].filter((t) => !refused.has(t));
  }

  function ensureSubscribed() {
    if (!conn || !conn.authenticated) { return; }
    const topics = wantedTopics().filter((t) => !subscribed.has(t) && !pending.has(t));
    if (topics.length) { subscribe(topics); }
  }

  // Subscribe to ``topics``: resumed from the last seq applied where there is one (the server answers with
  // the deltas missed, or a fresh snapshot when it no longer has them or restarted).
  function subscribe(topics) {
    const resume = {};
    for (const t of topics) {
      const s = streams.get(t);
      if (s) { resume[t] = { epoch: s.epoch, seq: s.seq }; }
      pending.set(t, []);
    }
    const fields = { topics: topics };
    if (Object.keys(resume).length) { fields.resume = resume; }
    conn.request("subscribe", fields).then((res) => {
      for (const t of topics) { subscribed.add(t); }
      for (const frame of res.frames || []) { take(frame); }
      for (const t of topics) {
        const held = pending.get(t) || [];
        pending.delete(t);
        for (const d of held) { take(d); }
      }
      scheduleRender();
    }, (err) => {
      for (const t of topics) { pending.delete(t); }
      if (err.error_id === "unknown-topic") {
        const known = (err.details && err.details.known) || null;
        if (!known) { statsOff = true; render(); return; }  // no statistics on this server
        const ok = topics.filter((t) => known.includes(t));
        for (const t of topics) { if (!known.includes(t)) { refused.add(t); } }
        if (ok.length) { subscribe(ok); }
      }
      // disconnected: subscribed again (resumed) when the connection is back
    });
  }

  // Apply a stats_snapshot or stats_delta frame. A delta that does not follow the last seq applied means
  // frames were lost: that topic is subscribed again (a fresh snapshot).
  function take(m) {
    if (m.type === "stats_snapshot") {
      streams.set(m.topic, { epoch: m.epoch, seq: m.seq, figures: structuredClone(m.figures) });
      return;
    }
    if (m.type !== "stats_delta") { return; }
    const s = streams.get(m.topic);
    if (s && s.epoch === m.epoch && m.seq <= s.seq) { return; }  // already applied
    if (!s || s.epoch !== m.epoch || m.seq !== s.seq + 1) {
      streams.delete(m.topic);
      subscribed.delete(m.topic);
      if (conn && conn.authenticated && !pending.has(m.topic)) { subscribe([m.topic]); }
      return;
    }
    applyDelta(s.figures, m);
    s.seq = m.seq;
  }

  // kpi.feed.apply_delta, in JavaScript: delete each path of unset, then write each [path, value] of set.
  function applyDelta(figures, delta) {
    for (const path of delta.unset || []) {
      const parents = [figures];
      let node = figures;
      for (const k of path.slice(0, -1)) { node = node && node[k]; parents.push(node); }
      if (node) { delete node[path[path.length - 1]]; }
      for (let i = path.length - 2; i >= 0; i--) {  // an emptied object goes too
        const child = parents[i + 1];
        if (child && typeof child === "object" && Object.keys(child).length === 0) { delete parents[i][path[i]]; } else { break; }
      }
    }
    for (const [path, value] of delta.set || []) {
      let node = figures;
      for (const k of path.slice(0, -1)) {
        if (node[k] === null || typeof node[k] !== "object" || Array.isArray(node[k])) { node[k] = {}; }
        node = node[k];
      }
      node[path[path.length - 1]] = value;
    }
  }

  const figuresOf = (topic) => { const s = streams.get(topic); return s ? s.figures : null; };

  // ------------------------------------------------------------------ formatting
  const pct = (v) => (typeof v === "number" ? (v * 100).toFixed(v >= 0.9995 || v === 0 ? 0 : 1) + "%" : DASH);
  const num = (v) => (v === null || v === undefined ? DASH : String(v));
  const secs = (v) => (typeof v === "number" ? formatDuration(v) : DASH);
  function hhmm(secondsFromMidnight) {
    const m = Math.round(secondsFromMidnight / 60);
    return String(Math.floor(m / 60) % 24).padStart(2, "0") + ":" + String(m % 60).padStart(2, "0");
  }
  function set(node, text) { const t = String(text); if (node.textContent !== t) { node.textContent = t; } }
  function fact(label, testid) {
    const box = el("div", { class: "fact" });
    const value = el("dd", testid ? { testid: testid } : {}, DASH);
    box.append(el("dt", {}, label), value);
    return [box, value];
  }

  // ------------------------------------------------------------------ queue tiles
  const queueTiles = new Map();  // name -> {tile, fields...}

  function queueTile(name) {
    let t = queueTiles.get(name);
    if (t) { return t; }
    const tile = el("article", { class: "tile", testid: "wb-queue-" + name, "aria-labelledby": "wb-q-" + name });
    const head = el("header", { class: "tile-head" });
    head.append(el("h3", { id: "wb-q-" + name }, name));
    const alert = el("p", { class: "tile-alert", testid: "wb-alert-text", role: "status" });
    alert.hidden = true;
    const main = el("div", { class: "tile-main" });
    const big = (label, testid) => {
      const box = el("div", { class: "big" });
      const v = el("span", { class: "big-value", testid: testid }, DASH);
      box.append(v, el("span", { class: "big-label" }, label));
      main.append(box);
      return [box, v];
    };
    const [waitBox, waiting] = big("waiting", "wb-waiting");
    const [longBox, longest] = big("longest wait", "wb-longest");
    const [slBox, sl] = big("service level today", "wb-sl");
    const slNote = el("p", { class: "sl-note", testid: "wb-sl-note" });
    const facts = el("dl", { class: "tile-facts" });
    const [f1, offered] = fact("Offered", "wb-offered");
    const [f2, answered] = fact("Answered", "wb-answered");
    const [f3, abandoned] = fact("Abandoned", "wb-abandoned");
    const [f4, asa] = fact("ASA", "wb-asa");
    facts.append(f1, f2, f3, f4);
    const agents = el("dl", { class: "tile-facts agents-by-state" });
    const [a1, ready] = fact(STATE_ICONS.ready + " Ready", "wb-ready");
    const [a2, oncall] = fact(STATE_ICONS.on_call + " On call", "wb-oncall");
    const [a3, wrap] = fact(STATE_ICONS.wrap_up + " Wrap-up", "wb-wrapup");
    const [a4, notready] = fact(STATE_ICONS.not_ready + " Not ready", "wb-notready");
    agents.append(a1, a2, a3, a4);
    const spark = el("figure", { class: "spark", testid: "wb-spark" });
    const sparkCaption = el("figcaption", { class: "spark-caption" });
    spark.append(sparkCaption);
    const th = thresholdEditor(name);
    tile.append(head, alert, main, slNote, facts, agents, spark, th);
    t = { tile, alert, waitBox, waiting, longBox, longest, slBox, sl, slNote, offered, answered, abandoned, asa,
          ready, oncall, wrap, notready, spark, sparkCaption, sparkKey: "" };
    queueTiles.set(name, t);
    return t;
  }

  function thresholdEditor(queue) {
    const box = el("details", { class: "thresholds", testid: "wb-thresholds" });
    box.append(el("summary", {}, "Thresholds"));
    const form = el("form", { class: "th-form" });
    const input = (label, key, testid, hint) => {
      const lab = el("label", { class: "th-field" });
      const inp = el("input", { type: "number", min: "0", step: "1", inputmode: "numeric", testid: testid });
      inp.name = key;
      const v = (thresholds[queue] || {})[key];
      if (typeof v === "number") { inp.value = String(v); }
      lab.append(el("span", {}, label), inp, el("span", { class: "muted small" }, hint));
      form.append(lab);
      return inp;
    };
    const w = input("Waiting more than", "waiting", "wb-th-waiting", "callers");
    const l = input("Longest wait over", "longest", "wb-th-longest", "seconds");
    const s = input("Service level under", "sl", "wb-th-sl", "%");
    const buttons = el("div", { class: "row" });
    const saveBtn = el("button", { type: "submit", testid: "wb-th-save" }, "Save");
    const clear = el("button", { type: "button", testid: "wb-th-clear" }, "Clear");
    buttons.append(saveBtn, clear);
    form.append(buttons, el("p", { class: "muted small" }, "Kept in this browser only."));
    const value = (inp) => (inp.value.trim() === "" || isNaN(Number(inp.value)) ? null : Math.max(0, Number(inp.value)));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      unlockAudio();
      const rule = { waiting: value(w), longest: value(l), sl: value(s) };
      if (rule.waiting === null && rule.longest === null && rule.sl === null) { delete thresholds[queue]; } else { thresholds[queue] = rule; }
      save(THRESHOLDS_KEY, thresholds);
      box.open = false;
      render();
    });
    clear.addEventListener("click", () => {
      w.value = l.value = s.value = "";
      delete thresholds[queue];
      save(THRESHOLDS_KEY, thresholds);
      render();
    });
    box.append(form);
    return box;
  }

  // The rules of ``queue`` crossed by these values: [key, words] pairs.
  function crossings(queue, waiting, longest, sl) {
    const rule = thresholds[queue];
    const out = [];
    if (!rule) { return out; }
    if (typeof rule.waiting === "number" && typeof waiting === "number" && waiting > rule.waiting) {
      out.push(["waiting", waiting + " waiting (over " + rule.waiting + ")"]);
    }
    if (typeof rule.longest === "number" && typeof longest === "number" && longest > rule.longest) {
      out.push(["longest", "longest wait " + formatDuration(longest) + " (over " + formatDuration(rule.longest) + ")"]);
    }
    if (typeof rule.sl === "number" && typeof sl === "number" && sl * 100 < rule.sl) {
      out.push(["sl", "service level " + pct(sl) + " (under " + rule.sl + "%)"]);
    }
    return out;
  }

  function renderQueues(now) {
    const names = (board.queues || []).map((q) => q.name);
    const container = $("wb-queue-tiles");
    const shown = [];
    const alerts = [];
    for (const name of names) {
      const t = queueTile(name);
      shown.push(t.tile);
      const f = figuresOf("queue:" + name);
      const q = (board.queues || []).find((x) => x.name === name) || {};
      let waiting, longest, sl, day, agents, target;
      if (f) {
        day = (f.windows || {}).day || {};
        waiting = f.waiting;
        longest = typeof f.oldest_since === "number" ? Math.max(0, now - f.oldest_since) : null;
        sl = day.service_level;
        agents = f.agents || {};
        target = f.target || null;
      } else {  // no statistics (yet): the wallboard push's figures
        day = { answered: q.answered, abandoned: q.abandoned };
        waiting = q.waiting; longest = q.longest_wait; sl = q.service_level; agents = q.agents || {};
        target = null;
      }
      set(t.waiting, num(waiting));
      set(t.longest, longest === null || longest === undefined ? DASH : formatDuration(longest));
      set(t.sl, pct(sl));
      // SL against the target: on target, within 10 points under it, or further under (icon and words too)
      let grade = "none";
      let note = "no calls answered or abandoned yet today";
      if (typeof sl === "number" && target) {
        const gap = sl * 100 - target.percent;
        grade = gap >= 0 ? "good" : (gap >= -10 ? "near" : "bad");
        const icon = grade === "good" ? "\u2713 " : (grade === "near" ? "\u25BC " : "\u2715 ");
        note = icon + (grade === "good" ? "on target" : "under target") + ": " + target.percent + "% in " + target.seconds + " s";
      } else if (target) {
        note = "target " + target.percent + "% in " + target.seconds + " s; no calls yet today";
      }
      t.slBox.dataset.grade = grade;
      t.tile.dataset.sl = grade;
      set(t.slNote, note);
      set(t.offered, num(day.offered));
      set(t.answered, num(day.answered));
      set(t.abandoned, num(day.abandoned) + (typeof day.abandon_rate === "number" ? " (" + pct(day.abandon_rate) + ")" : ""));
      set(t.asa, secs(day.asa));
      set(t.ready, agents.ready || 0);
      set(t.oncall, (agents.on_call || 0) + (agents.reserved || 0));
      set(t.wrap, agents.wrap_up || 0);
      set(t.notready, agents.not_ready || 0);
      if (f && f.history) { sparkline(t, f.history, target, now); }
      t.spark.hidden = !(f && f.history);

      const hits = crossings(name, waiting, longest, sl);
      const before = crossed.get(name) || new Set();
      const nowKeys = new Set(hits.map((h) => h[0]));
      const fresh = hits.filter((h) => !before.has(h[0]));
      crossed.set(name, nowKeys);
      t.tile.dataset.alert = hits.length ? "true" : "false";
      t.waitBox.dataset.alert = nowKeys.has("waiting") ? "true" : "false";
      t.longBox.dataset.alert = nowKeys.has("longest") ? "true" : "false";
      t.slBox.dataset.alert = nowKeys.has("sl") ? "true" : "false";
      t.alert.hidden = !hits.length;
      set(t.alert, hits.length ? "\u26A0 " + hits.map((h) => h[1]).join("; ") : "");
      for (const h of hits) { alerts.push([name, h[1]]); }
      if (fresh.length) {
        announce(name + ": " + fresh.map((h) => h[1]).join("; "));
        beep();
      }
    }
    if (container.children.length !== shown.length || shown.some((n, i) => container.children[i] !== n)) {
      container.replaceChildren(...shown);
    }
    const list = $("wb-alerts");
    list.replaceChildren(...alerts.map(([q, text]) => el("li", { testid: "wb-alert-" + q }, "\u26A0 " + q + ": " + text)));
    list.hidden = alerts.length === 0;
  }

  // The day's curve: offered calls per interval as bars, the service level as a line (0-100%), the target
  // as a dashed line; from the first interval with calls (at the latest an hour ago) to the current one.
  function sparkline(t, history, target, now) {
    const iv = history.interval || 900;
    const intervals = history.intervals || {};
    const current = Math.max(0, Math.floor((now - history.day_start) / iv));
    const keys = Object.keys(intervals).map(Number).filter((k) => k <= current);
    const first = Math.max(0, Math.min(current - Math.ceil(3600 / iv) + 1, ...keys));
    const key = JSON.stringify([first, current, intervals, target]);
    if (key === t.sparkKey) { return; }
    t.sparkKey = key;
    const n = current - first + 1;
    const W = n * 10, H = 40;
    let maxOffered = 1, total = 0;
    for (let k = first; k <= current; k++) {
      const o = (intervals[k] || {}).offered || 0;
      maxOffered = Math.max(maxOffered, o);
      total += o;
    }
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark-svg");
    svg.setAttribute("role", "img");
    const points = [];
    let lastSl = null;
    for (let k = first; k <= current; k++) {
      const b = intervals[k] || {};
      const x = (k - first) * 10;
      if (b.offered) {
        const h = Math.max(1, (b.offered / maxOffered) * (H - 4));
        const bar = document.createElementNS(SVG, "rect");
        bar.setAttribute("x", String(x + 1)); bar.setAttribute("width", "8");
        bar.setAttribute("y", String(H - h)); bar.setAttribute("height", String(h));
        bar.setAttribute("class", "spark-bar");
        svg.append(bar);
      }
      if (typeof b.service_level === "number") {  // a step across the interval's width
        const y = (H - 2 - b.service_level * (H - 4)).toFixed(1);
        points.push((x + 1) + "," + y, (x + 9) + "," + y);
        lastSl = b.service_level;
      }
    }
    if (target) {
      const y = (H - 2 - (target.percent / 100) * (H - 4)).toFixed(1);
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("x1", "0"); line.setAttribute("x2", String(W)); line.setAttribute("y1", y); line.setAttribute("y2", y);
      line.setAttribute("class", "spark-target");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
    }
    if (points.length) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("class", "spark-sl");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
    }
    const words = "Today from " + hhmm(first * iv) + ": " + total + " calls offered" +
      (lastSl === null ? "" : "; service level in the last interval with calls " + pct(lastSl));
    svg.setAttribute("aria-label", words);
    const title = document.createElementNS(SVG, "title");
    title.textContent = words;
    svg.prepend(title);
    const old = t.spark.querySelector("svg");
    if (old) { old.replaceWith(svg); } else { t.spark.prepend(svg); }
    set(t.sparkCaption, hhmm(first * iv) + "\u2013now \u00B7 bars: offered (max " + maxOffered + " per " +
        Math.round(iv / 60) + " min) \u00B7 line: SL");
    t.spark.dataset.total = String(total);
  }

  // ------------------------------------------------------------------ campaign tiles
  const campaignTiles = new Map();  // campaign -> {tile, head, facts, pause, paused badge, change form}
  const DIAL_MODES = ["progressive", "predictive", "ratio", "preview"];

  function campaignTile(name) {
    let t = campaignTiles.get(name);
    if (t) { return t; }
    const tile = el("article", { class: "tile campaign", testid: "wb-campaign-" + name, "aria-labelledby": "wb-c-" + name });
    const head = el("header", { class: "tile-head" });
    const facts = el("dl", { class: "tile-facts" });
    const controls = el("div", { class: "campaign-controls" });
    const pause = el("button", { type: "button", testid: "wb-campaign-pause" }, "Pause");
    pause.addEventListener("click", () => {
      const c = campaignOf(name);
      const paused = !!(c && c.paused);
      act(pause, paused ? "resume_campaign" : "pause_campaign", { campaign: name },
          paused ? "resume campaign " + name : "pause campaign " + name,
          (res) => res.paused ? "Campaign " + name + " paused: no new dials (calls in progress go on)."
            : "Campaign " + name + " resumed: dialling again from the next pacing round.");
    });
    const change = campaignForm(name);
    controls.append(pause, change);
    tile.append(head, facts, controls);
    t = { tile, head, facts, pause, change };
    campaignTiles.set(name, t);
    return t;
  }

  const campaignOf = (name) => ((board && board.campaigns) || []).find((c) => c.campaign === name) || null;

  // Change the dial mode, the abandon cap (a percentage here, a fraction on the wire) or the ratio. The page
  // checks the cap's range (0-50%); the law's cap (e.g. 3% under the FTC TSR) is the server's to check.
  function campaignForm(name) {
    const box = el("details", { class: "campaign-change", testid: "wb-campaign-change" });
    box.append(el("summary", {}, "Change mode or cap"));
    const form = el("form", { class: "th-form", novalidate: "" });
    const field = (label, input, hint) => {
      const lab = el("label", { class: "th-field" });
      lab.append(el("span", {}, label), input);
      if (hint) { lab.append(el("span", { class: "muted small" }, hint)); }
      form.append(lab);
      return lab;
    };
    const mode = el("select", { testid: "wb-campaign-mode" });
    for (const m of DIAL_MODES) { mode.append(el("option", { value: m }, m)); }
    const cap = el("input", { type: "number", min: "0", max: "50", step: "0.1", inputmode: "decimal",
                              testid: "wb-campaign-cap", "aria-describedby": "wb-cap-err-" + name });
    const ratio = el("input", { type: "number", min: "0.1", max: "5", step: "0.1", inputmode: "decimal",
                                testid: "wb-campaign-ratio" });
    field("Dial mode", mode);
    field("Abandon cap", cap, "% of live answers");
    const ratioField = field("Ratio", ratio, "lines per agent");
    const err = el("p", { class: "field-error", id: "wb-cap-err-" + name, testid: "wb-campaign-cap-error" });
    err.hidden = true;
    const buttons = el("div", { class: "row" });
    const submit = el("button", { type: "submit", testid: "wb-campaign-save" }, "Apply");
    buttons.append(submit);
    form.append(err, buttons);
    const showRatio = () => { ratioField.hidden = mode.value !== "ratio"; };
    mode.addEventListener("change", showRatio);
    // prefilled as it opens (on the click itself: the "toggle" event comes later, after what one typed)
    const summary = box.querySelector("summary");
    summary.addEventListener("click", () => {
      if (box.open) { return; }
      const c = campaignOf(name) || {};
      mode.value = DIAL_MODES.includes(c.mode) ? c.mode : "progressive";
      cap.value = typeof c.max_abandon_rate === "number" ? String(+(c.max_abandon_rate * 100).toFixed(2)) : "";
      ratio.value = typeof c.ratio === "number" ? String(c.ratio) : "";
      err.hidden = true;
      cap.removeAttribute("aria-invalid");
      showRatio();
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const c = campaignOf(name) || {};
      const fields = { campaign: name };
      const problem = (text) => { err.textContent = text; err.hidden = false; cap.setAttribute("aria-invalid", "true"); cap.focus(); };
      err.hidden = true;
      cap.removeAttribute("aria-invalid");
      if (mode.value !== c.mode) { fields.mode = mode.value; }
      if (cap.value.trim() !== "") {
        const v = Number(cap.value);
        if (!isFinite(v) || v < 0 || v > 50) { problem("The abandon cap is a percentage from 0 to 50."); return; }
        const fraction = Number((v / 100).toFixed(6));
        if (fraction !== c.max_abandon_rate) { fields.max_abandon_rate = fraction; }
      }
      if (mode.value === "ratio" && ratio.value.trim() !== "") {
        const r = Number(ratio.value);
        if (!isFinite(r) || r < 0.1 || r > 5) { problem("The ratio is from 0.1 to 5."); return; }
        if (r !== c.ratio) { fields.ratio = r; }
      }
      if (Object.keys(fields).length === 1) { showResult(true, "Campaign " + name + ": nothing to change."); return; }
      act(submit, "set_campaign", fields, "change campaign " + name, (res) => {
        box.open = false;
        return "Campaign " + name + ": mode " + res.mode + (res.mode === "ratio" ? " (ratio " + res.ratio + ")" : "") +
          ", abandon cap " + pct(res.max_abandon_rate) + ".";
      });
    });
    box.append(form);
    return box;
  }

  function renderCampaigns() {
    const campaigns = board.campaigns || [];
    $("wb-campaigns-panel").hidden = campaigns.length === 0;
    const container = $("wb-campaign-tiles");
    const shown = campaigns.map((c) => {
      const t = campaignTile(c.campaign);
      const f = figuresOf("campaign:" + c.campaign);
      const day = f ? ((f.windows || {}).day || {}) : (c.today || {});
      const modeText = (c.enabled === false && !c.paused ? "off \u00B7 " : "") +
        (c.step && c.step !== c.mode ? c.mode + " \u2192 " + c.step : (c.mode || ""));
      const head = [el("h3", { id: "wb-c-" + c.campaign }, c.campaign),
        el("span", { class: "badge mode", "data-enabled": c.enabled === false ? "false" : "true", testid: "wb-campaign-mode-badge" }, modeText)];
      if (c.paused) { head.push(el("span", { class: "badge paused", testid: "wb-campaign-paused" }, "\u2016 Paused")); }
      const key = JSON.stringify([c.campaign, modeText, !!c.paused]);
      if (t.head.dataset.key !== key) { t.head.replaceChildren(...head); t.head.dataset.key = key; }
      t.tile.dataset.paused = c.paused ? "true" : "false";
      set(t.pause, c.paused ? "\u25B6 Resume" : "\u2016 Pause");
      t.pause.setAttribute("aria-label", (c.paused ? "Resume" : "Pause") + " campaign " + c.campaign);
      const facts = [];
      const add = (label, value, testid) => { const [box, v] = fact(label, testid); v.textContent = value; facts.push(box); };
      add("Dials", num(day.dials), "wb-dials");
      add("Answers", num(day.answers), "wb-answers");
      add("Contacts", num(day.contacts), "wb-contacts");
      add("Contact rate", pct(day.contact_rate), "wb-contact-rate");
      add("Abandoned today", pct(day.abandon_rate), "wb-abandon-today");
      add("Abandoned (recent)", pct(c.recent_abandon_rate), "wb-abandon-recent");
      add("Abandon cap", pct(c.max_abandon_rate), "wb-cap");
      add("Occupancy", pct(c.occupancy), "wb-occupancy");
      add("Leads due", num(c.due_leads), "wb-due");
      add("In flight", num(c.in_flight), "wb-inflight");
      const pacer = c.mode === "preview" ? c.previews + " shown"
        : (c.pacing ? c.pacing.reason + " (" + c.pacing.dial + " now)" : DASH);
      add("Pacer", pacer, "wb-pacer");
      t.facts.replaceChildren(...facts);
      return t.tile;
    });
    if (container.children.length !== shown.length || shown.some((n, i) => container.children[i] !== n)) {
      container.replaceChildren(...shown);
    }
  }

  // ------------------------------------------------------------------ agents
  const agentRows = new Map();  // agent -> {tr, who, stateCell, timer, callCell, menuButton}

  function agentRow(id) {
    let r = agentRows.get(id);
    if (r) { return r; }
    const tr = el("tr", { testid: "wb-agent-" + id });
    const who = el("td", { class: "agent-name", "data-label": "Agent" });
    const stateCell = el("td", { class: "agent-state", "data-label": "State" });
    const timer = el("td", { class: "num agent-time", "data-label": "Time", testid: "wb-agent-time" });
    const callCell = el("td", { class: "agent-call", "data-label": "Call", testid: "wb-agent-call" });
    const actions = el("td", { class: "agent-actions" });
    const menuButton = el("button", { type: "button", class: "menu-button", testid: "wb-agent-actions",
                                      "aria-haspopup": "dialog", "aria-expanded": "false", "aria-controls": "wb-agent-menu" },
                          "Actions \u25BE");
    menuButton.addEventListener("click", () => (menuAgent === id ? closeMenu() : openMenu(id)));
    actions.append(menuButton);
    tr.append(who, stateCell, timer, callCell, actions);
    r = { tr, who, stateCell, timer, callCell, menuButton, key: "" };
    agentRows.set(id, r);
    return r;
  }

  function renderAgents(now) {
    const agents = board.agents || [];
    const counts = {};
    const shown = agents.map((ag) => {
      counts[ag.state] = (counts[ag.state] || 0) + 1;
      const r = agentRow(ag.agent_id);
      const name = ag.name || ag.agent_id;
      r.tr.dataset.state = ag.state;
      r.menuButton.setAttribute("aria-label", "Actions for " + name);
      const rec = recordingOf(ag);
      const key = JSON.stringify([name, ag.state, ag.reason, ag.call, rec]);
      if (key !== r.key) {
        r.key = key;
        set(r.who, name);
        const badge = el("span", { class: "badge", "data-state": ag.state });
        badge.append(el("span", { class: "icon", "aria-hidden": "true" }, STATE_ICONS[ag.state] || "\u2022"),
                     el("span", { testid: "wb-agent-state" }, STATE_LABELS[ag.state] || ag.state));
        r.stateCell.replaceChildren(badge);
        if (ag.reason) { r.stateCell.append(el("span", { class: "reason", testid: "wb-agent-reason" }, ag.reason)); }
        r.callCell.replaceChildren();
        if (ag.call) {
          r.callCell.append(el("span", { class: "caller", testid: "wb-agent-caller" }, ag.call.caller || "unknown caller"));
          if (ag.call.number && ag.call.number !== ag.call.caller) {
            r.callCell.append(el("span", { class: "muted small number" }, ag.call.number));
          }
          if (ag.call.queue) { r.callCell.append(el("span", { class: "queue-tag", testid: "wb-agent-queue" }, ag.call.queue)); }
        }
        if (rec) {  // a dot and words: never the colour alone
          const tag = el("span", { class: "rec", "data-rec": rec, testid: "wb-agent-rec" });
          tag.append(el("span", { class: "rec-dot", "aria-hidden": "true" }, rec === "paused" ? "\u2016" : "\u25CF"),
                     el("span", {}, rec === "paused" ? "Recording paused" : "Recording"));
          r.callCell.append(tag);
        }
      }
      set(r.timer, formatDuration(now - (ag.since || now)));
      return r.tr;
    });
    const body = $("wb-agent-rows");
    if (body.children.length !== shown.length || shown.some((n, i) => body.children[i] !== n)) {
      body.replaceChildren(...shown);
    }
    const order = ["ready", "reserved", "on_call", "wrap_up", "not_ready", "logged_out"];
    set($("wb-agent-counts"), order.filter((s) => counts[s]).map((s) => counts[s] + " " + (STATE_LABELS[s] || s).toLowerCase()).join(" \u00B7 "));
    if (menuAgent) { updateMenu(); }
  }

  // ------------------------------------------------------------------ supervisor actions
  let notReadyReasons = [];     // from the hello result
  const knownSkills = new Map();  // agent -> {skill: level}, as the server last confirmed them (set_skills)
  const recordings = new Map();   // agent -> {call_id, state}, from the "recording" pushes
  let menuAgent = null;           // the agent whose actions menu is open
  let menuParts = null;

  // "recording" or "paused" while the agent's current call is recorded, else null.
  // The latest "recording" push for the call wins; else the wallboard frame's own (a screen opened
  // in the middle of a recorded call).
  function recordingOf(ag) {
    const rec = recordings.get(ag.agent_id);
    const state = rec && ag.call_id && rec.call_id === ag.call_id ? rec.state : (ag.call && ag.call.recording);
    return state === "recording" || state === "paused" ? state : null;
  }

  const agentOf = (id) => ((board && board.agents) || []).find((a) => a.agent_id === id) || null;
  const agentName = (id) => { const a = agentOf(id); return (a && a.name) || id; };

  // The outcome of an action, in words (and an icon: never the colour alone), in the live region.
  function showResult(ok, text) {
    const toast = $("wb-action-toast");
    const p = $("wb-action-status");
    toast.dataset.kind = ok ? "ok" : "error";
    $("wb-action-dismiss").hidden = false;
    p.textContent = (ok ? "\u2713 " : "\u2715 ") + text;
  }
  $("wb-action-dismiss").addEventListener("click", () => {
    $("wb-action-toast").dataset.kind = "";
    $("wb-action-status").textContent = "";
    $("wb-action-dismiss").hidden = true;  // nothing to dismiss: out of the tab order too
  });

  // Send one action; the button is disabled while it is on its way. ``done(result)`` gives the words.
  function act(button, type, fields, what, done) {
    if (!conn || !conn.authenticated) { showResult(false, "Could not " + what + ": not connected to the server."); return; }
    if (button) { button.disabled = true; }
    conn.request(type, fields).then((res) => {
      if (button) { button.disabled = false; }
      showResult(true, done(res));
      scheduleRender();
    }, (err) => {
      if (button) { button.disabled = false; }
      showResult(false, "Could not " + what + ": " + (err.message || err.error_id || "refused") + ".");
    });
  }

  function openMenu(id) {
    closeMenu(false);
    menuAgent = id;
    const name = agentName(id);
    const menu = $("wb-agent-menu");
    const title = el("h3", { id: "wb-agent-menu-title" });
    const close = el("button", { type: "button", class: "menu-close", testid: "wb-menu-close", "aria-label": "Close" }, "\u2715");
    close.addEventListener("click", () => closeMenu());
    const head = el("header", { class: "tile-head" });
    head.append(title, close);

    // force not ready, with a reason (default "supervisor")
    const nr = el("form", { class: "menu-row" });
    const reason = el("select", { testid: "wb-nr-reason", "aria-label": "Not-ready reason" });
    reason.append(el("option", { value: "" }, "Reason: supervisor"));
    for (const r of notReadyReasons) { reason.append(el("option", { value: r }, r)); }
    const nrButton = el("button", { type: "submit", testid: "wb-act-not-ready" }, "\u2016 Force not ready");
    nr.append(reason, nrButton);
    nr.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const fields = { agent_id: id };
      if (reason.value) { fields.reason = reason.value; }
      act(nrButton, "force_not_ready", fields, "set " + name + " not ready", (res) => {
        closeMenu();
        const why = res.state && res.state.reason ? " (" + res.state.reason + ")" : "";
        return res.pending ? name + " will be not ready" + why + " when this call's work ends."
          : name + " is now not ready" + why + ".";
      });
    });

    const logout = el("button", { type: "button", testid: "wb-act-logout" }, "\u25CB Log out\u2026");
    logout.addEventListener("click", () => confirmStep("Log " + name + " out?", "Log out", () =>
      act(null, "force_logout", { agent_id: id }, "log " + name + " out", (res) => {
        closeMenu();
        return res.pending ? name + " will be logged out when this call's work ends." : name + " is now logged out.";
      })));
    const skills = el("button", { type: "button", testid: "wb-act-skills", "aria-expanded": "false" }, "\u270E Edit skills\u2026");
    const basic = el("div", { class: "menu-row" });
    basic.append(logout, skills);

    // listen / whisper / barge: only while the agent is on a call
    const monitor = el("div", { class: "menu-row", role: "group", "aria-label": "Monitor the call", testid: "wb-monitor" });
    const verbs = { listen: "listen to", whisper: "whisper to", barge: "barge into" };
    for (const [mode, label] of [["listen", "Listen"], ["whisper", "Whisper"], ["barge", "Barge\u2026"]]) {
      const b = el("button", { type: "button", testid: "wb-act-" + mode }, "\u260E " + label);
      const send = () => act(b, "monitor", { agent_id: id, mode: mode }, verbs[mode] + " " + name + "'s call", (res) => {
        closeMenu();
        return "Calling your phone (" + res.endpoint + ") to " + verbs[mode] + " " + name + "'s call: answer it to join.";
      });
      b.addEventListener("click", mode === "barge"
        ? () => confirmStep("Barge into " + name + "'s call? The caller and the agent will both hear you.", "Barge", send)
        : send);
      monitor.append(b);
    }

    const confirm = el("div", { class: "menu-confirm", role: "group", testid: "wb-confirm", "aria-labelledby": "wb-confirm-text" });
    confirm.hidden = true;
    const form = skillsForm(id, name);
    form.hidden = true;
    skills.addEventListener("click", () => {
      form.hidden = !form.hidden;
      skills.setAttribute("aria-expanded", form.hidden ? "false" : "true");
      if (!form.hidden) { const first = form.querySelector("input"); if (first) { first.focus(); } }
    });
    menu.replaceChildren(head, nr, basic, monitor, confirm, form);
    menuParts = { title, monitor, confirm, nrButton, logout, name };
    menu.hidden = false;
    const row = agentRows.get(id);
    if (row) { row.menuButton.setAttribute("aria-expanded", "true"); }
    updateMenu();
    nrButton.focus();
  }

  // A confirmation inside the page (no window.confirm): the action runs only on the second click.
  function confirmStep(question, yesLabel, run) {
    const box = menuParts.confirm;
    const yes = el("button", { type: "button", class: "stop", testid: "wb-confirm-yes" }, yesLabel);
    const no = el("button", { type: "button", testid: "wb-confirm-no" }, "Cancel");
    yes.addEventListener("click", () => { box.hidden = true; run(); });
    no.addEventListener("click", () => { box.hidden = true; });
    box.replaceChildren(el("p", { id: "wb-confirm-text" }, question), yes, no);
    box.hidden = false;
    yes.focus();
  }

  function updateMenu() {
    const ag = agentOf(menuAgent);
    if (!ag || !menuParts) { closeMenu(); return; }
    set(menuParts.title, menuParts.name + " \u00B7 " + (STATE_LABELS[ag.state] || ag.state) + (ag.reason ? " (" + ag.reason + ")" : ""));
    menuParts.monitor.hidden = ag.state !== "on_call";
    const out = ag.state === "logged_out";
    menuParts.nrButton.disabled = out;
    menuParts.logout.disabled = out;
  }

  function closeMenu(refocus) {
    const id = menuAgent;
    menuAgent = null;
    menuParts = null;
    $("wb-agent-menu").hidden = true;
    $("wb-agent-menu").replaceChildren();
    const row = id ? agentRows.get(id) : null;
    if (row) {
      row.menuButton.setAttribute("aria-expanded", "false");
      if (refocus !== false) { row.menuButton.focus(); }
    }
  }
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && menuAgent) { closeMenu(); } });

  // The agent's whole new set of skills: name and level (1-10) rows, prefilled with what the server last
  // confirmed for this agent on this page (the wallboard push carries queues, not skills).
  function skillsForm(id, name) {
    const form = el("form", { class: "skills-form", testid: "wb-skills-form", novalidate: "" });
    form.append(el("p", { class: "muted small" }, "The agent's whole set of skills (levels 1-10). Until the server restarts: " +
                          "the configuration keeps the lasting ones."));
    const rows = el("div", { class: "skill-rows" });
    const addRow = (skill, level) => {
      const row = el("div", { class: "skill-row", testid: "wb-skill-row" });
      const n = el("input", { testid: "wb-skill-name", "aria-label": "Skill", maxlength: "64", pattern: "[A-Za-z0-9_.\\-]{1,64}",
                              placeholder: "skill" });
      const l = el("input", { type: "number", min: "1", max: "10", step: "1", inputmode: "numeric", testid: "wb-skill-level",
                              "aria-label": "Level" });
      n.value = skill || "";
      l.value = level ? String(level) : "5";
      const remove = el("button", { type: "button", testid: "wb-skill-remove", "aria-label": "Remove this skill" }, "\u2715");
      remove.addEventListener("click", () => row.remove());
      row.append(n, l, remove);
      rows.append(row);
    };
    const known = knownSkills.get(id);
    if (known && Object.keys(known).length) {
      for (const [s, lv] of Object.entries(known)) { addRow(s, lv); }
    } else { addRow("", 5); }
    const err = el("p", { class: "field-error", testid: "wb-skills-error", role: "alert" });
    err.hidden = true;
    const buttons = el("div", { class: "row" });
    const more = el("button", { type: "button", testid: "wb-skill-add" }, "+ Add skill");
    more.addEventListener("click", () => addRow("", 5));
    const save = el("button", { type: "submit", class: "go", testid: "wb-skills-save" }, "Save skills");
    buttons.append(more, save);
    form.append(rows, err, buttons);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const skills = {};
      err.hidden = true;
      for (const row of rows.querySelectorAll(".skill-row")) {
        const [n, l] = row.querySelectorAll("input");
        const s = n.value.trim();
        if (!s && !l.value.trim()) { continue; }
        const level = Number(l.value);
        let problem = null;
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(s)) { problem = "A skill name is letters, digits, '.', '_' or '-'."; }
        else if (s in skills) { problem = "Skill " + s + " is listed twice."; }
        else if (!Number.isInteger(level) || level < 1 || level > 10) { problem = "The level of " + s + " is a whole number from 1 to 10."; }
        if (problem) { err.textContent = problem; err.hidden = false; n.focus(); return; }
        skills[s] = level;
      }
      act(save, "set_skills", { agent_id: id, skills: skills }, "change " + name + "'s skills", (res) => {
        knownSkills.set(id, res.skills || skills);
        closeMenu();
        const list = Object.entries(res.skills || {}).map(([s, lv]) => s + " " + lv).join(", ") || "none";
        return name + "'s skills: " + list + "; works " + ((res.queues || []).join(", ") || "no queue") + ".";
      });
    });
    return form;
  }

  // ------------------------------------------------------------------ health, sound, announcements
  function renderHealth(health, now, warnings) {
    const parts = [];
    const ami = health.ami || {};
    const detail = health.ami_detail || {};
    const since = health.ami_since || {};
    for (const [name, up] of Object.entries(ami)) {
      // a PBX that is down says for how long and why: "AMI pbx1 DOWN for 5:02: cannot connect: ..."
      let text = "";
      if (!up && typeof since[name] === "number") { text += " for " + formatDuration(now - since[name]); }
      if (!up && detail[name]) { text += ": " + detail[name]; }
      parts.push(["AMI " + name, up, text]);
    }
    if (health.db !== undefined && health.db !== null) { parts.push(["DB", health.db, ""]); }
    if (health.redis !== undefined && health.redis !== null) { parts.push(["Redis", health.redis, ""]); }
    // several nodes: this node's lease store unreachable (it keeps its PBXs and campaigns only until the leases lapse)
    const leases = health.leases || {};
    if (leases.store_up === false) { parts.push(["Leases", false, leases.error ? ": " + leases.error : ""]); }
    if (health.redis_bus !== undefined && health.redis_bus !== null) { parts.push(["Redis bus", health.redis_bus, ""]); }
    // several nodes: the shared agent pool unreachable (no routing decision until it is back; callers wait in order)
    if (health.agent_pool !== undefined && health.agent_pool !== null) {
      parts.push(["Agent pool", health.agent_pool, health.agent_pool ? "" : ": callers wait, no offers"]);
    }
    const spans = parts.map(([label, up, text]) =>
      el("span", { class: up ? "up" : "down", testid: "wb-health-" + label.replace(/\s+/g, "-") },
         (up ? "\u2713 " : "\u2715 ") + label + (up ? " up" : " DOWN" + text)));
    // What a PBX lacks for the shipped dialplan and the flows (missing modules, prompts): one line each.
    for (const [name, problems] of Object.entries(health.pbx || {})) {
      for (const problem of problems) {
        spans.push(el("span", { class: "down", testid: "wb-health-pbx-problem" }, "PBX " + name + ": " + problem));
      }
    }
    // The dialer's latest warnings (a campaign about to run out of leads, ...): the newest three.
    for (const w of warnings.slice(-3)) {
      spans.push(el("span", { class: "down", testid: "wb-dialer-warning" }, "Campaign " + w.campaign + ": " + w.message));
    }
    $("wb-health").replaceChildren(...spans);
  }

  function announce(text) {
    const region = $("wb-announce");
    region.textContent = "";
    region.textContent = "Threshold crossed: " + text;
  }

  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { return; }
    try {
      if (!audio) { audio = new Ctx(); }
      if (audio.state === "suspended") { audio.resume(); }
    } catch (e) { audio = null; }
  }

  // Two short tones (WebAudio; no sound file), once per threshold crossing.
  function beep() {
    if (!soundOn) { return; }
    unlockAudio();
    if (!audio) { return; }
    const t0 = audio.currentTime + 0.01;
    for (const [at, freq] of [[0, 880], [0.18, 660]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.15);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + 0.16);
    }
    beeps += 1;
    document.body.dataset.beeps = String(beeps);
  }

  function showSound() {
    const b = $("wb-sound");
    b.textContent = soundOn ? "\u266A Sound on" : "Sound off";
    b.setAttribute("aria-pressed", soundOn ? "true" : "false");
  }
  $("wb-sound").addEventListener("click", () => {
    soundOn = !soundOn;
    save(SOUND_KEY, soundOn);
    if (soundOn) { unlockAudio(); }
    showSound();
  });
  showSound();

  // ------------------------------------------------------------------ render
  function render() {
    if (!board || !conn) { return; }
    const now = conn.serverNow();
    set($("wb-updated"), "updated " + formatDuration(now - (board.ts || now)) + " ago");
    set($("wb-clock"), new Date(now * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    set($("wb-stats-source"), statsOff ? "(live statistics unavailable: ACD figures)" : "");
    renderQueues(now);
    renderCampaigns();
    renderAgents(now);
    renderHealth(board.health || {}, now, board.warnings || []);
  }

  window.CTI_WALLBOARD = { streams: streams, thresholds: () => thresholds, beeps: () => beeps, recordings: recordings };
  setInterval(render, 1000);
})();
