// Supervisor wallboard: live queues (waiting, longest wait, SL%, abandon%, agents by state), campaigns (dials,
// answers, contacts, abandonment, occupancy, leads due, the pacer's decision), agents, health.
// Renders "wallboard" pushes (docs/console-protocol.md); the hub sends one right after every (re)connect.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { ConsoleConnection, formatDuration, el, STATE_LABELS } = window.CTI;
  let conn = null;
  let board = null;

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("login-agent").value.trim();
    const password = $("login-password").value;
    const token = $("login-token").value.trim();
    if (!id || (!password && !token)) { return; }
    const hello = token ? { agent_id: id, token: token } : { agent_id: id, password: password, role: "supervisor" };
    hello.client = "wallboard";
    if (conn) { conn.stop(); }
    conn = new ConsoleConnection(hello, {
      onAuthenticated: () => {
        $("login-password").value = "";
        $("login").hidden = true;
        $("app").hidden = false;
      },
      onAuthFailed: (err) => {
        conn.stop();
        $("login-error").textContent = err.message || "Sign-in failed";
        $("login-error").hidden = false;
      },
      onPush: (msg) => { if (msg.type === "wallboard") { board = msg; render(); } },
    }, $("conn-banner"));
    conn.open();
  });

  const pct = (v) => (typeof v === "number" ? (v <= 1 ? v * 100 : v).toFixed(1) + " %" : "\u2014");
  const num = (v) => (v === null || v === undefined ? "\u2014" : String(v));

  function render() {
    if (!board) { return; }
    const now = conn.serverNow();
    $("wb-updated").textContent = "updated " + formatDuration(now - (board.ts || now)) + " ago";
    $("wb-queue-rows").replaceChildren(...(board.queues || []).map((q) => {
      const a = q.agents || {};
      const tr = el("tr", { testid: "wb-queue-" + q.name });
      tr.append(el("td", {}, q.name), el("td", { class: "num", testid: "wb-waiting" }, num(q.waiting)),
        el("td", { class: "num" }, typeof q.longest_wait === "number" ? formatDuration(q.longest_wait) : "\u2014"),
        el("td", { class: "num" }, pct(q.service_level)), el("td", { class: "num" }, pct(q.abandon_rate)),
        el("td", { class: "num", testid: "wb-ready" }, a.ready || 0),
        el("td", { class: "num" }, (a.on_call || 0) + (a.reserved || 0)),
        el("td", { class: "num" }, a.wrap_up || 0), el("td", { class: "num" }, a.not_ready || 0));
      return tr;
    }));
    const campaigns = board.campaigns || [];
    $("wb-campaigns-panel").hidden = campaigns.length === 0;
    $("wb-campaign-rows").replaceChildren(...campaigns.map((c) => {
      const t = c.today || {};
      const pacer = c.mode === "preview" ? c.previews + " shown"
        : (c.pacing ? c.pacing.reason + " (" + c.pacing.dial + " now)" : "\u2014");
      const tr = el("tr", { testid: "wb-campaign-" + c.campaign });
      tr.append(el("td", {}, c.campaign + (c.enabled === false ? " (off)" : "")), el("td", {}, c.mode || ""),
        el("td", { class: "num", testid: "wb-dials" }, num(t.dials)), el("td", { class: "num" }, num(t.answers)),
        el("td", { class: "num", testid: "wb-contacts" }, num(t.contacts)), el("td", { class: "num" }, pct(t.contact_rate)),
        el("td", { class: "num", testid: "wb-abandon-today" }, pct(t.abandon_rate)),
        el("td", { class: "num" }, pct(c.recent_abandon_rate)), el("td", { class: "num" }, pct(c.occupancy)),
        el("td", { class: "num" }, num(c.due_leads)), el("td", { class: "num" }, num(c.in_flight)),
        el("td", { testid: "wb-pacer" }, pacer));
      return tr;
    }));
    $("wb-agent-rows").replaceChildren(...(board.agents || []).map((ag) => {
      const tr = el("tr", { testid: "wb-agent-" + ag.agent_id });
      const badge = el("span", { class: "badge", "data-state": ag.state }, STATE_LABELS[ag.state] || ag.state);
      const stateCell = el("td", { testid: "wb-agent-state" });
      stateCell.append(badge);
      tr.append(el("td", {}, ag.name || ag.agent_id), stateCell, el("td", {}, ag.reason || ""),
        el("td", { class: "num" }, formatDuration(now - (ag.since || now))), el("td", {}, ag.call_id || ""));
      return tr;
    }));
    renderHealth(board.health || {}, now, board.warnings || []);
  }

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
         label + (up ? " up" : " DOWN" + text)));
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

  setInterval(render, 1000);
})();
