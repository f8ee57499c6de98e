// Agent console page: sign-in, phone log-in, state with time in state and the next step in words, the pop
// card, call controls with call and hold timers, wrap-up, keyboard shortcuts.
// Renders only what the server pushes (docs/console-protocol.md); all text goes through textContent.
// No browser dialogs (prompt, alert, confirm): every question and message is in the page.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { ConsoleConnection, formatDuration, el, STATE_LABELS } = window.CTI;
  const ignore = () => undefined;
  const AGENT_KEY = "cti.console.agent";
  const DRAFT_KEY = "cti.console.wrapup.";
  // The hello result's resume_token, kept for this tab only: a reload signs back in with it (no password).
  const RESUME_KEY = "cti.console.resume";
  const CALL_LABELS = { ringing: "Ringing", connected: "Connected", held: "On hold", consulting: "Consulting",
                        ended: "Ended" };
  const LOOKUP_BY = { ani: "by the calling number", account: "by the account number entered in the IVR",
                      id: "by the IVR", external_id: "by the campaign lead" };
  // The not-ready reasons the ACD sets itself (acd/model.py SYSTEM_REASONS), in words.
  const REASON_LABELS = { login: "", "ring-no-answer": "missed a call", busy: "phone was busy",
                          unreachable: "phone unreachable", "offer-failed": "a call could not be offered",
                          preview: "" };
  const ui = {
    conn: null, agentId: null, state: "logged_out", since: 0, callId: null, endpoint: "",
    endpointOverride: false, pop: null, call: null, preview: null, dispositions: [], firstState: false,
    wrapupFor: null, focusPending: false,
  };

  // ---- sign-in -----------------------------------------------------------------------------------

  try { $("login-agent").value = localStorage.getItem(AGENT_KEY) || ""; } catch (e) { /* storage off */ }
  ($("login-agent").value ? $("login-password") : $("login-agent")).focus();

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const agent = $("login-agent").value.trim();
    const password = $("login-password").value;
    const token = $("login-token").value.trim();
    if (!agent || (!password && !token)) {
      showLoginError("Enter your agent id and a password or a token.");
      return;
    }
    signIn(agent, token ? { token: token } : { password: password }, false);
  });

  function signIn(agent, credentials, resuming) {
    $("login-error").hidden = true;
    $("login-info").hidden = true;
    $("login-submit").disabled = true;
    ui.agentId = agent;
    try { localStorage.setItem(AGENT_KEY, agent); } catch (e) { /* storage off */ }
    const hello = Object.assign({ agent_id: agent, client: "console" }, credentials);
    if (ui.conn) { ui.conn.stop(); }
    ui.conn = new ConsoleConnection(hello, {
      onAuthenticated: authenticated,
      onAuthFailed: (err) => {
        ui.conn.stop();
        forgetResume();
        $("login-submit").disabled = false;
        if (resuming) {
          $("login-info").textContent = "Your session ended: sign in again.";
          $("login-info").hidden = false;
        } else {
          showLoginError(err.message || "Sign-in failed");
        }
        $("login-password").focus();
      },
      onPush: push,
      onError: (err) => showError(err.message),
    }, $("conn-banner"));
    ui.conn.open();
  }

  function forgetResume() {
    try { sessionStorage.removeItem(RESUME_KEY); } catch (e) { /* storage off */ }
  }

  // A reload of a signed-in tab: sign back in with the resume token, the server then re-sends the state,
  // the pop, the call and its timers (docs/console-protocol.md, "Reconnect and resume").
  (function resumeAfterReload() {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(RESUME_KEY) || "null"); } catch (e) { saved = null; }
    if (saved && saved.agent_id && saved.token) {
      $("login-agent").value = saved.agent_id;
      signIn(saved.agent_id, { token: saved.token }, true);
    }
  })();

  function showLoginError(text) {
    $("login-error").textContent = text;
    $("login-error").hidden = false;
  }

  function authenticated(res, isReconnect) {
    if (res.resume_token) {
      try {
        sessionStorage.setItem(RESUME_KEY, JSON.stringify({ agent_id: res.agent_id, token: res.resume_token }));
      } catch (e) { /* storage off: a reload asks for the password */ }
      // Later reconnects of this page use the newest token, not the password typed once.
      if (ui.conn) { ui.conn.hello = { agent_id: res.agent_id, token: res.resume_token, client: "console" }; }
    }
    $("login-password").value = "";
    $("login-token").value = "";
    $("login").hidden = true;
    $("app").hidden = false;
    $("login-submit").disabled = false;
    $("agent-id").textContent = res.agent_id;
    fillSelect($("notready-reason"), res.not_ready_reasons.map((r) => [r, r]));
    ui.dispositions = res.dispositions;
    fillSelect($("wrapup-disposition"), [["", "Choose\u2026"]].concat(res.dispositions.map((d) => [d.code, d.label])));
    ui.endpointOverride = !!res.endpoint_override;
    ui.firstState = !isReconnect;
    ui.focusPending = true;
  }

  function fillSelect(select, pairs) {
    const current = select.value;
    select.replaceChildren(...pairs.map(([value, label]) => el("option", { value: value }, label)));
    if (current) { select.value = current; }
  }

  function signOut(text) {
    if (ui.conn) { ui.conn.stop(); ui.conn = null; }
    forgetResume();
    Object.assign(ui, { state: "logged_out", since: 0, callId: null, pop: null, call: null, preview: null,
                        wrapupFor: null });
    $("action-ok").hidden = true;
    $("action-error").hidden = true;
    $("conn-banner").hidden = true;
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-info").textContent = text;
    $("login-info").hidden = !text;
    $("login-password").focus();
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
    const before = ui.state;
    ui.state = msg.state;
    ui.since = msg.since;
    ui.reason = msg.reason || "";
    ui.callId = msg.call_id;
    ui.endpoint = msg.endpoint || ui.endpoint;
    // Just signed in with the phone logged out: log it in at the configured endpoint, without asking
    // (where another endpoint is allowed the agent chooses in the phone form instead).
    if (ui.firstState && msg.state === "logged_out" && !ui.endpointOverride) { loginPhone(); }
    ui.firstState = false;
    if (msg.state === "ready" || msg.state === "not_ready" || msg.state === "logged_out") {
      ui.pop = null;  // the call is over and disposed
      ui.call = null;
      ui.wrapupFor = null;
    }
    if (msg.state !== "reserved") { ui.preview = null; }  // a preview holds the agent reserved
    if (msg.state === "wrap_up" && ui.wrapupFor !== msg.call_id) { startWrapup(msg.call_id); }
    render();
    if (before !== msg.state || ui.focusPending) { focusNext(); }
    ui.focusPending = false;
  }

  function onPop(msg) {
    const fresh = !ui.pop || ui.pop.call_id !== msg.call_id;
    ui.pop = msg;
    render();
    if (fresh) { announcePop(); }
    if (ui.state === "wrap_up" && !$("wrapup-callback-number").value) { fillCallbackNumber(); }
  }

  function onPopUpdate(msg) {
    if (!ui.pop || ui.pop.call_id === msg.call_id) {  // no pop yet (resumed): the update is the whole pop
      const fresh = !ui.pop;
      ui.pop = Object.assign({}, ui.pop || {}, msg, { type: "pop" });
      render();
      announcePop(fresh ? "" : "Customer details updated. ");
    }
  }

  function onCall(msg) {
    const before = ui.call ? ui.call.status : null;
    ui.call = msg.status === "ended" && ui.state !== "wrap_up" && ui.state !== "on_call" ? null : msg;
    render();
    if (ui.call && before !== ui.call.status) { focusNext(); }
  }

  function onPreview(msg) {
    // status "offered": a lead to accept or skip; any other status (accepted, skipped, timeout, busy, ...)
    // ends the preview (docs/console-protocol.md, preview mode)
    ui.preview = !msg.status || msg.status === "offered" ? msg : null;
    render();
  }

  // ---- rendering ---------------------------------------------------------------------------------

  function render() {
    const s = ui.state;
    const held = s === "on_call" && ui.call && ui.call.status === "held";
    const badge = $("state-badge");
    badge.textContent = held ? "On call \u00b7 on hold" : (STATE_LABELS[s] || s);
    badge.dataset.state = s;
    const reason = ui.reason in REASON_LABELS ? REASON_LABELS[ui.reason] : ui.reason;
    $("state-reason").textContent = s === "not_ready" && reason ? reason : "";
    $("btn-ready").disabled = s !== "not_ready";
    $("btn-not-ready").disabled = !(s === "ready" || s === "not_ready");
    $("notready-reason").disabled = !(s === "ready" || s === "not_ready" || s === "wrap_up");
    $("btn-logout").disabled = !(s === "ready" || s === "not_ready" || s === "logged_out");
    $("btn-logout").firstChild.textContent = s === "logged_out" ? "Sign out " : "Log out ";
    renderPhone();
    renderNextStep();
    renderPop();
    renderCall();
    renderPreview();
    $("wrapup-form").hidden = s !== "wrap_up";
    $("wrapup-summary").textContent = s === "wrap_up" && ui.pop ?
      "Call with " + ($("pop-customer-name").textContent || "the caller") + " ended." : "";
    tick();
  }

  function renderPhone() {
    const out = ui.state === "logged_out";
    $("phone-form").hidden = !out;
    if (!out) { return; }
    const where = ui.endpoint || "your configured phone";
    $("phone-text").textContent = "Your phone (" + where + ") is logged out: no calls can reach you.";
    $("phone-endpoint-label").hidden = !ui.endpointOverride;
    if (ui.endpointOverride && !$("phone-endpoint").value) { $("phone-endpoint").value = ui.endpoint || ""; }
  }

  // What the agent should do next, in words, for every state.
  function nextStep() {
    const s = ui.state;
    const st = ui.call ? ui.call.status : "";
    if (s === "logged_out") {
      return ui.endpointOverride ? "Log in your phone to start: check the endpoint and press Log in phone (Alt+L)."
        : "Log in your phone to start: press Log in phone (Alt+L).";
    }
    if (s === "not_ready") { return "You are not ready: no calls will be offered. Press Ready (Alt+R) to take calls."; }
    if (s === "ready") { return "Waiting for a call. Press Not ready (Alt+N) for a break."; }
    if (s === "reserved") {
      return ui.preview ? "A lead to preview: call now or skip it." : "Incoming call: answer on your phone.";
    }
    if (s === "on_call") {
      if (st === "held") { return "The caller is on hold. Retrieve (Alt+H) to talk again; Hang up (Alt+X) to end."; }
      if (st === "consulting") { return "Consulting: complete the transfer or go back to the caller."; }
      return "On the call. Hold (Alt+H), transfer (Alt+T), consult (Alt+C) or hang up (Alt+X).";
    }
    if (s === "wrap_up") {
      return "The call has ended. Choose a disposition (Alt+W), add notes, then Finish wrap-up (Ctrl+Enter).";
    }
    return "";
  }

  function renderNextStep() {
    const text = nextStep();
    if ($("next-step").textContent !== text) { $("next-step").textContent = text; }
  }

  function profileOf(pop) {
    const entry = pop.customer || null;
    return { entry: entry, profile: (entry && entry.profile) || null };
  }

  // Pop shape: screenpop.compose (customer/matches entries hold profile, interactions, crm_url).
  function renderPop() {
    const pop = ui.pop;
    $("pop-card").hidden = !pop;
    if (!pop) { return; }
    const { entry, profile } = profileOf(pop);
    const outbound = pop.outbound || null;
    const lookup = (pop.lookup && pop.lookup.status) || (pop.complete === false ? "pending" : "");
    const matches = Array.isArray(pop.matches) ? pop.matches : [];
    let title, who = "Customer";
    if (profile) { title = profile.name || "Customer " + entry.customer_id; }
    else if (lookup === "pending") { title = "Looking up the caller\u2026"; who = ""; }
    else if (matches.length > 1) { title = matches.length + " possible customers"; who = ""; }
    else if (outbound && outbound.lead && outbound.lead.name) { title = outbound.lead.name; who = "Lead"; }
    else { title = "Unknown caller"; who = ""; }
    $("pop-card").dataset.lookup = lookup;
    $("pop-who-label").textContent = who;
    $("pop-who-label").hidden = !who;
    $("pop-customer-name").textContent = title;
    $("pop-new-caller").hidden = !pop.new_caller;
    $("pop-new-caller").textContent = "New caller";
    if (lookup === "unavailable") {
      $("pop-new-caller").hidden = false;
      $("pop-new-caller").textContent = "Customer look-up unavailable";
    }
    const segment = profile ? (profile.segment || (profile.attributes && profile.attributes.tier) || "") : "";
    $("pop-tier").hidden = !segment;
    $("pop-tier").textContent = segment;
    $("pop-segment").textContent = segment || "\u2014";
    $("pop-caller").textContent = pop.ani_e164 || pop.ani || "withheld";
    $("pop-caller-name").textContent = pop.caller_name || "\u2014";
    $("pop-verified").textContent = verifiedText(pop, profile);
    const ivr = pop.ivr || {};
    $("pop-reason").textContent = ivr.reason || (outbound ? "Outbound: " + (outbound.campaign || "campaign") : "") ||
      pop.queue || "\u2014";
    $("pop-wait").textContent = typeof pop.wait_seconds === "number" ?
      formatDuration(pop.wait_seconds) + (pop.queue ? " in " + pop.queue : "") : "\u2014";
    const accounts = profile && Array.isArray(profile.accounts) ? profile.accounts : [];
    $("pop-account").replaceChildren(...(accounts.length ? accounts.map(accountRow) :
      [rowOf([el("td", { colspan: "3", class: "muted" }, "No accounts")])]));
    $("pop-queue").textContent = pop.queue || (outbound && outbound.campaign) || "\u2014";
    const steps = Array.isArray(ivr.steps) && ivr.steps.length ? ivr.steps : (Array.isArray(ivr.path) ? ivr.path : []);
    $("pop-ivr-path").textContent = steps.length ? steps.join(" \u203a ") : "Did not go through the IVR";
    const collected = ivr.collected && typeof ivr.collected === "object" ? Object.entries(ivr.collected) : [];
    $("pop-ivr-data").replaceChildren(...collected.flatMap(([k, v]) => [el("dt", {}, "Entered " + k), el("dd", {}, v)]));
    renderMatches(pop, entry ? [] : matches);
    renderLead(outbound);
    const link = $("pop-crm-link");
    const raw = (entry && entry.crm_url) || pop.crm_url;
    const url = typeof raw === "string" && /^https?:\/\//i.test(raw) ? raw : null;
    link.hidden = !url;
    if (url) { link.href = url; } else { link.removeAttribute("href"); }
    const items = entry && Array.isArray(entry.interactions) ? entry.interactions : [];
    $("pop-interactions").replaceChildren(...(items.length ? items.map(interactionItem) :
      [el("li", { class: "muted" }, profile ? "No earlier contacts" : "\u2014")]));
    const callbackCodes = new Set(ui.dispositions.filter((d) => d.callback).map((d) => d.code));
    const open = items.filter((it) => callbackCodes.has(it.disposition));
    $("pop-open").replaceChildren(...(open.length ? open.map((it) => {
      const li = el("li", {});
      li.append(el("strong", {}, "Callback promised"), " ", el("span", { class: "when" }, whenOf(it)), " ",
        el("span", {}, it.notes || ""));
      return li;
    }) : [el("li", { class: "muted" }, "None")]));
  }

  function verifiedText(pop, profile) {
    const lookup = pop.lookup || {};
    if (profile) { return "Yes, " + (LOOKUP_BY[lookup.by] || "by the customer record"); }
    if (lookup.status === "pending") { return "Looking up\u2026"; }
    if (lookup.status === "multiple") { return "No: several customers share this number"; }
    if (lookup.status === "unavailable") { return "No: the customer look-up is unavailable"; }
    return "No: not a known customer";
  }

  function rowOf(cells) {
    const tr = el("tr", {});
    tr.append(...cells);
    return tr;
  }

  function accountRow(a) {
    const status = el("td", {});
    if (a.status) { status.append(el("span", { class: "status status-" + String(a.status).replace(/\W/g, "") }, a.status)); }
    return rowOf([el("td", { class: "mono" }, a.number || "\u2014"), el("td", {}, a.product || "\u2014"), status]);
  }

  function whenOf(it) {
    return it.started_at ? String(it.started_at).replace("T", " ").slice(0, 16) : "";
  }

  function interactionItem(it) {
    const li = el("li", {});
    const disposition = ui.dispositions.find((d) => d.code === it.disposition);
    li.append(el("span", { class: "when" }, whenOf(it)), " ", el("span", { class: "muted" }, it.direction || ""), " ",
      el("strong", {}, disposition ? disposition.label : (it.disposition || it.outcome || "")), " ",
      el("span", {}, it.notes || ""));
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

  // The screen reader hears the pop's essentials once, when a new call pops.
  function announcePop(prefix) {
    const pop = ui.pop;
    if (!pop) { return; }
    const { profile } = profileOf(pop);
    const ivr = pop.ivr || {};
    const parts = [(prefix || "") + (ui.state === "reserved" ? "Incoming call" : "Call") + " " +
      (profile ? "from customer " + (profile.name || "") : "from " + (pop.ani_e164 || pop.ani || "an unknown number"))];
    if (profile && profile.segment) { parts.push("segment " + profile.segment); }
    if (ivr.reason) { parts.push("reason " + ivr.reason); }
    if (pop.new_caller) { parts.push("new caller"); }
    $("pop-announce").textContent = parts.join(", ") + ".";
  }

  function renderCall() {
    const call = ui.call;
    const active = call && (ui.state === "on_call" || ui.state === "reserved");
    $("call-panel").hidden = !active;
    if (!active) { return; }
    const st = call.status;
    $("call-status").textContent = CALL_LABELS[st] || st;
    $("call-status").dataset.status = st;
    const consult = call.consult && typeof call.consult === "object" ? call.consult : null;
    $("call-consult").hidden = !consult;
    $("call-consult").textContent = consult ? "Consulting " + (consult.number || "") + ": " +
      (consult.state === "talking" ? "talking (the caller is on hold)" : "ringing") : "";
    const live = st === "connected" || st === "held" || st === "consulting";
    $("btn-hangup").disabled = !live;
    $("btn-hold").hidden = st === "held";
    $("btn-hold").disabled = st !== "connected";
    $("btn-retrieve").hidden = st !== "held";
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
    const hidden = new Set(["type", "v", "status", "deadline"]);
    const rows = Object.entries(lead).filter(([k, v]) => !hidden.has(k) && v !== null && typeof v !== "object");
    $("preview-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function tick() {
    if (!ui.conn) { return; }
    const now = ui.conn.serverNow();
    $("state-timer").textContent = formatDuration(now - (ui.since || now));
    const call = ui.call;
    if (call && !$("call-panel").hidden) {
      const held = call.status === "held";
      const start = typeof call.answered_at === "number" ? call.answered_at : call.since;
      $("call-timer").textContent = formatDuration(now - (start || now));
      const holdNow = held ? now - (call.since || now) : 0;
      const holdTotal = (call.held_total || 0) + holdNow;
      $("hold-box").hidden = !held;
      $("hold-timer").textContent = formatDuration(holdNow);
      $("hold-total-box").hidden = !(holdTotal >= 1 && (call.held_total || 0) > 0);
      $("hold-total").textContent = formatDuration(holdTotal);
    }
  }
  setInterval(tick, 1000);

  // ---- focus: where the next action is ---------------------------------------------------------------

  function focusNext() {
    const s = ui.state;
    const st = ui.call ? ui.call.status : "";
    let target = null;
    if (s === "logged_out") { target = ui.endpointOverride ? $("phone-endpoint") : $("btn-login"); }
    else if (s === "not_ready") { target = $("btn-ready"); }
    else if (s === "ready") { target = $("btn-not-ready"); }
    else if (s === "reserved") { target = ui.preview ? $("btn-preview-accept") : null; }
    else if (s === "on_call") {
      target = st === "held" ? $("btn-retrieve") : st === "consulting" ? $("btn-attended-complete") : $("btn-hold");
    } else if (s === "wrap_up") { target = $("wrapup-disposition"); }
    if (target && !target.hidden && !target.disabled && target.offsetParent !== null) { target.focus(); }
  }

  // ---- actions -----------------------------------------------------------------------------------

  function act(type, fields) {
    $("action-error").hidden = true;
    if (!ui.conn) { return Promise.reject({ error_id: "disconnected" }); }
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
    clearTimeout(showOk.timer);
    showOk.timer = setTimeout(() => { $("action-ok").hidden = true; }, 4000);
  }

  function loginPhone() {
    const fields = {};
    if (ui.endpointOverride) {
      const endpoint = $("phone-endpoint").value.trim();
      if (!endpoint) { showError("Enter the phone endpoint, e.g. PJSIP/1001."); $("phone-endpoint").focus(); return; }
      fields.endpoint = endpoint;
    }
    act("login", fields).catch(() => { if (!$("btn-login").hidden) { $("btn-login").focus(); } });
  }

  const callId = () => (ui.call ? { call_id: ui.call.call_id } : {});
  const hold = () => act("hold", callId()).catch(ignore);
  const retrieve = () => act("retrieve", callId()).catch(ignore);
  const ready = () => act("ready").catch(ignore);
  const notReady = () => act("not_ready", { reason: $("notready-reason").value }).catch(ignore);
  const hangup = () => act("hangup", callId()).catch(ignore);
  const logout = () => {
    if (ui.state === "logged_out") { signOut("You are signed out."); return; }
    act("logout").then(() => signOut("You are logged out and signed out."), ignore);
  };
  const transfer = () => act("transfer", Object.assign(callId(), {
    to: $("transfer-kind").value, target: $("transfer-target").value.trim(),
  })).catch(ignore);
  const consult = () => act("attended_transfer", Object.assign(callId(), {
    number: $("attended-number").value.trim(),
  })).catch(ignore);

  $("phone-form").addEventListener("submit", (ev) => { ev.preventDefault(); loginPhone(); });
  $("btn-ready").addEventListener("click", ready);
  $("btn-not-ready").addEventListener("click", notReady);
  $("btn-logout").addEventListener("click", logout);
  $("btn-hangup").addEventListener("click", hangup);
  $("btn-hold").addEventListener("click", hold);
  $("btn-retrieve").addEventListener("click", retrieve);
  $("btn-transfer").addEventListener("click", transfer);
  $("btn-attended").addEventListener("click", consult);
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

  // ---- keyboard shortcuts (shown in the page) --------------------------------------------------------

  function clickIfUsable(button) {
    if (!button.hidden && !button.disabled && button.offsetParent !== null) { button.click(); return true; }
    return false;
  }

  function focusIfUsable(field) {
    if (field.offsetParent !== null && !field.disabled) { field.focus(); return true; }
    return false;
  }

  const SHORTCUTS = {
    KeyR: () => clickIfUsable($("btn-ready")),
    KeyN: () => clickIfUsable($("btn-not-ready")),
    KeyL: () => clickIfUsable($("btn-login")),
    KeyH: () => clickIfUsable($("btn-hold")) || clickIfUsable($("btn-retrieve")),
    KeyX: () => clickIfUsable($("btn-hangup")),
    KeyT: () => focusIfUsable($("transfer-target")),
    KeyC: () => focusIfUsable($("attended-number")),
    KeyW: () => focusIfUsable($("wrapup-disposition")),
    KeyQ: () => clickIfUsable($("btn-logout")),
  };

  document.addEventListener("keydown", (ev) => {
    if ($("app").hidden) { return; }
    if (ev.altKey && !ev.ctrlKey && !ev.metaKey && SHORTCUTS[ev.code]) {
      ev.preventDefault();
      SHORTCUTS[ev.code]();
      return;
    }
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !$("wrapup-form").hidden) {
      ev.preventDefault();
      $("wrapup-form").requestSubmit();
      return;
    }
    if (ev.key === "Enter" && !ev.altKey && !ev.ctrlKey) {
      if (ev.target === $("transfer-target")) { ev.preventDefault(); clickIfUsable($("btn-transfer")); }
      if (ev.target === $("attended-number")) { ev.preventDefault(); clickIfUsable($("btn-attended")); }
    }
  });

  // ---- wrap-up (its draft survives a reload or a reconnect) ----------------------------------------

  function isoFromLocal(value) {
    const date = new Date(value);  // datetime-local is the browser's local time
    return isNaN(date.getTime()) ? null : date.toISOString();
  }

  function fillCallbackNumber() {
    const number = ui.pop ? (ui.pop.ani_e164 || ui.pop.ani || "") : "";
    if (number) { $("wrapup-callback-number").value = number; }
  }

  function startWrapup(callIdNow) {
    ui.wrapupFor = callIdNow;
    $("wrapup-disposition").value = "";
    $("wrapup-notes").value = "";
    $("wrapup-callback").checked = false;
    $("wrapup-callback-at").value = "";
    $("wrapup-callback-number").value = "";
    $("wrapup-then").value = "ready";
    fillCallbackNumber();
    const draft = loadDraft(callIdNow);
    if (draft) {
      $("wrapup-disposition").value = draft.disposition || "";
      $("wrapup-notes").value = draft.notes || "";
      $("wrapup-callback").checked = !!draft.callback;
      $("wrapup-callback-at").value = draft.at || "";
      if (draft.number) { $("wrapup-callback-number").value = draft.number; }
      $("wrapup-then").value = draft.then || "ready";
    }
    $("wrapup-callback-fields").hidden = !$("wrapup-callback").checked;
  }

  function draftKey(id) { return DRAFT_KEY + (ui.agentId || "") + "." + id; }

  function loadDraft(id) {
    if (!id) { return null; }
    try { return JSON.parse(sessionStorage.getItem(draftKey(id)) || "null"); } catch (e) { return null; }
  }

  function saveDraft() {
    if (ui.state !== "wrap_up" || !ui.wrapupFor) { return; }
    const draft = {
      disposition: $("wrapup-disposition").value, notes: $("wrapup-notes").value,
      callback: $("wrapup-callback").checked, at: $("wrapup-callback-at").value,
      number: $("wrapup-callback-number").value, then: $("wrapup-then").value,
    };
    try { sessionStorage.setItem(draftKey(ui.wrapupFor), JSON.stringify(draft)); } catch (e) { /* storage off */ }
  }

  function dropDraft(id) {
    try { sessionStorage.removeItem(draftKey(id)); } catch (e) { /* storage off */ }
  }

  $("wrapup-form").addEventListener("input", saveDraft);
  $("wrapup-form").addEventListener("change", saveDraft);
  $("wrapup-callback").addEventListener("change", () => {
    $("wrapup-callback-fields").hidden = !$("wrapup-callback").checked;
    if ($("wrapup-callback").checked) {
      if (!$("wrapup-callback-number").value) { fillCallbackNumber(); }
      $("wrapup-callback-at").focus();
    }
  });
  $("wrapup-disposition").addEventListener("change", () => {
    const code = ui.dispositions.find((d) => d.code === $("wrapup-disposition").value);
    if (code && code.callback) {
      $("wrapup-callback").checked = true;
      $("wrapup-callback-fields").hidden = false;
      if (!$("wrapup-callback-number").value) { fillCallbackNumber(); }
    }
    saveDraft();
  });
  $("wrapup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!$("wrapup-disposition").value) {
      showError("Choose a disposition first.");
      $("wrapup-disposition").focus();
      return;
    }
    const id = ui.callId || (ui.call && ui.call.call_id) || ui.wrapupFor;
    const fields = {
      call_id: id,
      disposition: $("wrapup-disposition").value,
      notes: $("wrapup-notes").value,
      then: $("wrapup-then").value,
    };
    if (fields.then === "not_ready") { fields.reason = $("notready-reason").value; }
    if ($("wrapup-callback").checked) {
      const at = isoFromLocal($("wrapup-callback-at").value);
      if (!at) { showError("Choose a callback time."); $("wrapup-callback-at").focus(); return; }
      fields.callback = { at: at, number: $("wrapup-callback-number").value.trim() };
    }
    act("dispose", fields).then((res) => {
      dropDraft(id);
      showOk(res.recorded === false ? "Wrap-up done, but the disposition could not be recorded." :
        "Wrap-up recorded.");
    }, ignore);
  });
})();
