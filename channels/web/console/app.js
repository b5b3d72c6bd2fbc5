// ClawOps console: chat with the Commander and decide pending approvals.
// The token comes from the URL fragment (#token=...) once, then lives in sessionStorage.
// Every value from the server is rendered with textContent, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "clawops.token";
  const POLL_MS = 4000;
  let cursor = 0;
  let polling = false;

  const $ = (id) => document.getElementById(id);

  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const t = params.get("token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  // api calls the ClawOps API and returns data, or throws an Error whose message carries
  // the reason code.
  async function api(method, path, body) {
    const opts = { method, headers: { "Authorization": "Bearer " + token() } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res, env;
    try {
      res = await fetch(path, opts);
      env = await res.json();
    } catch (e) {
      throw new Error("NETWORK: " + e.message);
    }
    if (!env || env.ok !== true) {
      const err = (env && env.error) || {};
      const e = new Error((err.code || "HTTP_" + res.status) + ": " + (err.message || res.statusText));
      e.code = err.code;
      throw e;
    }
    return { status: res.status, data: env.data };
  }

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function say(cls, text) {
    const log = $("log");
    log.appendChild(el("li", cls, text));
    log.scrollTop = log.scrollHeight;
  }

  function showSignin(show) { $("signin").hidden = !show; }

  async function whoami() {
    if (!token()) { showSignin(true); return false; }
    try {
      const { data } = await api("GET", "/v1/whoami");
      $("whoami").textContent = data.identity + " (" + data.role + ")";
      showSignin(false);
      return true;
    } catch (e) {
      $("whoami").textContent = e.message;
      showSignin(true);
      return false;
    }
  }

  async function sendChat(ev) {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    say("me", text);
    try {
      const { data } = await api("POST", "/v1/chat", { text });
      for (const r of data.replies || []) say("bot", r);
      refreshApprovals();
    } catch (e) {
      say("err", e.message);
    }
  }

  function row(dl, label, value) {
    dl.appendChild(el("dt", "", label));
    dl.appendChild(el("dd", "", value));
  }

  function renderCard(a) {
    const li = el("li", "card risk-" + (a.risk || "unknown"));
    li.dataset.id = a.id;
    li.appendChild(el("h3", "", a.tool + " — " + ((a.plan && a.plan.summary) || "")));
    const dl = el("dl");
    row(dl, "Approval", a.id);
    row(dl, "Risk", a.risk || "?");
    row(dl, "Users", String((a.plan && a.plan.users_affected) || 0));
    if (a.plan && a.plan.cost_delta_monthly_usd) row(dl, "Cost/month", "$" + a.plan.cost_delta_monthly_usd.toFixed(2));
    row(dl, "Requested by", (a.requester && a.requester.identity) || "?");
    row(dl, "Expires", new Date(a.expires_at).toLocaleString());
    li.appendChild(dl);
    const effects = (a.plan && a.plan.effects) || [];
    if (effects.length) {
      const ul = el("ul", "actions");
      for (const e of effects) ul.appendChild(el("li", "", e.kind + " " + e.target + (e.detail ? ": " + e.detail : "")));
      li.appendChild(ul);
    }
    const form = el("form", "decide");
    const reason = el("input");
    reason.type = "text";
    reason.placeholder = "reason (optional)";
    reason.setAttribute("aria-label", "reason");
    const approve = el("button", "approve", "Approve");
    approve.type = "button";
    const deny = el("button", "deny", "Deny");
    deny.type = "button";
    const result = el("div", "result");
    const decide = async (decision) => {
      approve.disabled = deny.disabled = true;
      try {
        const { data } = await api("POST", "/v1/approvals/" + encodeURIComponent(a.id) + "/decision",
          { decision, reason: reason.value.trim() });
        const summary = data.result && data.result.summary ? ": " + data.result.summary : "";
        const word = decision === "approve" ? "approved" : "denied";
        result.className = "result";
        result.textContent = word + summary;
        say("notice", "Approval " + a.id + " " + word + summary);
        setTimeout(refreshApprovals, 1500);
      } catch (e) {
        result.className = "result error";
        result.textContent = e.message;
        approve.disabled = deny.disabled = false;
      }
    };
    approve.addEventListener("click", () => decide("approve"));
    deny.addEventListener("click", () => decide("deny"));
    form.addEventListener("submit", (ev) => ev.preventDefault());
    form.append(reason, approve, deny);
    li.append(form, result);
    return li;
  }

  async function refreshApprovals() {
    const errBox = $("approvals-error");
    try {
      const { data } = await api("GET", "/v1/approvals?state=pending");
      const list = data || [];
      const cards = $("cards");
      const keep = new Set(list.map((a) => a.id));
      for (const li of Array.from(cards.children)) if (!keep.has(li.dataset.id)) li.remove();
      const have = new Set(Array.from(cards.children).map((li) => li.dataset.id));
      for (const a of list) if (!have.has(a.id)) cards.appendChild(renderCard(a));
      $("approvals-count").textContent = "(" + list.length + ")";
      errBox.hidden = true;
    } catch (e) {
      errBox.textContent = e.message;
      errBox.hidden = false;
    }
  }

  async function pollMessages() {
    try {
      const { data } = await api("GET", "/v1/messages?after=" + cursor);
      for (const m of data.messages || []) {
        if (m.kind === "card" && m.card) {
          say("notice", "Approval " + m.card.approval_id + " is " + m.card.state + ": " + m.card.summary);
        } else {
          say("notice", m.text || "");
        }
      }
      cursor = data.next;
    } catch (e) {
      if (e.code === "UNAUTHENTICATED") showSignin(true);
    }
  }

  async function tick() {
    if (polling || !token()) return;
    polling = true;
    try { await Promise.all([refreshApprovals(), pollMessages()]); } finally { polling = false; }
  }

  async function start() {
    if (await whoami()) {
      // Skip notices from before this page was opened.
      try { cursor = (await api("GET", "/v1/messages?after=" + Number.MAX_SAFE_INTEGER)).data.next; } catch (e) { /* shown by tick */ }
      tick();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromFragment();
    $("chat-form").addEventListener("submit", sendChat);
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token-input").value.trim();
      $("token-input").value = "";
      if (v) { sessionStorage.setItem(TOKEN_KEY, v); start(); }
    });
    start();
    setInterval(tick, POLL_MS);
  });
})();
