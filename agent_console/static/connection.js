// Console protocol v1 client shared by the agent console and the wallboard (docs/console-protocol.md).
// Plain browser JavaScript, no build step, no dependencies.
// Reconnects with backoff after a lost connection and says hello again (the server then re-sends the
// agent's state and live pops); shows a banner while the connection is lost and when it is back.
"use strict";

(function (global) {
  const CLOSE_UNAUTHENTICATED = 4001;
  const CLOSE_REPLACED = 4003;
  const CLOSE_RATE_LIMITED = 4008;
  const STATE_LABELS = Object.freeze({
    logged_out: "Logged out", not_ready: "Not ready", ready: "Ready", reserved: "Ringing",
    on_call: "On call", wrap_up: "Wrap-up",
  });

  function wsUrl() {
    const meta = document.querySelector('meta[name="cti-ws-path"]');
    const path = (meta && meta.content && meta.content.charAt(0) === "/") ? meta.content : "/ws";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function backoff(attempt) {
    const base = Math.min(10000, 500 * Math.pow(2, attempt));
    return base / 2 + Math.random() * base / 2;
  }

  class Banner {
    constructor(el) { this.el = el; this.timer = null; }
    lost(text) {
      clearTimeout(this.timer);
      this.el.textContent = text;
      this.el.className = "banner banner-lost";
      this.el.dataset.status = "lost";
      this.el.hidden = false;
    }
    back() {
      if (this.el.dataset.status !== "lost") { return; }
      this.el.textContent = "Connection restored.";
      this.el.className = "banner banner-back";
      this.el.dataset.status = "back";
      this.el.hidden = false;
      this.timer = setTimeout(() => { this.el.hidden = true; this.el.dataset.status = "ok"; }, 4000);
    }
    fatal(text) {
      clearTimeout(this.timer);
      this.el.textContent = text;
      this.el.className = "banner banner-lost";
      this.el.dataset.status = "closed";
      this.el.hidden = false;
    }
  }

  // hooks: onAuthenticated(helloResult, isReconnect), onPush(message), onAuthFailed(error), onClosed(text)
  class ConsoleConnection {
    constructor(hello, hooks, bannerEl) {
      this.hello = hello;
      this.hooks = hooks;
      this.banner = new Banner(bannerEl);
      this.ws = null;
      this.nextId = 1;
      this.pending = new Map();
      this.attempt = 0;
      this.authenticated = false;
      this.everAuthenticated = false;
      this.stopped = false;
      this.heartbeat = 15;
      this.lastSeen = Date.now();
      this.serverOffset = 0;  // server clock minus browser clock, seconds
      this.watchdog = setInterval(() => this.checkAlive(), 1000);
    }

    open() {
      if (this.stopped) { return; }
      const ws = new WebSocket(wsUrl());
      this.ws = ws;
      ws.onopen = () => {
        this.lastSeen = Date.now();
        this.request("hello", this.hello).then((res) => {
          const again = this.everAuthenticated;
          this.authenticated = true;
          this.everAuthenticated = true;
          this.attempt = 0;
          this.heartbeat = res.heartbeat_interval || 15;
          this.serverOffset = res.server_time - Date.now() / 1000;
          if (again) { this.banner.back(); }
          this.hooks.onAuthenticated(res, again);
        }, (err) => {
          this.stopped = true;
          this.hooks.onAuthFailed(err);
        });
      };
      ws.onmessage = (ev) => this.receive(ev.data);
      ws.onclose = (ev) => this.closed(ws, ev);
    }

    receive(data) {
      this.lastSeen = Date.now();
      let msg;
      try { msg = JSON.parse(data); } catch (e) { return; }
      if (msg.type === "result" || msg.type === "error") {
        const waiter = this.pending.get(msg.re);
        if (waiter) {
          this.pending.delete(msg.re);
          if (msg.type === "result") { waiter.resolve(msg); } else { waiter.reject(msg); }
        } else if (msg.type === "error" && this.hooks.onError) {
          this.hooks.onError(msg);
        }
        return;
      }
      this.hooks.onPush(msg);
    }

    closed(ws, ev) {
      if (ws !== this.ws) { return; }
      this.authenticated = false;
      for (const waiter of this.pending.values()) {
        waiter.reject({ error_id: "disconnected", message: "connection lost" });
      }
      this.pending.clear();
      if (this.stopped) { return; }
      if (ev.code === CLOSE_UNAUTHENTICATED && !this.everAuthenticated) { return; }  // onAuthFailed handles it
      if (ev.code === CLOSE_REPLACED) {
        this.stopped = true;
        this.banner.fatal("This agent signed in from another console. Reload the page to take over again.");
        if (this.hooks.onClosed) { this.hooks.onClosed("replaced"); }
        return;
      }
      const delay = backoff(this.attempt++);
      const why = ev.code === CLOSE_RATE_LIMITED ? " (too many requests)" : "";
      this.banner.lost("Connection to the server lost" + why + ". Reconnecting in " +
                       Math.ceil(delay / 1000) + " s\u2026");
      if (this.hooks.onLost) { this.hooks.onLost(); }
      setTimeout(() => this.open(), delay);
    }

    checkAlive() {
      // The server sends a heartbeat every heartbeat_interval seconds; silence means a dead link.
      if (this.ws && this.ws.readyState === WebSocket.OPEN &&
          Date.now() - this.lastSeen > this.heartbeat * 2500) {
        this.ws.close();
      }
    }

    request(type, fields) {
      return new Promise((resolve, reject) => {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
          reject({ error_id: "disconnected", message: "not connected to the server" });
          return;
        }
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        this.ws.send(JSON.stringify(Object.assign({ v: 1, type: type, id: id }, fields || {})));
      });
    }

    serverNow() { return Date.now() / 1000 + this.serverOffset; }

    stop() {
      this.stopped = true;
      clearInterval(this.watchdog);
      if (this.ws) { this.ws.close(); }
    }
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    const mm = (h ? String(m).padStart(2, "0") : String(m)), ss = String(s).padStart(2, "0");
    return (h ? h + ":" : "") + mm + ":" + ss;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "testid") { node.dataset.testid = v; } else { node.setAttribute(k, v); }
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  global.CTI = { ConsoleConnection: ConsoleConnection, formatDuration: formatDuration, el: el,
                 STATE_LABELS: STATE_LABELS };
})(window);
