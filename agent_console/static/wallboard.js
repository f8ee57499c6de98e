// Supervisor wallboard (docs/wallboard.md; protocol: docs/console-protocol.md).
// Queue tiles (waiting, longest wait, service level against its target, today's calls, agents by state, a
// sparkline of the day's SL and offered calls) and campaign tiles come from the live statistics: one
// subscription per topic (snapshot, then sequenced deltas; resumed from the last seq after a reconnect).
// The "wallboard" push (sent after every (re)connect, then every second) gives the roster (which queues,
// campaigns and agents there are), the agents' states and calls, the campaigns' pacer and the links' health.
// Thresholds per queue are set here and kept in this browser (localStorage); a crossing turns the tile to
// the warning colour, says so in words and beeps once (WebAudio).
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
      onAuthenticated: () => {
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
  function renderCampaigns() {
    const campaigns = board.campaigns || [];
    $("wb-campaigns-panel").hidden = campaigns.length === 0;
    $("wb-campaign-tiles").replaceChildren(...campaigns.map((c) => {
      const f = figuresOf("campaign:" + c.campaign);
      const day = f ? ((f.windows || {}).day || {}) : (c.today || {});
      const tile = el("article", { class: "tile campaign", testid: "wb-campaign-" + c.campaign });
      const head = el("header", { class: "tile-head" });
      head.append(el("h3", {}, c.campaign),
        el("span", { class: "badge mode", "data-enabled": c.enabled === false ? "false" : "true" },
           (c.enabled === false ? "off \u00B7 " : "") + (c.step && c.step !== c.mode ? c.mode + " \u2192 " + c.step : (c.mode || ""))));
      const facts = el("dl", { class: "tile-facts" });
      const add = (label, value, testid) => { const [box, v] = fact(label, testid); v.textContent = value; facts.append(box); };
      add("Dials", num(day.dials), "wb-dials");
      add("Answers", num(day.answers), "wb-answers");
      add("Contacts", num(day.contacts), "wb-contacts");
      add("Contact rate", pct(day.contact_rate), "wb-contact-rate");
      add("Abandoned today", pct(day.abandon_rate), "wb-abandon-today");
      add("Abandoned (recent)", pct(c.recent_abandon_rate), "wb-abandon-recent");
      add("Occupancy", pct(c.occupancy), "wb-occupancy");
      add("Leads due", num(c.due_leads), "wb-due");
      add("In flight", num(c.in_flight), "wb-inflight");
      const pacer = c.mode === "preview" ? c.previews + " shown"
        : (c.pacing ? c.pacing.reason + " (" + c.pacing.dial + " now)" : DASH);
      add("Pacer", pacer, "wb-pacer");
      tile.append(head, facts);
      return tile;
    }));
  }

  // ------------------------------------------------------------------ agents
  function renderAgents(now) {
    const agents = board.agents || [];
    const counts = {};
    $("wb-agent-rows").replaceChildren(...agents.map((ag) => {
      counts[ag.state] = (counts[ag.state] || 0) + 1;
      const tr = el("tr", { testid: "wb-agent-" + ag.agent_id, "data-state": ag.state });
      const who = el("td", { class: "agent-name", "data-label": "Agent" }, ag.name || ag.agent_id);
      const stateCell = el("td", { class: "agent-state", "data-label": "State" });
      const badge = el("span", { class: "badge", "data-state": ag.state });
      badge.append(el("span", { class: "icon", "aria-hidden": "true" }, STATE_ICONS[ag.state] || "\u2022"),
                   el("span", { testid: "wb-agent-state" }, STATE_LABELS[ag.state] || ag.state));
      stateCell.append(badge);
      if (ag.reason) { stateCell.append(el("span", { class: "reason", testid: "wb-agent-reason" }, ag.reason)); }
      const timer = el("td", { class: "num agent-time", "data-label": "Time", testid: "wb-agent-time" },
                       formatDuration(now - (ag.since || now)));
      const callCell = el("td", { class: "agent-call", "data-label": "Call", testid: "wb-agent-call" });
      if (ag.call) {
        callCell.append(el("span", { class: "caller", testid: "wb-agent-caller" }, ag.call.caller || "unknown caller"));
        if (ag.call.number && ag.call.number !== ag.call.caller) {
          callCell.append(el("span", { class: "muted small number" }, ag.call.number));
        }
        if (ag.call.queue) { callCell.append(el("span", { class: "queue-tag", testid: "wb-agent-queue" }, ag.call.queue)); }
      }
      tr.append(who, stateCell, timer, callCell);
      return tr;
    }));
    const order = ["ready", "reserved", "on_call", "wrap_up", "not_ready", "logged_out"];
    set($("wb-agent-counts"), order.filter((s) => counts[s]).map((s) => counts[s] + " " + (STATE_LABELS[s] || s).toLowerCase()).join(" \u00B7 "));
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

  window.CTI_WALLBOARD = { streams: streams, thresholds: () => thresholds, beeps: () => beeps };
  setInterval(render, 1000);
})();
