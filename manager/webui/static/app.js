// The sessions page. Everything it shows comes from the manager's
// /web/api/ routes; the state of a freeze lives in the agents, so a reload,
// another tab, the CLI or the Slurm epilog all show up the same way: a
// session whose freeze runs has a disabled, spinning Commit button.
"use strict";
(() => {
  const SESSIONS_EVERY_MS = 5000; // catches freezes started elsewhere
  const TASKS_EVERY_MS = 1000; // progress of the freezes that run

  const $ = (id) => document.getElementById(id);
  const state = {
    me: null,
    sessions: [],
    // Freezes known to run, by task id, with their latest answer.
    running: new Map(),
    // The newest task seen per container id, finished or not.
    latest: new Map(),
    // Containers whose Commit was pressed and not yet answered.
    pending: new Set(),
    // Errors of a Commit press, by container id, until the next one.
    refused: new Map(),
    timers: [],
  };

  // --- talking to the manager -------------------------------------------------
  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    const opts = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    if (method !== "GET" && state.me) headers["X-CSRF-Token"] = state.me.csrf_token;
    const r = await fetch(path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const e = new Error((data && data.error) || `${r.status} ${r.statusText}`);
      e.status = r.status;
      e.task = data && data.task;
      throw e;
    }
    return { data, warnings: parseWarnings(r.headers.get("Warning")) };
  }

  // The manager says which nodes did not answer in Warning headers:
  // 199 baicommit "node x: ...".
  function parseWarnings(h) {
    if (!h) return [];
    return [...h.matchAll(/199 baicommit "([^"]*)"/g)].map((m) => m[1]);
  }

  function say(msg, kind) {
    const s = $("status");
    s.textContent = msg || "";
    s.className = kind || "";
  }

  // --- formatting -------------------------------------------------------------
  function bytes(n) {
    if (!n && n !== 0) return "";
    if (n < 1024) return `${n} B`;
    const units = "KMGTPE";
    let i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
    return `${n.toFixed(1)} ${units[i]}iB`;
  }

  function age(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function shellQuote(s) {
    return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
  }

  // el builds an element; strings become text nodes, never HTML, since
  // names and messages come from users.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(typeof kid === "string" ? document.createTextNode(kid) : kid);
    }
    return e;
  }

  const time = (iso) => el("time", { datetime: iso, title: new Date(iso).toLocaleString() }, age(iso));
  const dash = (s) => s || "—";

  // --- sessions ---------------------------------------------------------------
  const isDone = (t) => t.state === "succeeded" || t.state === "failed";

  // remember records what is known of task t of container cid.
  function remember(t, cid) {
    if (!t) return;
    const prev = state.running.get(t.id);
    t.container_id = t.container_id || cid || (prev && prev.container_id);
    if (!t.container_id) return;
    const cur = state.latest.get(t.container_id);
    if (!cur || cur.id === t.id || Date.parse(t.created) >= Date.parse(cur.created)) {
      state.latest.set(t.container_id, t);
    }
    if (isDone(t)) state.running.delete(t.id);
    else state.running.set(t.id, t);
  }

  // follow has the page poll task id of container cid until it ends.
  function follow(id, cid) {
    if (!state.running.has(id)) {
      state.running.set(id, { id, state: "running", container_id: cid, created: new Date().toISOString() });
    }
  }

  async function loadSessions() {
    const { data, warnings } = await call("GET", "api/sessions");
    state.sessions = data || [];
    for (const s of state.sessions) {
      if (s.last_task) remember(s.last_task, s.id);
      // Started elsewhere (CLI, epilog, another tab): follow it.
      if (s.task) follow(s.task, s.id);
    }
    renderSessions();
    if (warnings.length) say(`Some nodes did not answer: ${warnings.join("; ")}`, "warn");
  }

  async function pollRunning() {
    const ids = [...state.running.keys()];
    if (!ids.length) return;
    let ended = false;
    await Promise.all(ids.map(async (id) => {
      try {
        const { data } = await call("GET", `api/tasks/${encodeURIComponent(id)}`);
        remember(data);
        if (isDone(data)) {
          ended = true;
          const name = data.container;
          say(data.state === "succeeded" ? `${name} is frozen: ${(data.archive || data.store || {}).path}` : `Freezing ${name} failed: ${data.error}`,
            data.state === "succeeded" ? "ok" : "error");
        }
      } catch (e) {
        if (e.status === 404) state.running.delete(id);
      }
    }));
    renderSessions();
    if (ended) loadSessions().catch(() => {});
  }

  // busyTask is the freeze of s that runs, if any.
  function busyTask(s) {
    for (const t of state.running.values()) if (t.container_id === s.id) return t;
    return null;
  }

  function progressText(t) {
    const p = t.progress || {};
    const phase = t.phase || (t.state === "queued" ? "queued" : "starting");
    if (phase === "exporting" && p.bytes_total) {
      const pct = `${phase}, ${Math.min(99, Math.floor((100 * p.bytes_read) / p.bytes_total))}%`;
      if (!p.seconds_left) return pct;
      const s = Math.round(p.seconds_left);
      return `${pct}, about ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} left`;
    }
    return phase;
  }

  function resultCell(s, busy) {
    const td = (...kids) => el("td", { class: "result" }, ...kids);
    if (busy) {
      return td(el("span", { class: "running" }, `Freezing: ${progressText(busy)}`),
        busy.trigger === "epilog" ? " (its job ended)" : "");
    }
    const refused = state.refused.get(s.id);
    if (refused) return td(el("span", { class: "error" }, refused));
    const t = state.latest.get(s.id);
    if (!t || !isDone(t)) return td("—");
    if (t.state === "failed") return td(el("span", { class: "error" }, `Failed: ${t.error || "no reason given"}`));
    const a = t.archive || {};
    const st = t.store;
    const digest = a.sha256 ? `sha256:${a.sha256}` : "";
    return td(
      a.path ? el("code", { class: "archive-path" }, a.path) : "", " ",
      a.path ? el("span", { class: "archive-size" }, bytes(a.size)) : "", " ",
      st ? el("span", { class: "store-image" }, "store: ", el("code", { class: "store-path" }, st.path), ` (${bytes(st.written)} written)`) : "", " ",
      el("code", { class: "archive-digest", title: digest, "data-digest": digest }, digest ? `${digest.slice(0, 19)}…` : ""),
      t.push ? el("span", { class: t.push.state === "failed" ? "error" : "" }, ` push ${t.push.state}: ${t.push.ref}`) : "",
      el("br"), el("span", { class: "hint" }, "frozen ", time(t.finished || t.created), " ago"));
  }

  function controlsCell(s, busy) {
    if (busy || state.pending.has(s.id)) {
      return el("td", { class: "controls" }, el("button", {
        type: "button", class: "commit busy", disabled: true, "aria-busy": "true",
        "aria-label": `Freezing ${s.name}`, "data-task": busy ? busy.id : "",
      }, el("span", { class: "spinner", "aria-hidden": "true" }), busy ? "Committing…" : "Starting…"));
    }
    return el("td", { class: "controls" }, el("button", {
      type: "button", class: "commit", "aria-label": `Commit ${s.name}`,
      onclick: () => askCommit(s),
    }, "Commit"));
  }

  function renderSessions() {
    const body = document.querySelector("#sessions tbody");
    const rows = state.sessions.map((s) => {
      const busy = busyTask(s);
      return el("tr", { "data-session": s.name, "data-id": s.id },
        el("th", { scope: "row" }, s.name),
        el("td", {}, s.node),
        el("td", {}, dash(s.job)),
        el("td", { class: "image" }, s.image),
        el("td", {}, el("span", { class: `state state-${s.state}` }, s.state)),
        el("td", {}, time(s.created)),
        resultCell(s, busy),
        controlsCell(s, busy));
    });
    patchRows(body, rows, "id");
    $("sessions-empty").hidden = rows.length > 0;
  }

  // patchRows makes body's rows the rows given, keyed by data-<key>, and
  // changes of a row only what differs (morph): the page redraws every
  // second while a freeze runs, and a row rebuilt anyway would take the
  // keyboard focus from its Commit button and a selection being copied.
  function patchRows(body, rows, key) {
    const old = new Map([...body.children].map((r) => [r.dataset[key], r]));
    rows.forEach((r, i) => {
      const prev = old.get(r.dataset[key]);
      const want = prev ? morph(prev, r) : r;
      if (body.children[i] !== want) body.insertBefore(want, body.children[i] || null);
    });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  // morph makes node cur, which is in the document, look like next, and
  // returns the node that is there afterwards: cur where only texts
  // differ, next where an element's kind, attributes or children differ.
  // A kept element keeps its listeners, which read only what it shows.
  function morph(cur, next) {
    if (cur.isEqualNode(next)) return cur;
    if (cur.nodeType === Node.TEXT_NODE && next.nodeType === Node.TEXT_NODE) {
      cur.data = next.data;
      return cur;
    }
    if (cur.nodeType !== Node.ELEMENT_NODE || cur.tagName !== next.tagName ||
        !sameAttributes(cur, next) || cur.childNodes.length !== next.childNodes.length) {
      cur.replaceWith(next);
      return next;
    }
    const kids = [...next.childNodes]; // morph moves some of them out of next
    [...cur.childNodes].forEach((c, i) => morph(c, kids[i]));
    return cur;
  }

  function sameAttributes(a, b) {
    if (a.attributes.length !== b.attributes.length) return false;
    for (const { name, value } of a.attributes) if (b.getAttribute(name) !== value) return false;
    return true;
  }

  // --- committing ----------------------------------------------------------------
  let asking = null;

  function askCommit(s) {
    asking = s;
    $("commit-name").textContent = s.name;
    $("commit-image").value = "";
    $("commit-before").value = "";
    $("commit-image").placeholder = `localhost/baicommit/${s.name}:<time>`;
    formatChoices();
    // A dialog keeps its last returnValue: Escape must not repeat a Commit.
    $("commit-dialog").returnValue = "";
    $("commit-dialog").showModal();
    $("commit-image").focus();
  }

  $("commit-dialog").addEventListener("close", () => {
    const s = asking;
    asking = null;
    if (!s || $("commit-dialog").returnValue !== "commit") return;
    commit(s, $("commit-image").value.trim(), $("commit-before").value.trim(), $("commit-format").value);
  });

  const FORMAT_LABELS = {
    archive: "an archive (.tar.gz)",
    store: "into the layer store (only what is new)",
    both: "both",
  };

  // formatChoices offers the site's formats, its default first chosen.
  function formatChoices() {
    const me = state.me || {};
    const formats = me.formats || [];
    const select = $("commit-format");
    const options = formats.map((f) => el("option", { value: f }, FORMAT_LABELS[f] || f));
    if (!me.format) options.unshift(el("option", { value: "" }, "the site's default"));
    select.replaceChildren(...options);
    select.value = me.format || "";
    $("commit-format-row").hidden = formats.length < 2;
  }

  async function commit(s, image, before, format) {
    state.refused.delete(s.id);
    state.pending.add(s.id);
    renderSessions();
    say(`Starting to freeze ${s.name}…`);
    try {
      const body = { container: s.name || s.id, node: s.node };
      if (s.job) body.job = s.job;
      if (image) body.image = image;
      if (before) body.before = [before];
      if (format) body.format = format;
      const { data } = await call("POST", "api/freezes", body);
      remember(data, s.id);
      say(`Freezing ${s.name} (task ${data.id}).`);
    } catch (e) {
      if (e.status === 409 && e.task) {
        follow(e.task, s.id);
        say(e.message, "warn");
      } else {
        state.refused.set(s.id, e.message);
        say(`Cannot freeze ${s.name}: ${e.message}`, "error");
        if (e.status === 401) signedOut(e.message);
      }
    } finally {
      state.pending.delete(s.id);
      renderSessions();
    }
  }

  // --- frozen images -----------------------------------------------------------------
  async function loadImages() {
    const [{ data }] = await Promise.all([call("GET", "api/archives"), loadUsage()]);
    const list = (data && data.archives) || [];
    const body = document.querySelector("#images tbody");
    body.replaceChildren(...list.map((a) => {
      const cmd = `baicommit restore ${shellQuote(a.path)}`;
      const code = el("code", { class: "restore-cmd" }, cmd);
      return el("tr", { "data-archive": a.path },
        el("td", {}, time(a.created), " ago"),
        el("th", { scope: "row", class: "image" }, a.image),
        el("td", {}, dash(a.source_container)),
        el("td", {}, dash(a.node)),
        el("td", {}, dash(a.job)),
        el("td", {}, bytes(a.size), a.format === "store" ? ` (layer store, ${bytes(a.written)} written)` : ""),
        el("td", {}, el("code", { class: "archive-digest", title: `sha256:${a.sha256}` }, `sha256:${(a.sha256 || "").slice(0, 12)}…`)),
        el("td", { class: "restore" }, code, " ",
          el("button", { type: "button", class: "copy", "aria-label": `Copy the restore command of ${a.image}`, onclick: () => copy(code, cmd) }, "Copy")),
        el("td", {}, el("button", { type: "button", class: "delete", "aria-label": `Delete ${a.image}`, onclick: () => askDelete(a) }, "Delete")));
    }));
    $("images-empty").hidden = list.length > 0;
    if (data && data.warnings && data.warnings.length) say(data.warnings.join("; "), "warn");
  }

  // usageText is what one keeps against a quota: "3 of 20 archives, 1.2 GiB of 500 GiB (0%)".
  function usageText(archives, used, q) {
    let n = `${archives} archive${archives === 1 ? "" : "s"}`;
    if (q && q.max_archives) n = `${archives} of ${q.max_archives} archives`;
    let b = bytes(used);
    if (q && q.max_bytes) b = `${b} of ${bytes(q.max_bytes)} (${Math.floor((100 * used) / q.max_bytes)}%)`;
    return `${n}, ${b}`;
  }

  async function loadUsage() {
    try {
      const { data: u } = await call("GET", "api/usage");
      const parts = [`You keep ${usageText(u.archives, u.bytes, u.quota)}${u.quota ? " of your quota" : ""}.`];
      for (const g of u.groups || []) parts.push(`Group ${g.group}: ${usageText(g.archives, g.bytes, g.quota)}.`);
      $("usage").textContent = parts.join(" ");
    } catch (e) {
      $("usage").textContent = "";
    }
  }

  let deleting = null;

  function askDelete(a) {
    deleting = a;
    $("delete-name").textContent = a.image;
    $("delete-path").textContent = a.path;
    $("delete-dialog").returnValue = "";
    $("delete-dialog").showModal();
    $("delete-cancel").focus();
  }

  $("delete-dialog").addEventListener("close", async () => {
    const a = deleting;
    deleting = null;
    if (!a || $("delete-dialog").returnValue !== "delete") return;
    try {
      await call("POST", "api/archives/remove", { paths: [a.path] });
      say(`Deleted ${a.image}.`, "ok");
    } catch (e) {
      say(`Cannot delete ${a.image}: ${e.message}`, "error");
    }
    loadImages().catch(() => {});
  });

  async function copy(code, text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // Not a secure context, or no permission: select it for Ctrl+C.
      const r = document.createRange();
      r.selectNodeContents(code);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      say("Selected: press Ctrl+C to copy.");
      return;
    }
    say("Copied the restore command.", "ok");
  }

  // --- views, sign-in, polling ---------------------------------------------------------
  function view() {
    return location.hash === "#images" ? "images" : "sessions";
  }

  async function show() {
    const v = view();
    say("");
    $("view-sessions").hidden = v !== "sessions";
    $("view-images").hidden = v !== "images";
    for (const name of ["sessions", "images"]) {
      const a = $(`nav-${name}`);
      if (name === v) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = v === "images" ? "baicommit: frozen images" : "baicommit: your sessions";
    try {
      if (v === "images") await loadImages();
      else await loadSessions();
    } catch (e) {
      if (e.status === 401) signedOut(e.message);
      else say(e.message, "error");
    }
  }

  function signedOut(why) {
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
    state.me = null;
    $("view-sessions").hidden = true;
    $("view-images").hidden = true;
    $("signout").hidden = true;
    $("who").textContent = "";
    $("signed-out-why").textContent = why || "You are not signed in.";
    $("signed-out").hidden = false;
    say("");
  }

  async function start() {
    try {
      const { data } = await call("GET", "api/me");
      state.me = data;
    } catch (e) {
      signedOut(e.status === 401 ? e.message : `The manager cannot be reached: ${e.message}`);
      return;
    }
    $("who").textContent = `Signed in as ${state.me.user}`;
    $("signout").hidden = state.me.via !== "link";
    $("signed-out").hidden = true;
    window.addEventListener("hashchange", show);
    await show();
    // Polls pause in a hidden tab; a session that ended shows as such.
    const tick = (f) => () => {
      if (document.hidden || !state.me) return;
      f().catch((e) => { if (e.status === 401) signedOut(e.message); });
    };
    state.timers.push(setInterval(tick(pollRunning), TASKS_EVERY_MS));
    state.timers.push(setInterval(tick(async () => { if (view() === "sessions") await loadSessions(); }), SESSIONS_EVERY_MS));
  }

  $("signout").addEventListener("click", async () => {
    try { await call("POST", "api/logout"); } catch (_) { /* signed out either way */ }
    signedOut("You signed out.");
  });

  start();
})();
