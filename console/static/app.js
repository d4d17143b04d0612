// Shouwang duty console: live alerts, device health and sent messages.
// Plain JS, no build step. Every piece of data is inserted with textContent, never as HTML:
// device names, messages and notes come from the field and may contain markup.
"use strict";

(function () {
  const DEVICE_REFRESH_MS = 10000;
  const NOTIFICATION_REFRESH_MS = 10000;
  const NOTIFICATION_LIMIT = 30;
  const LOW_BATTERY = 20;           // percent
  const RECONNECT_MS = 5000;        // after the server refused the stream outright
  const ENDED = new Set(["resolved", "expired"]);
  const CAN_ACK = new Set(["open", "escalated"]);

  // [Chinese, English] pairs; an unknown code is shown as it is.
  const LABELS = {
    severity: {
      red: ["红色", "Red"], orange: ["橙色", "Orange"],
      yellow: ["黄色", "Yellow"], blue: ["蓝色", "Blue"],
    },
    status: {
      open: ["待处理", "Open"], acknowledged: ["已确认", "Acknowledged"],
      escalated: ["已升级", "Escalated"], suppressed: ["已抑制", "Suppressed"],
      resolved: ["已处置", "Resolved"], expired: ["已过期", "Expired"],
    },
    hazard: {
      gas: ["可燃气体泄漏", "Gas leak"], co: ["一氧化碳", "Carbon monoxide"],
      smoke: ["烟雾火情", "Smoke"], heat: ["温度过高", "Heat"],
      flood: ["水浸", "Flooding"], electrical_leak: ["电气漏电", "Residual current"],
      overheat: ["线缆过热", "Cable overheating"],
      heart_rate_high: ["心率过高", "High heart rate"],
      heart_rate_low: ["心率过低", "Low heart rate"],
      fall: ["跌倒", "Fall"], sos: ["紧急呼救", "SOS"], inactivity: ["长时间无活动", "Inactivity"],
      offline: ["设备离线", "Device offline"], tamper: ["设备被拆", "Tamper"],
      siren: ["声光报警", "Siren"], low_battery: ["电量低", "Low battery"],
    },
    device: {
      online: ["在线", "Online"], offline: ["离线", "Offline"], unknown: ["未上报", "Never seen"],
    },
    deviceType: {
      gas: ["燃气探测器", "gas detector"], smoke: ["烟感", "smoke detector"],
      water: ["水位计", "water level"], electrical: ["电气火灾监测", "electrical monitor"],
      wearable: ["手环", "wearable"],
    },
    channel: {
      sms: ["短信", "SMS"], broadcast: ["广播", "Broadcast"], wecom: ["企业微信", "WeCom"],
      dingtalk: ["钉钉", "DingTalk"], feishu: ["飞书", "Feishu"], email: ["邮件", "Email"],
      webhook: ["Webhook", "Webhook"],
    },
    delivery: {
      sent: ["已送达", "Sent"], pending: ["发送中", "Pending"], failed: ["发送失败", "Failed"],
    },
  };
  const UNITS = {
    gas: "%LEL", co: "ppm", smoke: "%obs/m", heat: "°C", flood: "m", electrical_leak: "mA",
    overheat: "°C", heart_rate_high: "bpm", heart_rate_low: "bpm",
  };

  const alerts = new Map();       // id -> alert as /api/alerts returns it
  const busy = new Set();         // alert ids with an action in flight
  let durationCells = [];         // [cell, opened_at ms] for the ticking "open for" column
  let loadSeq = 0;                // newest /api/alerts load; older answers are ignored
  let buffered = null;            // stream updates that arrive while the list loads
  let notificationTimer = null;
  let lastDevices = [];           // for the site plan

  const $ = (id) => document.getElementById(id);
  const { el, bilingual, fetchJSON } = window.Shouwang;
  const ALARM = new Set(["red", "orange"]);

  function label(table, code) {
    return LABELS[table][code] || [String(code), ""];
  }

  function cell(row, className, ...children) {
    const td = el("td", className);
    for (const child of children) {
      if (child !== null && child !== undefined) {
        td.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    row.append(td);
    return td;
  }

  function showProblem(message) {
    const box = $("problem");
    box.textContent = message;
    box.hidden = false;
  }

  function clearProblem() {
    $("problem").hidden = true;
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const days = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    const clock = (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
    return days ? days + "天 d " + clock : clock;
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const when = new Date(iso);
    const time = when.toLocaleTimeString("zh-CN", { hour12: false });
    if (when.toDateString() === new Date().toDateString()) return time;
    return when.toLocaleDateString("zh-CN") + " " + time;
  }

  function formatValue(alert) {
    if (alert.last_value === null || alert.last_value === undefined) return "—";
    const value = Math.round(alert.last_value * 100) / 100;
    const unit = UNITS[alert.hazard];
    return unit ? value + " " + unit : String(value);
  }

  // ---- alerts ---------------------------------------------------------------------------

  function sortedAlerts() {
    return [...alerts.values()].sort((a, b) =>
      (b.severity_level - a.severity_level) || (Date.parse(b.opened_at) - Date.parse(a.opened_at)));
  }

  function actionButton(alert, action, pair, enabled) {
    const button = el("button", "act act-" + action);
    button.type = "button";
    button.append(bilingual(pair));
    button.disabled = !enabled || busy.has(alert.id);
    button.hidden = !window.Shouwang.canAct();
    button.addEventListener("click", () => act(alert.id, action));
    return button;
  }

  function alertRow(alert) {
    const row = el("tr", "alert sev-" + alert.severity);
    row.dataset.alertId = String(alert.id);
    row.dataset.deviceId = alert.device_id;

    const level = cell(row, "level", el("span", "swatch"), bilingual(label("severity", alert.severity)));
    if (alert.drill) level.append(el("span", "drill", "演练 Drill"));

    const hazard = cell(row, "hazard", bilingual(label("hazard", alert.hazard)));
    if (alert.message) hazard.append(el("div", "detail", alert.message));

    const place = cell(row, "place", el("div", "place-text", alert.location.text || alert.device_id));
    place.append(el("div", "detail", alert.site + " · " + alert.device_id));

    const value = cell(row, "value", formatValue(alert));
    const trend = trends.get(alert.id);
    if (trend) value.append(el("span", "trend trend-" + trend, trend === "up" ? " ▲" : " ▼"));
    cell(row, "status status-" + alert.status, bilingual(label("status", alert.status)));

    const opened = Date.parse(alert.opened_at);
    const since = cell(row, "since", formatDuration((Date.now() - opened) / 1000));
    durationCells.push([since, opened]);

    const history = el("button", "act act-history");
    history.type = "button";
    history.append(bilingual(["记录", "History"]));
    history.addEventListener("click", () => showHistory(alert.id));
    cell(row, "actions",
      actionButton(alert, "ack", ["确认", "Acknowledge"], CAN_ACK.has(alert.status)),
      actionButton(alert, "resolve", ["处置完成", "Resolve"], !ENDED.has(alert.status)),
      history);
    return row;
  }

  function renderAlerts() {
    const list = sortedAlerts();
    durationCells = [];
    $("alert-rows").replaceChildren(...list.map(alertRow));
    $("alert-count").textContent = String(list.length);
    $("no-alerts").hidden = list.length > 0;
    document.title = (list.length ? "(" + list.length + ") " : "") + "守望 · 社区应急值班台";
    renderPlan();
  }

  function tick() {
    const now = Date.now();
    for (const [td, opened] of durationCells) td.textContent = formatDuration((now - opened) / 1000);
    $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  }

  // Rising or falling since the previous value this page saw for the alert.
  const trends = new Map();        // alert id -> "up" | "down"

  function apply(alert) {
    const before = alerts.get(alert.id);
    if (before && before.last_value !== null && alert.last_value !== null &&
        before.last_value !== alert.last_value) {
      trends.set(alert.id, alert.last_value > before.last_value ? "up" : "down");
    }
    if (ENDED.has(alert.status)) {
      alerts.delete(alert.id);
      trends.delete(alert.id);
    } else {
      alerts.set(alert.id, alert);
    }
  }

  async function loadAlerts() {
    const seq = ++loadSeq;
    buffered = [];
    try {
      const list = await fetchJSON("/api/alerts?status=live");
      if (seq !== loadSeq) return;
      alerts.clear();
      for (const alert of list) apply(alert);
      // Updates that came while loading are at least as new as the list: replay them.
      for (const alert of buffered) apply(alert);
      buffered = null;
      renderAlerts();
      clearProblem();
    } catch (err) {
      if (seq !== loadSeq) return;
      buffered = null;
      showProblem("警报列表加载失败 Could not load alerts: " + err.message);
    }
  }

  async function act(id, action) {
    busy.add(id);
    renderAlerts();
    try {
      const alert = await fetchJSON("/api/alerts/" + id + "/" + action, {
        method: "POST",
        body: JSON.stringify({}),
      });
      apply(alert);
      clearProblem();
      scheduleNotifications();
    } catch (err) {
      showProblem("操作未完成 Not done: " + err.message);
      if (err.status === 409 || err.status === 404) {
        try {
          apply(await fetchJSON("/api/alerts/" + id));
        } catch (again) {
          if (again.status === 404) alerts.delete(id);
        }
      }
    } finally {
      busy.delete(id);
      renderAlerts();
    }
  }

  function setLink(up) {
    const link = $("link");
    link.className = "link " + (up ? "link-up" : "link-down");
    link.replaceChildren(bilingual(up ? ["实时连接", "live"] : ["重新连接中…", "reconnecting…"]));
  }

  function connect() {
    const source = new EventSource("/api/stream");
    source.addEventListener("open", () => {
      setLink(true);
      loadAlerts();   // after subscribing, so nothing falls between the list and the stream
    });
    source.addEventListener("alert", (event) => {
      let alert;
      try {
        alert = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      const before = alerts.get(alert.id);
      const alarming = ALARM.has(alert.severity) && CAN_ACK.has(alert.status) &&
        (!before || before.severity_level < alert.severity_level || !CAN_ACK.has(before.status));
      if (alarming) window.Shouwang.beep(alert.severity);
      if (buffered) {
        buffered.push(alert);
      } else {
        apply(alert);
        renderAlerts();
      }
      scheduleNotifications();
    });
    source.addEventListener("resync", () => loadAlerts());
    source.addEventListener("error", () => {
      setLink(false);
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, RECONNECT_MS);
      }
    });
  }

  // ---- devices --------------------------------------------------------------------------

  function needsAttention(device) {
    return device.status !== "online" || (device.battery !== null && device.battery < LOW_BATTERY);
  }

  function deviceRow(device) {
    const row = el("tr", "device device-" + device.status);
    row.dataset.deviceId = device.id;
    const open = el("button", "device-name link-button", device.name || device.id);
    open.type = "button";
    open.addEventListener("click", () =>
      location.assign("/device?id=" + encodeURIComponent(device.id)));
    const name = cell(row, "name", open);
    name.append(el("div", "detail", device.id + " · " + window.Shouwang.text(label("deviceType", device.type))));
    cell(row, "place", device.location.text || "—");
    cell(row, "status", bilingual(label("device", device.status)));
    const battery = device.battery === null ? "—" : Math.round(device.battery) + "%";
    const low = device.battery !== null && device.battery < LOW_BATTERY;
    cell(row, low ? "battery battery-low" : "battery", battery);
    cell(row, "seen", formatTime(device.last_seen));
    return row;
  }

  // The list asks the server to filter; "needs attention" is the page's own shortcut.
  function deviceQuery() {
    const params = new URLSearchParams();
    for (const [key, id] of [["type", "filter-type"], ["battery_below", "filter-battery"],
                             ["silent_s", "filter-silent"]]) {
      if ($(id).value) params.set(key, $(id).value);
    }
    const status = $("filter-status").value;
    if (status && status !== "attention") params.set("status", status);
    return params.toString();
  }

  async function loadDevices() {
    try {
      const query = deviceQuery();
      const [devices, listed] = await Promise.all([
        fetchJSON("/api/devices"),
        query ? fetchJSON("/api/devices?" + query) : null,
      ]);
      lastDevices = devices;
      renderPlan();
      const counts = { online: 0, offline: 0, unknown: 0 };
      let lowBattery = 0;
      for (const device of devices) {
        counts[device.status] = (counts[device.status] || 0) + 1;
        if (device.battery !== null && device.battery < LOW_BATTERY) lowBattery += 1;
      }
      $("n-online").textContent = String(counts.online);
      $("n-offline").textContent = String(counts.offline);
      $("n-unknown").textContent = String(counts.unknown);
      $("n-battery").textContent = String(lowBattery);
      const order = { offline: 0, unknown: 1, online: 2 };
      let shown = listed || devices;
      if ($("filter-status").value === "attention") shown = shown.filter(needsAttention);
      shown = [...shown].sort((a, b) => (order[a.status] - order[b.status]) || a.id.localeCompare(b.id));
      $("device-rows").replaceChildren(...shown.map(deviceRow));
      $("no-device-problems").hidden = shown.length > 0;
    } catch (err) {
      showProblem("设备状态加载失败 Could not load devices: " + err.message);
    }
  }

  // ---- site plan: buildings as columns, floors as rows, devices as dots -------------------
  // Drawn from the registry's building/floor of each device (no map tiles: intranets).

  const SVG_NS = "http://www.w3.org/2000/svg";
  const PLAN = { colW: 170, dot: 7, gap: 18, top: 28, zoom: 1.6 };  // zoom: readable from a desk

  function svgNode(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function floorRank(floor) {
    const n = parseInt(floor, 10);
    return Number.isNaN(n) ? -1000 : n;
  }

  function renderPlan() {
    const plan = $("plan");
    if (!plan) return;
    const worst = new Map();   // device id -> its most severe live alert
    for (const alert of alerts.values()) {
      const known = worst.get(alert.device_id);
      if (!known || known.severity_level < alert.severity_level) worst.set(alert.device_id, alert);
    }
    const sites = new Map();
    for (const device of lastDevices) {
      const site = sites.get(device.site) || new Map();
      sites.set(device.site, site);
      const building = device.location.building || "—";
      const floors = site.get(building) || new Map();
      site.set(building, floors);
      const floor = device.location.floor || "";
      floors.set(floor, [...(floors.get(floor) || []), device]);
    }
    const drawings = [];
    for (const [siteId, buildings] of [...sites].sort((a, b) => a[0].localeCompare(b[0]))) {
      const names = [...buildings.keys()].sort((a, b) => a.localeCompare(b, "zh-CN", { numeric: true }));
      const perRow = Math.floor((PLAN.colW - 40) / (PLAN.dot * 2 + 3));
      const floorHeight = (devices) => Math.ceil(devices.length / perRow) * (PLAN.dot * 2 + 4) + 8;
      const tallest = Math.max(...names.map((name) =>
        [...buildings.get(name).values()].reduce((sum, devices) => sum + floorHeight(devices), 0)));
      const width = names.length * (PLAN.colW + PLAN.gap);
      const height = PLAN.top + tallest + 4;
      const root = svgNode("svg", { viewBox: "0 0 " + width + " " + height,
        width: Math.round(width * PLAN.zoom), height: Math.round(height * PLAN.zoom),
        class: "plan-svg", role: "img" });
      root.append(svgNode("title", {}, siteId));
      names.forEach((name, column) => {
        const floors = [...buildings.get(name)].sort((a, b) => floorRank(b[0]) - floorRank(a[0]));
        const x = column * (PLAN.colW + PLAN.gap);
        const bottom = height - 4;
        const top = bottom - floors.reduce((sum, [, devices]) => sum + floorHeight(devices), 0);
        root.append(svgNode("rect", { x, y: top, width: PLAN.colW, height: bottom - top, class: "plan-building" }));
        root.append(svgNode("text", { x: x + PLAN.colW / 2, y: top - 8, "text-anchor": "middle", class: "plan-label" }, name));
        let y = top;
        floors.forEach(([floor, devices], row) => {
          if (row > 0) root.append(svgNode("line", { x1: x, x2: x + PLAN.colW, y1: y, y2: y, class: "plan-floor" }));
          root.append(svgNode("text", { x: x + 4, y: y + PLAN.dot + 8, class: "plan-floor-label" },
            floor ? floor + (S_LANG_EN() ? "F" : "层") : ""));
          devices.forEach((device, i) => {
            const alert = worst.get(device.id);
            const cx = x + 40 + (i % perRow) * (PLAN.dot * 2 + 3);
            const cy = y + 4 + PLAN.dot + Math.floor(i / perRow) * (PLAN.dot * 2 + 4);
            const dot = svgNode("circle", { cx, cy, r: alert ? PLAN.dot : PLAN.dot - 2,
              class: alert ? "plan-dot plan-alert sev-" + alert.severity : "plan-dot plan-" + device.status });
            dot.dataset.deviceId = device.id;
            dot.append(svgNode("title", {}, (device.name || device.id) + " · " + (device.location.text || "") +
              (alert ? " · " + window.Shouwang.text(label("hazard", alert.hazard)) : "")));
            root.append(dot);
          });
          y += floorHeight(devices);
        });
      });
      const figure = el("figure", "plan-site");
      figure.append(el("figcaption", "", siteId), root);
      drawings.push(figure);
    }
    plan.replaceChildren(...drawings);
  }

  function S_LANG_EN() {
    return window.Shouwang.lang() === "en";
  }

  // ---- notifications --------------------------------------------------------------------

  function notificationRow(note) {
    const row = el("tr", "note note-" + note.status);
    cell(row, "time", formatTime(note.created_at));
    cell(row, "alert-ref", "#" + note.alert_id);
    cell(row, "receiver", note.receiver);
    cell(row, "channel", bilingual(label("channel", note.channel)));
    cell(row, "body", note.body);
    const delivery = cell(row, "delivery", bilingual(label("delivery", note.status)));
    if (note.status === "sent" && note.sent_at) {
      delivery.append(el("div", "detail", formatTime(note.sent_at)));
    } else if (note.attempts > 0) {
      delivery.append(el("div", "detail", "尝试 tries: " + note.attempts));
    }
    if (note.last_error) delivery.append(el("div", "detail error-text", note.last_error));
    return row;
  }

  async function loadNotifications() {
    try {
      const notes = await fetchJSON("/api/notifications?limit=" + NOTIFICATION_LIMIT);
      $("notification-rows").replaceChildren(...notes.map(notificationRow));
      $("no-notifications").hidden = notes.length > 0;
    } catch (err) {
      showProblem("通知记录加载失败 Could not load messages: " + err.message);
    }
  }

  // An alert change usually causes messages shortly after: look again soon, once.
  function scheduleNotifications() {
    if (notificationTimer !== null) return;
    notificationTimer = setTimeout(() => {
      notificationTimer = null;
      loadNotifications();
    }, 1000);
  }

  // ---- one alert's history ---------------------------------------------------------------

  const ACTIONS = {
    opened: ["报警", "Opened"], acknowledged: ["确认", "Acknowledged"],
    escalated: ["升级", "Escalated"], resolved: ["处置完成", "Resolved"],
    expired: ["过期", "Expired"], suppressed: ["抑制", "Suppressed"], updated: ["更新", "Updated"],
  };

  async function showHistory(id) {
    const dialog = $("history");
    try {
      const detail = await fetchJSON("/api/alerts/" + id);
      $("history-title").replaceChildren(
        "#" + detail.id + " ", bilingual(label("hazard", detail.hazard)),
        " · " + (detail.location.text || detail.device_id));
      $("history-rows").replaceChildren(...detail.events.map((event) => {
        const row = el("tr");
        cell(row, "time", formatTime(event.at));
        cell(row, "what", bilingual(ACTIONS[event.action] || [event.action, event.action]));
        cell(row, "actor", event.actor);
        cell(row, "note", event.note || "");
        return row;
      }));
      dialog.showModal();
    } catch (err) {
      showProblem("记录加载失败 Could not load history: " + err.message);
    }
  }

  // ---- start ----------------------------------------------------------------------------

  function rerender() {
    renderAlerts();
    loadDevices();
    loadNotifications();
  }

  async function start() {
    try {
      await window.Shouwang.loadSession();
    } catch (err) {
      return;  // not logged in: fetchJSON is taking the browser to the login page
    }
    window.Shouwang.controls($("controls"), rerender);
    $("history-close").addEventListener("click", () => $("history").close());
    $("device-filters").addEventListener("change", loadDevices);
    renderAlerts();
    tick();
    connect();
    loadDevices();
    loadNotifications();
    setInterval(tick, 1000);
    setInterval(loadDevices, DEVICE_REFRESH_MS);
    setInterval(loadNotifications, NOTIFICATION_REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
