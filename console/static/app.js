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

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function label(table, code) {
    return LABELS[table][code] || [String(code), ""];
  }

  // "中文 English" with the English part smaller.
  function bilingual(pair) {
    const span = el("span", "bi", pair[0]);
    if (pair[1] && pair[1] !== pair[0]) span.append(" ", el("span", "en", pair[1]));
    return span;
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

  async function fetchJSON(url, options) {
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const reason = data && data.error ? data.error : response.statusText;
      const error = new Error(reason);
      error.status = response.status;
      throw error;
    }
    return data;
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
    button.addEventListener("click", () => act(alert.id, action));
    return button;
  }

  function alertRow(alert) {
    const row = el("tr", "alert sev-" + alert.severity);
    row.dataset.alertId = String(alert.id);

    const level = cell(row, "level", el("span", "swatch"), bilingual(label("severity", alert.severity)));
    if (alert.drill) level.append(el("span", "drill", "演练 Drill"));

    const hazard = cell(row, "hazard", bilingual(label("hazard", alert.hazard)));
    if (alert.message) hazard.append(el("div", "detail", alert.message));

    const place = cell(row, "place", el("div", "place-text", alert.location.text || alert.device_id));
    place.append(el("div", "detail", alert.site + " · " + alert.device_id));

    cell(row, "value", formatValue(alert));
    cell(row, "status status-" + alert.status, bilingual(label("status", alert.status)));

    const opened = Date.parse(alert.opened_at);
    const since = cell(row, "since", formatDuration((Date.now() - opened) / 1000));
    durationCells.push([since, opened]);

    cell(row, "actions",
      actionButton(alert, "ack", ["确认", "Acknowledge"], CAN_ACK.has(alert.status)),
      actionButton(alert, "resolve", ["处置完成", "Resolve"], !ENDED.has(alert.status)));
    return row;
  }

  function renderAlerts() {
    const list = sortedAlerts();
    durationCells = [];
    $("alert-rows").replaceChildren(...list.map(alertRow));
    $("alert-count").textContent = String(list.length);
    $("no-alerts").hidden = list.length > 0;
    document.title = (list.length ? "(" + list.length + ") " : "") + "守望 · 社区应急值班台";
  }

  function tick() {
    const now = Date.now();
    for (const [td, opened] of durationCells) td.textContent = formatDuration((now - opened) / 1000);
    $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  }

  function apply(alert) {
    if (ENDED.has(alert.status)) alerts.delete(alert.id);
    else alerts.set(alert.id, alert);
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
        headers: { "Content-Type": "application/json" },
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
    const name = cell(row, "name", el("div", "device-name", device.name || device.id));
    name.append(el("div", "detail", device.id + " · " + label("deviceType", device.type).join(" ")));
    cell(row, "place", device.location.text || "—");
    cell(row, "status", bilingual(label("device", device.status)));
    const battery = device.battery === null ? "—" : Math.round(device.battery) + "%";
    const low = device.battery !== null && device.battery < LOW_BATTERY;
    cell(row, low ? "battery battery-low" : "battery", battery);
    cell(row, "seen", formatTime(device.last_seen));
    return row;
  }

  async function loadDevices() {
    try {
      const devices = await fetchJSON("/api/devices");
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
      const attention = devices.filter(needsAttention)
        .sort((a, b) => (order[a.status] - order[b.status]) || a.id.localeCompare(b.id));
      $("device-rows").replaceChildren(...attention.map(deviceRow));
      $("no-device-problems").hidden = attention.length > 0;
    } catch (err) {
      showProblem("设备状态加载失败 Could not load devices: " + err.message);
    }
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

  // ---- start ----------------------------------------------------------------------------

  function start() {
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
