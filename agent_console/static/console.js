// Agent console page: login, state with time in state, pop card, call controls, wrap-up, callbacks.
// Renders only what the server pushes (docs/console-protocol.md); all text goes through textContent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { ConsoleConnection, formatDuration, el, STATE_LABELS } = window.CTI;
  const ignore = () => undefined;
  const ui = {
    conn: null, agentId: null, endpoint: "", state: "logged_out", since: 0, callId: null,
    pop: null, call: null, preview: null, dispositions: [],
  };

  // ---- login -------------------------------------------------------------------------------------

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const agent = $("login-agent").value.trim();
    const password = $("login-password").value;
    const token = $("login-token").value.trim();
    if (!agent || (!password && !token)) {
      showLoginError("Enter your agent id and a password or a token.");
      return;
    }
    $("login-error").hidden = true;
    $("login-submit").disabled = true;
    ui.agentId = agent;
    ui.endpoint = $("login-endpoint").value.trim();
    const hello = token ? { agent_id: agent, token: token } : { agent_id: agent, password: password };
    hello.client = "console";
    if (ui.conn) { ui.conn.stop(); }
    ui.conn = new ConsoleConnection(hello, {
      onAuthenticated: authenticated,
      onAuthFailed: (err) => {
        ui.conn.stop();
        $("login-submit").disabled = false;
        showLoginError(err.message || "Sign-in failed");
      },
      onPush: push,
      onError: (err) => showError(err.message),
    }, $("conn-banner"));
    ui.conn.open();
  });

  function showLoginError(text) {
    $("login-error").textContent = text;
    $("login-error").hidden = false;
  }

  function authenticated(res, isReconnect) {
    $("login-password").value = "";
    $("login").hidden = true;
    $("app").hidden = false;
    $("login-submit").disabled = false;
    $("agent-id").textContent = res.agent_id;
    fillSelect($("notready-reason"), res.not_ready_reasons.map((r) => [r, r]));
    ui.dispositions = res.dispositions;
    fillSelect($("wrapup-disposition"), res.dispositions.map((d) => [d.code, d.label]));
    ui.firstLogin = !isReconnect;
  }

  function fillSelect(select, pairs) {
    const current = select.value;
    select.replaceChildren(...pairs.map(([value, label]) => el("option", { value: value }, label)));
    if (current) { select.value = current; }
  }

  // ---- server pushes -----------------------------------------------------------------------------

  function push(msg) {
    switch (msg.type) {
      case "state": return onState(msg);
      case "pop": return onPop(msg);
      case "pop_update": return onPopUpdate(msg);
      case "call": return onCall(msg);
      case "preview": return onPreview(msg);
      case "notice": return showError(msg.message || msg.notice);
      default: return undefined;  // heartbeat and future types
    }
  }

  function onState(msg) {
    ui.state = msg.state;
    ui.since = msg.since;
    ui.callId = msg.call_id;
    const badge = $("state-badge");
    badge.textContent = STATE_LABELS[msg.state] || msg.state;
    badge.dataset.state = msg.state;
    $("state-reason").textContent = msg.reason && msg.state === "not_ready" ? msg.reason : "";
    // The first state after signing in: log the phone in if an endpoint was given and it is not yet.
    if (ui.firstLogin && msg.state === "logged_out" && ui.endpoint) {
      act("login", { endpoint: ui.endpoint }).catch(ignore);
    }
    ui.firstLogin = false;
    if (msg.state === "ready" || msg.state === "not_ready" || msg.state === "logged_out") {
      ui.pop = null;  // the call is over and disposed
      ui.call = null;
    }
    if (msg.state !== "reserved") { ui.preview = null; }  // a preview holds the agent reserved
    if (msg.state === "wrap_up") { resetWrapup(); }
    render();
  }

  function onPop(msg) {
    ui.pop = msg;
    render();
  }

  function onPopUpdate(msg) {
    if (ui.pop && ui.pop.call_id === msg.call_id) {
      ui.pop = Object.assign({}, ui.pop, msg, { type: "pop" });
      render();
    }
  }

  function onCall(msg) {
    ui.call = msg.status === "ended" && ui.state !== "wrap_up" && ui.state !== "on_call" ? null : msg;
    render();
  }

  function onPreview(msg) {
    ui.preview = msg;
    render();
  }

  // ---- rendering ---------------------------------------------------------------------------------

  function render() {
    const s = ui.state;
    const loggedIn = s !== "logged_out";
    $("btn-login").hidden = loggedIn;
    $("btn-logout").hidden = !loggedIn;
    $("btn-ready").disabled = s !== "not_ready";
    $("btn-not-ready").disabled = !(s === "ready" || s === "not_ready");
    $("notready-reason").disabled = !(s === "ready" || s === "not_ready");
    $("btn-logout").disabled = !(s === "ready" || s === "not_ready");
    renderPop();
    renderCall();
    renderPreview();
    $("wrapup-form").hidden = s !== "wrap_up";
    tick();
  }

  // Pop shape: screenpop.compose (customer/matches entries hold profile, interactions, crm_url).
  function renderPop() {
    const pop = ui.pop;
    $("pop-card").hidden = !pop;
    if (!pop) { return; }
    const entry = pop.customer || null;
    const profile = (entry && entry.profile) || null;
    const outbound = pop.outbound || null;
    const lookup = (pop.lookup && pop.lookup.status) || (pop.complete === false ? "pending" : "");
    const matches = Array.isArray(pop.matches) ? pop.matches : [];
    let title;
    if (profile) { title = profile.name || "Customer " + entry.customer_id; }
    else if (lookup === "pending") { title = "Looking up the caller\u2026"; }
    else if (matches.length > 1) { title = matches.length + " possible customers"; }
    else if (outbound && outbound.lead && outbound.lead.name) { title = outbound.lead.name; }
    else { title = pop.caller_name || pop.ani || "Unknown caller"; }
    $("pop-card").dataset.lookup = lookup;
    $("pop-customer-name").textContent = title;
    $("pop-new-caller").hidden = !pop.new_caller;
    $("pop-new-caller").textContent = "New caller";
    if (lookup === "unavailable") {
      $("pop-new-caller").hidden = false;
      $("pop-new-caller").textContent = "Customer look-up unavailable";
    }
    const tier = profile ? (profile.segment || (profile.attributes && profile.attributes.tier) || "") : "";
    $("pop-tier").hidden = !tier;
    $("pop-tier").textContent = tier;
    $("pop-caller").textContent = [pop.ani, pop.caller_name].filter(Boolean).join(" \u00b7 ") || "\u2014";
    const accounts = profile && Array.isArray(profile.accounts) ? profile.accounts : [];
    $("pop-account").textContent = accounts.length ?
      accounts.map((a) => [a.number, a.product, a.status].filter(Boolean).join(" ")).join(", ") : "\u2014";
    $("pop-queue").textContent = pop.queue || (outbound && outbound.campaign) || "\u2014";
    $("pop-wait").textContent = typeof pop.wait_seconds === "number" ? formatDuration(pop.wait_seconds) : "\u2014";
    const ivr = pop.ivr || {};
    $("pop-ivr-path").textContent = Array.isArray(ivr.path) && ivr.path.length ? ivr.path.join(" \u203a ") : "\u2014";
    const collected = ivr.collected && typeof ivr.collected === "object" ? Object.entries(ivr.collected) : [];
    $("pop-ivr-data").replaceChildren(...collected.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    renderMatches(pop, entry ? [] : matches);
    renderLead(outbound);
    const link = $("pop-crm-link");
    const raw = (entry && entry.crm_url) || pop.crm_url;
    const url = typeof raw === "string" && /^https?:\/\//i.test(raw) ? raw : null;
    link.hidden = !url;
    if (url) { link.href = url; } else { link.removeAttribute("href"); }
    const items = entry && Array.isArray(entry.interactions) ? entry.interactions : [];
    $("pop-interactions").replaceChildren(...(items.length ? items.map(interactionItem) :
      [el("li", { class: "muted" }, "No earlier interactions")]));
  }

  function interactionItem(it) {
    const when = it.started_at ? String(it.started_at).replace("T", " ").slice(0, 16) : "";
    const li = el("li", {});
    li.append(el("span", { class: "when" }, when), " ", el("span", { class: "muted" }, it.direction || ""), " ",
      el("strong", {}, it.disposition || it.outcome || ""), " ", el("span", {}, it.notes || ""));
    if (it.agent_id) { li.append(" ", el("span", { class: "muted" }, "(agent " + it.agent_id + ")")); }
    return li;
  }

  function renderMatches(pop, matches) {
    $("pop-matches").hidden = matches.length < 2;
    $("pop-match-list").replaceChildren(...matches.map((m) => {
      const profile = m.profile || {};
      const account = Array.isArray(profile.accounts) && profile.accounts.length ? profile.accounts[0].number : "";
      const btn = el("button", { type: "button", testid: "match-" + m.customer_id },
        [profile.name || "Customer " + m.customer_id, account].filter(Boolean).join(" \u00b7 "));
      btn.addEventListener("click", () => act("choose_customer", { call_id: pop.call_id,
                                                                  customer_id: String(m.customer_id) }).catch(ignore));
      const li = el("li", {});
      li.append(btn);
      return li;
    }));
  }

  function renderLead(outbound) {
    $("pop-lead").hidden = !outbound;
    if (!outbound) { return; }
    const rows = [["Campaign", outbound.campaign], ["Lead", outbound.lead_id]];
    for (const [k, v] of Object.entries(outbound.lead || {})) { rows.push([k, v]); }
    const nodes = rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => el("div", {}, k + ": " + v));
    if (outbound.script) { nodes.push(el("p", { class: "script" }, outbound.script)); }
    $("pop-lead").replaceChildren(...nodes);
  }

  function renderCall() {
    const call = ui.call;
    const active = call && (ui.state === "on_call" || ui.state === "reserved");
    $("call-panel").hidden = !active;
    if (!active) { return; }
    const st = call.status;
    $("call-status").textContent = st;
    $("call-status").dataset.status = st;
    const live = st === "connected" || st === "held" || st === "consulting";
    $("btn-hangup").disabled = !live;
    $("btn-hold").disabled = st !== "connected";
    $("btn-retrieve").disabled = st !== "held";
    $("btn-transfer").disabled = !(st === "connected" || st === "held");
    $("btn-attended").disabled = !(st === "connected" || st === "held");
    $("btn-attended-complete").disabled = st !== "consulting";
    $("btn-attended-cancel").disabled = st !== "consulting";
  }

  function renderPreview() {
    const lead = ui.preview;
    $("preview-panel").hidden = !lead;
    if (!lead) { return; }
    const rows = Object.entries(lead).filter(([k, v]) => k !== "type" && k !== "v" && v !== null &&
                                                          typeof v !== "object");
    $("preview-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function tick() {
    if (!ui.conn) { return; }
    const now = ui.conn.serverNow();
    $("state-timer").textContent = formatDuration(now - (ui.since || now));
    if (ui.call && !$("call-panel").hidden) {
      $("call-timer").textContent = formatDuration(now - (ui.call.since || now));
    }
  }
  setInterval(tick, 1000);

  // ---- actions -----------------------------------------------------------------------------------

  function act(type, fields) {
    $("action-error").hidden = true;
    return ui.conn.request(type, fields).then((res) => res, (err) => {
      showError(err.message || err.error_id);
      throw err;
    });
  }

  function showError(text) {
    $("action-error").textContent = text;
    $("action-error").hidden = false;
  }

  function showOk(text) {
    $("action-ok").textContent = text;
    $("action-ok").hidden = false;
    setTimeout(() => { $("action-ok").hidden = true; }, 4000);
  }

  const callId = () => (ui.call ? { call_id: ui.call.call_id } : {});
  $("btn-login").addEventListener("click", () => {
    const endpoint = ui.endpoint || window.prompt("Phone endpoint (e.g. PJSIP/1001)") || "";
    if (endpoint) { ui.endpoint = endpoint; act("login", { endpoint: endpoint }).catch(ignore); }
  });
  $("btn-ready").addEventListener("click", () => act("ready").catch(ignore));
  $("btn-not-ready").addEventListener("click", () =>
    act("not_ready", { reason: $("notready-reason").value }).catch(ignore));
  $("btn-logout").addEventListener("click", () => act("logout").catch(ignore));
  $("btn-hangup").addEventListener("click", () => act("hangup", callId()).catch(ignore));
  $("btn-hold").addEventListener("click", () => act("hold", callId()).catch(ignore));
  $("btn-retrieve").addEventListener("click", () => act("retrieve", callId()).catch(ignore));
  $("btn-transfer").addEventListener("click", () => act("transfer", Object.assign(callId(), {
    to: $("transfer-kind").value, target: $("transfer-target").value.trim(),
  })).catch(ignore));
  $("btn-attended").addEventListener("click", () => act("attended_transfer", Object.assign(callId(), {
    number: $("attended-number").value.trim(),
  })).catch(ignore));
  $("btn-attended-complete").addEventListener("click", () => act("attended_complete", callId()).catch(ignore));
  $("btn-attended-cancel").addEventListener("click", () => act("attended_cancel", callId()).catch(ignore));
  $("btn-preview-accept").addEventListener("click", () => {
    if (ui.preview) { act("preview_accept", { lead_id: String(ui.preview.lead_id) }).catch(ignore); }
  });
  $("btn-preview-skip").addEventListener("click", () => {
    if (!ui.preview) { return; }
    act("preview_skip", { lead_id: String(ui.preview.lead_id), reason: $("preview-skip-reason").value })
      .then(() => { ui.preview = null; render(); }, ignore);
  });

  function isoFromLocal(value) {
    const date = new Date(value);  // datetime-local is the browser's local time
    return isNaN(date.getTime()) ? null : date.toISOString();
  }

  function resetWrapup() {
    $("wrapup-notes").value = "";
    $("wrapup-callback").checked = false;
    $("wrapup-callback-fields").hidden = true;
    $("wrapup-then").value = "ready";
    const number = ui.pop ? (ui.pop.ani_e164 || ui.pop.ani || "") : "";
    $("wrapup-callback-number").value = number || "";
  }

  $("wrapup-callback").addEventListener("change", () => {
    $("wrapup-callback-fields").hidden = !$("wrapup-callback").checked;
  });
  $("wrapup-disposition").addEventListener("change", () => {
    const code = ui.dispositions.find((d) => d.code === $("wrapup-disposition").value);
    if (code && code.callback) {
      $("wrapup-callback").checked = true;
      $("wrapup-callback-fields").hidden = false;
    }
  });
  $("wrapup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const fields = {
      call_id: ui.callId || (ui.call && ui.call.call_id),
      disposition: $("wrapup-disposition").value,
      notes: $("wrapup-notes").value,
      then: $("wrapup-then").value,
    };
    if (fields.then === "not_ready") { fields.reason = $("notready-reason").value; }
    if ($("wrapup-callback").checked) {
      const at = isoFromLocal($("wrapup-callback-at").value);
      if (!at) { showError("Choose a callback time."); return; }
      fields.callback = { at: at, number: $("wrapup-callback-number").value.trim() };
    }
    act("dispose", fields).then(() => showOk("Wrap-up recorded."), ignore);
  });
  $("callback-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const at = isoFromLocal($("callback-at").value);
    if (!at) { showError("Choose a callback time."); return; }
    const fields = { at: at, number: $("callback-number").value.trim(), notes: $("callback-notes").value };
    if (ui.call) { fields.call_id = ui.call.call_id; }
    act("schedule_callback", fields).then(() => {
      showOk("Callback scheduled.");
      $("callback-form").reset();
    }, ignore);
  });
})();
