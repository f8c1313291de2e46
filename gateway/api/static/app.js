// migw web dashboard: plain JavaScript, no build step, no external code. Every data call
// carries the API token kept in this browser (localStorage), never in a URL. Live values
// come over the LAN API's WebSocket (/api/v1/events), the token offered as a subprotocol.
"use strict";

const TOKEN_KEY = "migw.token";
const STALE_S = 3600;
// a device the page does not list yet speaks on the event stream: its row is added after
// this pause (the devices that join together are fetched together); an id the gateway does
// not know (a forgotten device's last reading) is not asked for again for a while
const NEW_DEVICE_WAIT_MS = 500;
const UNKNOWN_RETRY_MS = 30000;
const app = document.getElementById("app");
const live = document.getElementById("live");
const state = {
  devices: new Map(), ws: null, wsRetry: 0, countdown: null, poll: null, route: "", page: "",
  newIds: new Set(), newTimer: null, unknownIds: new Map(),
};

// ---------------------------------------------------------------- small helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() { return localStorage.getItem(TOKEN_KEY); }

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit",
  });
  if (resp.status === 401) throw new Unauthorized("the token was refused");
  const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new Error(data?.error?.message || resp.statusText);
  return data;
}

function fmtValue(value, unit, metric) {
  let text;
  if (typeof value === "boolean") text = metric === "switch" ? (value ? "on" : "off") : String(value);
  else if (typeof value === "number") text = String(Math.round(value * 100) / 100);
  else text = String(value);
  return unit ? text + " " + unit : text;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, seconds);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function radioText(d) {
  if (d.rssi !== null && d.rssi !== undefined) return d.rssi + " dBm";
  if (d.lqi !== null && d.lqi !== undefined) return "lqi " + d.lqi;
  return "-";
}

function setLive(text) { live.textContent = text; }

// ---------------------------------------------------------------- routing and login

function go(hash) { if (location.hash !== hash) location.hash = hash; else render(); }

async function render() {
  clearInterval(state.countdown);
  clearInterval(state.poll);
  const hash = location.hash || "#/devices";
  state.route = hash;
  state.page = hash.startsWith("#/device/") ? "device" : hash === "#/radios" ? "radios"
    : hash === "#/automations" ? "automations" : "devices";
  document.getElementById("nav").hidden = !token();
  if (!token()) return showLogin("");
  try {
    if (hash.startsWith("#/device/")) await showDevice(decodeURIComponent(hash.slice(9)));
    else if (hash === "#/radios") await showRadios();
    else if (hash === "#/automations") await showAutomations();
    else await showDevices();
    connect();
  } catch (err) {
    if (err instanceof Unauthorized) {
      localStorage.removeItem(TOKEN_KEY);
      disconnect();
      showLogin("The gateway refused this token: check it with `migw token`.");
    } else {
      app.replaceChildren(el("p", { class: "error", role: "alert", text: "Error: " + err.message }));
    }
  }
}

function showLogin(message) {
  state.page = "login";
  document.getElementById("nav").hidden = true;
  const input = el("input", {
    id: "token", type: "password", name: "token", autocomplete: "current-password",
    required: true, "aria-describedby": "token-help",
  });
  const form = el("form", { class: "inline", id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("GET", "/api/v1/status");
    } catch (err) {
      localStorage.removeItem(TOKEN_KEY);
      return showLogin(err instanceof Unauthorized
        ? "The gateway refused this token: check it with `migw token`." : "Error: " + err.message);
    }
    go(state.route.startsWith("#/") && state.route !== "#/login" ? state.route : "#/devices");
  } }, el("label", { for: "token" }, "API token", input), el("button", { type: "submit" }, "Log in"));
  app.replaceChildren(
    el("h1", {}, "Log in"),
    message ? el("p", { class: "error", role: "alert", id: "login-error" }, message) : null,
    form,
    el("p", { id: "token-help", class: "muted" },
      "On the gateway, `migw token` prints the token. It is kept in this browser only."),
  );
  input.focus();
}

// ---------------------------------------------------------------- devices

async function loadDevices() {
  const data = await api("GET", "/api/v1/devices");
  const details = await Promise.all(data.devices.map(
    (d) => api("GET", "/api/v1/devices/" + encodeURIComponent(d.id)).catch(() => d)));
  state.devices = new Map(details.map((d) => [d.id, d]));
  return details;
}

const NOT_VALUES = ["rssi", "linkquality"];  // in their own column

function valueSpan(id, metric, cur) {
  return el("span", { "data-device": id, "data-metric": metric, "data-seq": cur.seq },
    metric + " " + fmtValue(cur.value, cur.unit, metric));
}

function valueSpans(d) {
  const entries = Object.entries(d.state || {}).filter(([m]) => !NOT_VALUES.includes(m));
  return el("span", { class: "values" }, ...entries.map(([metric, cur]) => valueSpan(d.id, metric, cur)));
}

function deviceRow(d) {
  const stale = d.stale;
  return el("tr", { "data-id": d.id, class: stale ? "stale" : null },
    el("td", { "data-label": "Name" }, el("a", { href: "#/device/" + encodeURIComponent(d.id) }, d.name || d.id)),
    el("td", { "data-label": "Room", text: d.room || "-" }),
    el("td", { class: "id", "data-label": "Id", text: d.id }),
    el("td", { "data-label": "Model", text: d.model || "-" }),
    el("td", { "data-label": "Transport", text: d.transport }),
    el("td", { "data-label": "Values" }, valueSpans(d)),
    el("td", { "data-label": "Last seen", "data-seen": d.id },
      age(d.last_seen_age_s) + (stale ? " (stale)" : "")),
    el("td", { "data-label": "Battery", text: d.battery === null || d.battery === undefined ? "-" : d.battery + " %" }),
    el("td", { "data-label": "RSSI/LQI", text: radioText(d) }),
    el("td", { "data-label": "Key", text: d.key_status }),
  );
}

function filterRow(row) {
  const q = (document.getElementById("filter")?.value || "").trim().toLowerCase();
  row.hidden = q !== "" && !row.textContent.toLowerCase().includes(q);
}

async function showDevices() {
  const devices = await loadDevices();
  const search = el("input", { id: "filter", type: "search", placeholder: "name, room, id, model" });
  const tbody = el("tbody", {}, ...devices.map(deviceRow));
  search.addEventListener("input", () => { for (const row of tbody.rows) filterRow(row); });
  const table = el("table", { class: "devices", id: "devices" },
    el("thead", {}, el("tr", {}, ...["Name", "Room", "Id", "Model", "Transport", "Values",
      "Last seen", "Battery", "RSSI/LQI", "Key"].map((h) => el("th", { scope: "col", text: h })))),
    tbody);
  const seen = await api("GET", "/api/v1/ble/seen").catch(() => ({ seen: [] }));
  app.replaceChildren(
    el("h1", {}, "Devices ", el("span", { class: "muted", id: "device-count", text: "(" + devices.length + ")" })),
    el("label", { for: "filter" }, "Filter", search),
    table,
    seenSection(seen.seen || []),
  );
}

function seenSection(strangers) {
  if (!strangers.length) return null;
  return el("section", { id: "seen" },
    el("h2", {}, "Seen, not added (BLE devices in range)"),
    el("table", {}, el("tbody", {}, ...strangers.map((s) => el("tr", { "data-stranger": s.id },
      el("td", { class: "id", text: s.id }),
      el("td", { text: s.model || "-" }),
      el("td", { text: s.rssi === null ? "-" : s.rssi + " dBm" }),
      el("td", { text: age(s.last_seen_age_s) }),
      el("td", {}, el("button", { type: "button", onclick: async () => {
        await api("POST", "/api/v1/ble/allow", { id: s.id });
        render();
      } }, "Add")))))));
}

// ---------------------------------------------------------------- one device

function chart(points, unit) {
  const w = 600, h = 160, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  const nums = points.filter((p) => typeof p.value === "number" || typeof p.value === "boolean")
    .map((p) => ({ t: p.ts, v: Number(p.value) }));
  if (nums.length < 1) return svg;
  const t0 = nums[0].t, t1 = nums[nums.length - 1].t || t0 + 1;
  let v0 = Math.min(...nums.map((p) => p.v)), v1 = Math.max(...nums.map((p) => p.v));
  if (v0 === v1) { v0 -= 1; v1 += 1; }
  const x = (t) => pad + ((t - t0) / Math.max(1e-9, t1 - t0)) * (w - 2 * pad);
  const y = (v) => h - pad - ((v - v0) / (v1 - v0)) * (h - 2 * pad);
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", nums.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "));
  svg.append(line);
  for (const [v, yy] of [[v1, pad], [v0, h - pad]]) {
    const label = document.createElementNS(svg.namespaceURI, "text");
    label.setAttribute("x", "2");
    label.setAttribute("y", String(yy));
    label.textContent = fmtValue(Math.round(v * 100) / 100, unit, "");
    svg.append(label);
  }
  const title = document.createElementNS(svg.namespaceURI, "title");
  title.textContent = `${nums.length} readings`;
  svg.append(title);
  svg.setAttribute("data-points", String(nums.length));
  return svg;
}

async function showDevice(id) {
  const d = await api("GET", "/api/v1/devices/" + encodeURIComponent(id));
  state.devices.set(d.id, d);
  const hist = await api("GET", `/api/v1/devices/${encodeURIComponent(id)}/history?limit=500`);
  const byMetric = new Map();
  for (const r of hist.readings) {
    if (!byMetric.has(r.metric)) byMetric.set(r.metric, []);
    byMetric.get(r.metric).push(r);
  }
  const facts = el("dl", {},
    el("dt", {}, "Id"), el("dd", { class: "id", text: d.id }),
    el("dt", {}, "Model"), el("dd", { text: [d.manufacturer, d.model].filter(Boolean).join(" ") || "-" }),
    el("dt", {}, "Status"), el("dd", { text: d.status + (d.stale ? " (stale)" : "") }),
    el("dt", {}, "Last seen"), el("dd", { "data-seen": d.id, text: age(d.last_seen_age_s) }),
    el("dt", {}, "Battery"), el("dd", { text: d.battery === null ? "-" : d.battery + " %" }),
    el("dt", {}, "RSSI/LQI"), el("dd", { text: radioText(d) }),
    el("dt", {}, "Key"), el("dd", { text: d.key_status }));
  const current = el("table", { id: "values" }, el("tbody", {}, ...Object.entries(d.state || {}).map(
    ([metric, cur]) => el("tr", {}, el("th", { scope: "row", text: metric }),
      el("td", { "data-device": d.id, "data-metric": metric, "data-seq": cur.seq },
        metric + " " + fmtValue(cur.value, cur.unit, metric))))));
  const charts = el("section", { id: "charts" }, el("h2", {}, "History"),
    ...[...byMetric.entries()].map(([metric, points]) => el("figure", { "data-metric": metric },
      el("figcaption", { text: metric }), chart(points, d.state?.[metric]?.unit))));
  const evs = await api("GET", `/api/v1/devices/${encodeURIComponent(id)}/events`);
  const events = el("ol", { id: "events", reversed: true, "data-device": d.id },
    ...evs.events.slice().reverse().map(eventItem));
  const recent = el("ol", { id: "recent", reversed: true }, ...hist.readings.slice(-10).reverse().map(
    (r) => el("li", {}, new Date(r.ts * 1000).toLocaleTimeString() + " " + r.metric + " = "
      + fmtValue(r.value, d.state?.[r.metric]?.unit, r.metric))));
  app.replaceChildren(
    el("p", {}, el("a", { href: "#/devices" }, "← Devices")),
    el("h1", {}, d.name || d.id, d.room ? el("span", { class: "muted", text: " · " + d.room }) : null),
    facts, el("h2", {}, "Current values"), current,
    commandSection(d), renameForm(d), charts,
    el("h2", {}, "Last events"), evs.events.length ? null : el("p", { id: "no-events", class: "muted" }, "None since the service started."),
    events, el("h2", {}, "Last readings"), recent);
}

function eventItem(e) {
  return el("li", {}, new Date(e.ts * 1000).toLocaleTimeString() + " " + e.event + ": " + e.action
    + (e.button !== null && e.button !== undefined ? " (button " + e.button + ")" : ""));
}

function commandSection(d) {
  if (!("switch" in (d.state || {}))) return null;
  const result = el("p", { id: "command-result", role: "status" });
  const send = (body) => async () => {
    result.textContent = "…";
    try {
      const r = await api("POST", `/api/v1/devices/${encodeURIComponent(d.id)}/commands`, body);
      result.textContent = `${r.command}: ${r.status}`;
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      result.textContent = "failed: " + err.message;
    }
  };
  return el("section", {}, el("h2", {}, "Commands"),
    el("div", { class: "commands" },
      el("button", { type: "button", id: "cmd-on", onclick: send({ command: "on" }) }, "On"),
      el("button", { type: "button", id: "cmd-off", onclick: send({ command: "off" }) }, "Off"),
      el("button", { type: "button", id: "cmd-toggle", onclick: send({ command: "toggle" }) }, "Toggle"),
      el("button", { type: "button", id: "cmd-pulse", onclick: send({ command: "pulse", seconds: 2 }) }, "Pulse 2 s")),
    result);
}

function renameForm(d) {
  const name = el("input", { id: "rename-name", value: d.name || "", maxlength: 64 });
  const room = el("input", { id: "rename-room", value: d.room || "", maxlength: 64 });
  const msg = el("span", { role: "status" });
  return el("section", {}, el("h2", {}, "Name"),
    el("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", `/api/v1/devices/${encodeURIComponent(d.id)}/name`,
          { name: name.value, room: room.value });
        render();
      } catch (err) { msg.textContent = "failed: " + err.message; }
    } }, el("label", { for: "rename-name" }, "Name", name),
    el("label", { for: "rename-room" }, "Room", room),
    el("button", { type: "submit" }, "Save"), msg));
}

// ---------------------------------------------------------------- radios and uplink

async function showRadios() {
  const s = await api("GET", "/api/v1/status");
  const zigbee = s.radios.find((r) => r.name === "zigbee");
  const rows = s.radios.map((r) => el("tr", {},
    el("th", { scope: "row", text: r.name }),
    el("td", {}, el("span", { class: "badge " + (r.health === "ok" ? "ok" : "bad"), text: r.health })),
    el("td", { text: r.state }),
    el("td", { text: r.reason || "" }),
    el("td", { text: Object.entries(r.info || {}).map(([k, v]) => k + "=" + v).join(", ") })));
  const countdown = el("span", { id: "permit-countdown", role: "status", "aria-live": "polite" });
  const permit = zigbee ? el("section", {}, el("h2", {}, "Zigbee"),
    el("button", { type: "button", id: "permit-join", onclick: async () => {
      const r = await api("POST", "/api/v1/zigbee/permit-join", { seconds: 60 });
      let left = r.seconds;
      const tick = () => {
        countdown.textContent = left > 0 ? `open for new devices: ${left} s` : "closed";
        left -= 1;
        if (left < 0) clearInterval(state.countdown);
      };
      clearInterval(state.countdown);
      tick();
      state.countdown = setInterval(tick, 1000);
    } }, "Permit join (60 s)"), " ", countdown) : null;
  const ob = s.outbox;
  const uplink = el("p", { id: "uplink", role: "status" }, uplinkText(s.upstream, ob, null));
  let prev = { depth: ob.depth, t: Date.now() };
  state.poll = setInterval(async () => {
    try {
      const o = await api("GET", "/api/v1/outbox");
      const now = Date.now();
      const rate = (prev.depth - o.depth) / Math.max(0.001, (now - prev.t) / 1000);
      prev = { depth: o.depth, t: now };
      uplink.textContent = uplinkText(o.upstream, o, rate);
    } catch (err) {
      if (err instanceof Unauthorized) { clearInterval(state.poll); render(); }
    }
  }, 2000);
  app.replaceChildren(
    el("h1", {}, "Radios and uplink"),
    el("p", { id: "service" }, `Service ${s.service.state}, ${s.service.status}, version ${s.service.version}`),
    el("table", { id: "radios" }, el("thead", {}, el("tr", {}, ...["Part", "Health", "State", "Reason", "Info"]
      .map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, ...rows)),
    permit,
    el("h2", {}, "Uplink"),
    uplink,
    el("h2", {}, "Clock and disk"),
    el("p", {}, "Clock " + (s.clock.synchronized ? "synchronised" : "NOT synchronised (check NTP)")
      + ". Disk: " + (s.disk.free_bytes !== undefined ? Math.round(s.disk.free_bytes / 1048576) + " MiB free" : s.disk.error)));
}

function uplinkText(upstream, ob, rate) {
  return `Broker: ${upstream}. Outbox: ${ob.depth} waiting (${ob.bytes} bytes)`
    + (ob.oldest_age_s !== null ? `, oldest ${age(ob.oldest_age_s)}` : "")
    + (rate !== null && rate > 0 ? `, draining ${Math.round(rate)}/s` : "") + ".";
}

// ---------------------------------------------------------------- automations

function traceView(t) {
  if (!t) return el("p", { class: "muted" }, "No run recorded yet.");
  return el("div", { class: "trace" },
    el("p", {}, `Run ${t.run} at ${new Date(t.at * 1000).toLocaleString()}: ${t.trigger} → ${t.outcome}`),
    el("ul", {},
      ...(t.conditions || []).map((c) => el("li", {}, `condition ${c.condition}: ${c.result}`)),
      ...(t.actions || []).map((a) => el("li", {}, `action ${a.action}: ${a.result}`))));
}

async function showAutomations() {
  let data;
  try {
    data = await api("GET", "/api/v1/automations");
  } catch (err) {
    if (err instanceof Unauthorized) throw err;
    app.replaceChildren(el("h1", {}, "Automations"), el("p", { class: "muted", text: err.message }));
    return;
  }
  const rows = data.automations.map((a) => {
    const traceCell = el("td", { class: "trace-cell" });
    return el("tr", { "data-automation": a.id },
      el("th", { scope: "row" }, a.name || a.id, el("br"), el("code", { text: a.id })),
      el("td", {}, el("span", { class: "badge " + (a.enabled ? "ok" : "bad"), text: a.enabled ? "enabled" : "disabled" })),
      el("td", { text: a.last_fired ? age(Date.now() / 1000 - a.last_fired) + ": " + (a.last_trigger || "") : "never" }),
      el("td", {},
        el("button", { type: "button", class: "toggle-automation", onclick: async () => {
          await api("POST", `/api/v1/automations/${encodeURIComponent(a.id)}/enable`, { enabled: !a.enabled });
          render();
        } }, a.enabled ? "Disable" : "Enable"), " ",
        el("button", { type: "button", class: "show-trace", onclick: async () => {
          const t = await api("GET", `/api/v1/automations/${encodeURIComponent(a.id)}/traces?limit=1`);
          traceCell.replaceChildren(traceView(t.traces[t.traces.length - 1]));
        } }, "Last trace")),
      traceCell);
  });
  app.replaceChildren(el("h1", {}, "Automations"),
    el("table", { id: "automations" }, el("thead", {}, el("tr", {}, ...["Automation", "State",
      "Last fired", "", "Trace"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, ...rows)));
}

// ---------------------------------------------------------------- live values

function onReading(msg) {
  const d = state.devices.get(msg.device);
  if (d) {
    d.state = d.state || {};
    d.state[msg.metric] = { value: msg.value, unit: msg.unit, ts: msg.ts, seq: msg.seq };
  }
  const nodes = document.querySelectorAll(`[data-device="${CSS.escape(msg.device)}"][data-metric="${CSS.escape(msg.metric)}"]`);
  for (const node of nodes) {
    node.textContent = msg.metric + " " + fmtValue(msg.value, msg.unit, msg.metric);
    node.setAttribute("data-seq", String(msg.seq));
  }
  if (!nodes.length && !NOT_VALUES.includes(msg.metric)) {  // a metric its row does not show yet
    document.querySelector(`#devices tr[data-id="${CSS.escape(msg.device)}"] .values`)
      ?.append(valueSpan(msg.device, msg.metric, msg));
  }
  for (const node of document.querySelectorAll(`[data-seen="${CSS.escape(msg.device)}"]`)) {
    node.textContent = "just now";
    node.closest("tr.stale")?.classList.remove("stale");
  }
}

// A device that joined after the devices page loaded (a Zigbee pairing, a BLE sensor let in,
// a first advert) shows up on the event stream before the page knows it: its row is added
// there and then, in its place in the list, as a live dashboard does (no reload). The list
// is asked again (not the id itself: an id that is no device, such as a forgotten device's
// last reading, is no error), then the new devices' values.
function noteDevice(msg) {
  const id = msg.device;
  if (typeof id !== "string" || msg.source === "automations") return;  // automation-<id>: no device
  if (state.page !== "devices" || state.devices.has(id) || state.newIds.has(id)) return;
  const asked = state.unknownIds.get(id);
  if (asked !== undefined && Date.now() - asked < UNKNOWN_RETRY_MS) return;
  state.newIds.add(id);
  if (state.newTimer === null) state.newTimer = setTimeout(addNewDevices, NEW_DEVICE_WAIT_MS);
}

async function addNewDevices() {
  state.newTimer = null;
  if (state.page !== "devices") { state.newIds.clear(); return; }
  if (!document.querySelector("#devices tbody")) {  // the list is still loading
    state.newTimer = setTimeout(addNewDevices, NEW_DEVICE_WAIT_MS);
    return;
  }
  // noted while the list loaded: those it holds need no call
  for (const id of state.newIds) if (state.devices.has(id)) state.newIds.delete(id);
  if (!state.newIds.size) return;
  const noted = [...state.newIds];
  let added;
  try {
    const listed = (await api("GET", "/api/v1/devices")).devices.filter((d) => !state.devices.has(d.id));
    added = await Promise.all(listed.map((d) => api("GET", "/api/v1/devices/" + encodeURIComponent(d.id))
      .catch((err) => { if (err instanceof Unauthorized) throw err; return d; })));
  } catch (err) {
    for (const id of noted) state.newIds.delete(id);
    if (err instanceof Unauthorized) render();  // the login page
    return;
  }
  for (const id of noted) state.newIds.delete(id);
  if (state.unknownIds.size > 1000) state.unknownIds.clear();
  for (const id of noted) if (!added.some((d) => d.id === id)) state.unknownIds.set(id, Date.now());
  const tbody = document.querySelector("#devices tbody");
  if (!tbody || state.page !== "devices") return;
  for (const d of added) {
    if (state.devices.has(d.id)) continue;
    state.unknownIds.delete(d.id);
    state.devices.set(d.id, d);
    const row = deviceRow(d);
    filterRow(row);
    tbody.insertBefore(row, [...tbody.rows].find((r) => r.getAttribute("data-id") > d.id) || null);
    document.querySelector(`#seen [data-stranger="${CSS.escape(d.id)}"]`)?.remove();
  }
  document.getElementById("device-count").textContent = "(" + tbody.rows.length + ")";
}

function connect() {
  if (state.ws) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/events`, ["migw", "migw.bearer." + token()]);
  state.ws = ws;
  ws.addEventListener("open", () => { state.wsRetry = 0; setLive("live"); });
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(ev.data);
    noteDevice(msg);
    if (msg.type === "reading") onReading(msg);
    if (msg.type === "event") {
      const list = document.querySelector(`#events[data-device="${CSS.escape(msg.device)}"]`);
      if (list) { list.prepend(eventItem(msg)); document.getElementById("no-events")?.remove(); }
    }
  });
  ws.addEventListener("close", () => {
    state.ws = null;
    if (!token()) return;
    setLive("reconnecting…");
    const delay = Math.min(30000, 500 * 2 ** state.wsRetry++);
    setTimeout(() => { if (token()) connect(); }, delay);
  });
}

function disconnect() {
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  setLive("");
}

document.getElementById("logout").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  disconnect();
  go("#/login");
});
window.addEventListener("hashchange", render);
// a one-time login link (`migw token --link`): its code (in the fragment, which a browser
// never sends) is traded once for the token, then removed from the address bar
async function start() {
  if (location.hash.startsWith("#code=")) {
    const code = decodeURIComponent(location.hash.slice(6));
    history.replaceState(null, "", location.pathname + "#/devices");
    const resp = await fetch("/api/v1/login", {
      method: "POST", body: JSON.stringify({ code }), cache: "no-store", credentials: "omit",
      headers: { "Content-Type": "application/json" },
    });
    if (resp.ok) localStorage.setItem(TOKEN_KEY, (await resp.json()).token);
    else return showLogin("This login link is used up or expired: `migw token --link` makes a new one.");
  }
  render();
}
start();
