// ClawOps console: chat with the Commander, decide pending approvals (four-eyes progress, a
// one-time code when the card needs one, approve for a scope) and read recent traces.
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

  function row(dl, label, value, cls) {
    dl.appendChild(el("dt", "", label));
    const dd = el("dd", cls || "", value);
    dl.appendChild(dd);
    return dd;
  }

  // approvalsOf counts the approving decisions recorded on an approval.
  function approvalsOf(a) { return (a.decisions || []).filter((d) => d.approve).length; }

  // revision changes whenever a card must be drawn again (a four-eyes approval got its
  // first approval).
  function revision(a) { return a.state + ":" + (a.decisions || []).length; }

  // targetInstances lists the instances an approval's plan touches: the default selector of
  // an "Approve for scope" grant.
  function targetInstances(a) {
    return ((a.plan && a.plan.targets) || []).map((t) => t.instance).filter((i) => !!i);
  }

  function input(cls, type, placeholder, label) {
    const n = el("input", cls);
    n.type = type;
    n.placeholder = placeholder;
    n.setAttribute("aria-label", label);
    return n;
  }

  function button(cls, text) {
    const b = el("button", cls, text);
    b.type = "button";
    return b;
  }

  function renderCard(a) {
    const need = Math.max(a.approvals_required || 1, 1);
    const li = el("li", "card risk-" + (a.risk || "unknown"));
    li.dataset.id = a.id;
    li.dataset.rev = revision(a);
    li.appendChild(el("h3", "", a.tool + " — " + ((a.plan && a.plan.summary) || "")));
    const dl = el("dl");
    row(dl, "Approval", a.id);
    row(dl, "Risk", (a.risk || "?") + (a.risk_score ? " (score " + a.risk_score + ")" : ""), "risk");
    row(dl, "Users", String((a.plan && a.plan.users_affected) || 0));
    if (a.plan && a.plan.cost_delta_monthly_usd) row(dl, "Cost/month", "$" + a.plan.cost_delta_monthly_usd.toFixed(2));
    row(dl, "Requested by", (a.requester && a.requester.identity) || "?");
    row(dl, "Expires", new Date(a.expires_at).toLocaleString());
    if (need > 1) {
      const by = (a.decisions || []).filter((d) => d.approve).map((d) => d.by);
      row(dl, "Four eyes", approvalsOf(a) + " of " + need + " approvals" + (by.length ? " (" + by.join(", ") + ")" : ""), "progress");
    }
    if (a.second_factor) row(dl, "Second factor", "required: enter your one-time code", "factor");
    li.appendChild(dl);
    const effects = (a.plan && a.plan.effects) || [];
    if (effects.length) {
      const ul = el("ul", "actions");
      for (const e of effects) ul.appendChild(el("li", "", e.kind + " " + e.target + (e.detail ? ": " + e.detail : "")));
      li.appendChild(ul);
    }
    const form = el("form", "decide");
    const reason = input("", "text", "reason (optional)", "reason");
    const totp = a.second_factor ? input("totp", "text", "one-time code", "one-time code") : null;
    if (totp) {
      totp.inputMode = "numeric";
      totp.autocomplete = "one-time-code";
      totp.maxLength = 10;
    }
    const approve = button("approve", "Approve");
    const deny = button("deny", "Deny");
    // A grant never widens a four-eyes approval or one that needs a second factor.
    const scopeAllowed = need === 1 && !a.second_factor;
    const scopeBtn = scopeAllowed ? button("scope", "Approve for scope…") : null;
    const result = el("div", "result");
    const buttons = [approve, deny];
    const setBusy = (busy) => { for (const b of buttons) b.disabled = busy; };
    const decide = async (decision, scope) => {
      setBusy(true);
      const body = { decision, reason: reason.value.trim() };
      if (totp && totp.value.trim()) body.totp = totp.value.trim();
      if (scope) body.scope = scope;
      try {
        const { data } = await api("POST", "/v1/approvals/" + encodeURIComponent(a.id) + "/decision", body);
        const summary = data.result && data.result.summary ? ": " + data.result.summary : "";
        let word = decision === "deny" ? "denied" : decision === "approve_scope" ? "approved for scope" : "approved";
        if (data.decision === "needs_approval") word = "approved (" + (data.message || "waiting for another approver") + ")";
        result.className = "result";
        result.textContent = word + summary;
        say("notice", "Approval " + a.id + " " + word + summary);
        if (totp) totp.value = "";
        setTimeout(refreshApprovals, 1500);
        if (data.decision === "needs_approval") setBusy(false);
      } catch (e) {
        result.className = "result error";
        result.textContent = e.message;
        setBusy(false);
      }
    };
    approve.addEventListener("click", () => decide("approve"));
    deny.addEventListener("click", () => decide("deny"));
    form.addEventListener("submit", (ev) => ev.preventDefault());
    form.append(reason);
    if (totp) form.append(totp);
    form.append(approve, deny);
    li.append(form);
    if (scopeBtn) {
      buttons.push(scopeBtn);
      form.append(scopeBtn);
      li.append(renderScopeForm(a, scopeBtn, buttons, (scope) => decide("approve_scope", scope)));
    }
    li.append(result);
    return li;
  }

  // renderScopeForm builds the small "Approve for scope" form: the approval's own instances
  // as the selector, a duration and a user budget. It opens with the scope button.
  function renderScopeForm(a, toggle, buttons, submit) {
    const instances = targetInstances(a);
    const box = el("form", "scope-form");
    box.hidden = true;
    box.addEventListener("submit", (ev) => ev.preventDefault());
    box.appendChild(el("span", "muted scope-instances", "Instances: " + (instances.join(", ") || "none")));
    const ttl = input("scope-ttl", "text", "4h", "grant duration");
    ttl.value = "4h";
    ttl.maxLength = 8;
    const users = input("scope-users", "number", "users", "most users in total");
    users.min = "1";
    users.value = String(Math.max((a.plan && a.plan.users_affected) || 1, 1));
    const grant = button("grant", "Grant");
    buttons.push(grant);
    box.append(el("label", "muted", "for"), ttl, el("label", "muted", "max users"), users, grant);
    if (!instances.length) {
      toggle.disabled = true;
      toggle.title = "this plan names no instances to scope a grant to";
    }
    toggle.addEventListener("click", () => { box.hidden = !box.hidden; });
    grant.addEventListener("click", () => submit({
      instances, max_users: parseInt(users.value, 10) || 0, ttl: ttl.value.trim(),
    }));
    return box;
  }

  async function refreshApprovals() {
    const errBox = $("approvals-error");
    try {
      const { data } = await api("GET", "/v1/approvals?state=pending");
      const list = data || [];
      const cards = $("cards");
      const keep = new Map(list.map((a) => [a.id, a]));
      for (const li of Array.from(cards.children)) {
        const a = keep.get(li.dataset.id);
        if (!a) { li.remove(); continue; }
        if (li.dataset.rev !== revision(a)) {
          // Redraw (e.g. four-eyes progress) but keep what the last action said.
          const fresh = renderCard(a);
          const old = li.querySelector(".result");
          const now = fresh.querySelector(".result");
          if (old && now) { now.className = old.className; now.textContent = old.textContent; }
          li.replaceWith(fresh);
        }
      }
      const have = new Set(Array.from(cards.children).map((li) => li.dataset.id));
      for (const a of list) if (!have.has(a.id)) cards.appendChild(renderCard(a));
      $("approvals-count").textContent = "(" + list.length + ")";
      errBox.hidden = true;
    } catch (e) {
      errBox.textContent = e.message;
      errBox.hidden = false;
    }
  }

  function spanLine(s) {
    let line = s.tool + " → " + s.decision;
    if (s.reason) line += " (" + s.reason + ")";
    if (s.risk) line += ", risk " + s.risk + (s.risk_score ? " " + s.risk_score : "");
    if (s.approval_id) line += ", approval " + s.approval_id;
    if (s.grant_kind) line += ", under " + s.grant_kind + (s.grant_id ? " " + s.grant_id : "");
    if (s.error) line += ": " + s.error;
    else if (s.result) line += ": " + s.result;
    return line;
  }

  function renderTrace(t) {
    const li = el("li", "trace status-" + (t.status || "unknown"));
    li.dataset.id = t.id;
    li.dataset.rev = t.status;
    const who = (t.actor && (t.actor.identity || (t.actor.agent ? "agent:" + t.actor.agent : ""))) || "?";
    const head = button("trace-toggle", new Date(t.started_at).toLocaleString() + " · " + t.status + " · " + who + " · " + (t.intent || t.id));
    const spans = el("ol", "spans");
    spans.hidden = true;
    head.addEventListener("click", async () => {
      if (!spans.hidden) { spans.hidden = true; return; }
      spans.replaceChildren(el("li", "muted", "loading…"));
      spans.hidden = false;
      try {
        const { data } = await api("GET", "/v1/traces/" + encodeURIComponent(t.id));
        const items = (data.spans || []).map((s) => el("li", "span decision-" + s.decision, spanLine(s)));
        if (!items.length) items.push(el("li", "muted", "no tool calls"));
        if (data.result) items.push(el("li", "muted", "result: " + data.result));
        spans.replaceChildren(...items);
      } catch (e) {
        spans.replaceChildren(el("li", "error", e.message));
      }
    });
    li.append(head, spans);
    return li;
  }

  async function refreshTraces() {
    const errBox = $("traces-error");
    try {
      const { data } = await api("GET", "/v1/traces?limit=20");
      const list = $("trace-list");
      const keep = new Map((data || []).map((t) => [t.id, t]));
      for (const li of Array.from(list.children)) {
        const t = keep.get(li.dataset.id);
        if (!t || li.dataset.rev !== t.status) li.remove();
      }
      const have = new Set(Array.from(list.children).map((li) => li.dataset.id));
      // Newest first: insert each missing run before the first older one shown.
      for (const t of data || []) {
        if (have.has(t.id)) continue;
        const li = renderTrace(t);
        const next = Array.from(list.children).find((n) => keep.get(n.dataset.id) && keep.get(n.dataset.id).started_at < t.started_at);
        list.insertBefore(li, next || null);
      }
      if (!list.children.length) list.appendChild(el("li", "muted empty", "no runs recorded yet"));
      else for (const n of Array.from(list.querySelectorAll("li.empty"))) n.remove();
      errBox.hidden = true;
    } catch (e) {
      // A gateway without traces answers NOT_IMPLEMENTED: the section says so once.
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
    try { await Promise.all([refreshApprovals(), pollMessages(), refreshTraces()]); } finally { polling = false; }
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
