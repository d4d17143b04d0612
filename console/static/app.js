// Shouwang duty console: live alerts, device health and sent messages.
// Plain JS, no build step. Every piece of data is inserted with textContent, never as HTML:
// device names, messages and notes come from the field and may contain markup.
"use strict";

(function () {
  const DEVICE_REFRESH_MS = 10000;
  const NOTIFICATION_REFRESH_MS = 10000;
  const NOTIFICATION_LIMIT = 30;
  const LOW_BATTERY = 20;           // percent
  const DUE_RECHECK_MS = 1500;      // after a step's due time: ask again (reminders are not streamed)
  const ENDED = new Set(["resolved", "expired"]);
  // Shown for a note the server keeps from this role (note_hidden: a wearable's alert).
  const NOTE_HIDDEN = "(备注仅护理人员可见 / note visible to care staff only)";
  const noteText = (item) => (item.note_hidden ? NOTE_HIDDEN : item.note || "");
  const { el, bilingual, fetchJSON, showProblem, clearProblem, formatDuration, CAN_ACK, ALARM } =
    window.Shouwang;

  // [Chinese, English] pairs; an unknown code is shown as it is.
  const LABELS = {
    severity: window.Shouwang.SEVERITY,
    status: window.Shouwang.STATUS,
    group: {
      fire_station: ["微型消防站", "fire station"], duty_officers: ["值班员", "duty officers"],
      public: ["社区广播", "loudspeakers"], building_managers: ["楼栋管理员", "building managers"],
      family_contacts: ["家属", "family"],
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
  let countdownCells = [];        // [cell, due ms, alert id] for the escalation countdowns
  const rechecks = new Set();     // alert ids whose step is due: asked for again once
  const sitePlans = new Map();    // site id -> its configured plan (absent: drawn from devices)
  let loadSeq = 0;                // newest /api/alerts load; older answers are ignored
  let buffered = null;            // stream updates that arrive while the list loads
  let notificationTimer = null;
  let lastDevices = [];           // for the site plan

  const $ = (id) => document.getElementById(id);

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

  // Learned-anomaly alerts (unusual readings, nobody paged) wait behind a toggle: on a
  // large site they would bury the hazards a duty officer must act on.
  function onBoard(alert) {
    return alert.kind !== "anomaly" || $("show-anomalies").checked;
  }

  function sortedAlerts() {
    return [...alerts.values()].filter(onBoard).sort(window.Shouwang.byUrgency);
  }

  function actionButton(alert, action, pair, enabled, onClick) {
    const button = el("button", "act act-" + action);
    button.type = "button";
    button.append(bilingual(pair));
    button.disabled = !enabled || busy.has(alert.id);
    button.hidden = !window.Shouwang.canAct();
    button.addEventListener("click", onClick || (() => act(alert.id, action)));
    return button;
  }

  function groupNames(groups) {
    if (!groups.length) return "—";
    return groups.map((g) => window.Shouwang.text(label("group", g))).join("、");
  }

  // "step 2/3: loudspeakers", then "next 3/3 duty officers in 0:42" while it still counts.
  function escalationCell(row, alert) {
    const td = cell(row, "escalation");
    const esc = alert.escalation;
    if (!esc) {
      td.append("—");
      return;
    }
    const step = el("div", "esc-step");
    step.append(bilingual(["第" + esc.step + "/" + esc.steps + "级", "step " + esc.step + "/" + esc.steps]),
      ": " + groupNames(esc.groups));
    td.append(step);
    const next = esc.next;
    if (!next) return;
    const due = Date.parse(next.due_at);
    const line = el("div", "esc-next");
    const what = next.reminder ?
      ["提醒 " + next.number + "/" + next.of, "reminder " + next.number + "/" + next.of] :
      ["下一级 " + next.number + "/" + next.of, "next " + next.number + "/" + next.of];
    const countdown = el("span", "countdown", formatDuration((due - Date.now()) / 1000));
    line.append(bilingual(what), " ", countdown, " → " + groupNames(next.groups));
    td.append(line);
    countdownCells.push([countdown, due, alert.id]);
  }

  function alertRow(alert) {
    const row = el("tr", "alert sev-" + alert.severity);
    row.dataset.alertId = String(alert.id);
    row.dataset.deviceId = alert.device_id;

    const level = cell(row, "level", el("span", "swatch"), bilingual(label("severity", alert.severity)));
    if (alert.drill) level.append(el("span", "drill", "演练 Drill"));

    const hazard = cell(row, "hazard", bilingual(window.Shouwang.hazardName(alert)));
    if (alert.message) hazard.append(el("div", "detail", alert.message));

    const place = cell(row, "place", el("div", "place-text", alert.location.text || alert.device_id));
    place.append(el("div", "detail", alert.site + " · " + alert.device_id));

    const value = cell(row, "value", formatValue(alert));
    const trend = trends.get(alert.id);
    if (trend) value.append(el("span", "trend trend-" + trend, trend === "up" ? " ▲" : " ▼"));
    const status = cell(row, "status status-" + alert.status, bilingual(label("status", alert.status)));
    if (alert.assignment) {
      const who = el("div", "assignee");
      who.append(bilingual(["指派: ", "Assigned: "]), alert.assignment.assignee);
      if (noteText(alert.assignment)) who.title = noteText(alert.assignment);
      status.append(who);
    }
    escalationCell(row, alert);

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
      actionButton(alert, "assign", ["指派", "Assign"], !ENDED.has(alert.status),
        () => openAssign(alert.id)),
      history);
    return row;
  }

  function renderAlerts() {
    const list = sortedAlerts();
    durationCells = [];
    countdownCells = [];
    $("alert-rows").replaceChildren(...list.map(alertRow));
    $("alert-count").textContent = String(list.length);
    $("anomaly-count").textContent =
      String([...alerts.values()].filter((a) => a.kind === "anomaly").length);
    $("no-alerts").hidden = list.length > 0;
    document.title = (list.length ? "(" + list.length + ") " : "") + "守望 · 社区应急值班台";
    renderPlan();
  }

  function tick() {
    const now = Date.now();
    for (const [td, opened] of durationCells) td.textContent = formatDuration((now - opened) / 1000);
    for (const [span, due, id] of countdownCells) {
      span.textContent = formatDuration((due - now) / 1000);
      span.classList.toggle("countdown-due", due <= now);
      if (due + DUE_RECHECK_MS <= now && !rechecks.has(id)) recheck(id);
    }
    $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  }

  // Rising or falling since the previous value this page saw for the alert.
  const trends = new Map();        // alert id -> "up" | "down"

  // Asked once per due step: a step that fired comes on the stream, a reminder does not.
  async function recheck(id) {
    rechecks.add(id);
    try {
      apply(await fetchJSON("/api/alerts/" + id));
      renderAlerts();
    } catch (err) {
      if (err.status === 404) alerts.delete(id);
    }
  }

  function apply(alert) {
    const before = alerts.get(alert.id);
    // A live update may come without the board's notes (they could not be read): keep ours.
    for (const key of ["assignment", "escalation"]) {
      if (!(key in alert) && before) alert[key] = before[key];
    }
    const beforeDue = before && before.escalation && before.escalation.next ? before.escalation.next.due_at : null;
    const afterDue = alert.escalation && alert.escalation.next ? alert.escalation.next.due_at : null;
    if (beforeDue !== afterDue) rechecks.delete(alert.id);
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

  function onAlert(alert) {
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
  }

  function connect() {
    window.Shouwang.liveAlerts({ open: loadAlerts, alert: onAlert, resync: loadAlerts },
      [["实时连接", "live"], ["重新连接中…", "reconnecting…"]]);
  }

  // ---- assign: to a console user of the site, or a person from the alerting groups ---------

  let assigning = null;           // the alert id the dialog is for

  async function openAssign(id) {
    const dialog = $("assign");
    try {
      const people = await fetchJSON("/api/alerts/" + id + "/assignees");
      const alert = alerts.get(id);
      assigning = id;
      $("assign-title").replaceChildren("#" + id + " ",
        bilingual(alert ? window.Shouwang.hazardName(alert) : ["", ""]),
        alert ? " · " + (alert.location.text || alert.device_id) : "");
      $("assign-who").replaceChildren(...people.map((person) => {
        const kind = person.kind === "user" ?
          window.Shouwang.text(ROLE_LABELS[person.detail] || [person.detail, person.detail]) :
          window.Shouwang.text(label("group", person.detail));
        const option = el("option", "", person.name + " · " + kind);
        option.value = person.name;
        return option;
      }));
      if (alert && alert.assignment) $("assign-who").value = alert.assignment.assignee;
      $("assign-note").value = "";
      dialog.showModal();
    } catch (err) {
      showProblem("指派人员加载失败 Could not load people: " + err.message);
    }
  }

  async function submitAssign(event) {
    event.preventDefault();
    const id = assigning;
    if (id === null) return;
    busy.add(id);
    $("assign-submit").disabled = true;
    try {
      const alert = await fetchJSON("/api/alerts/" + id + "/assign", {
        method: "POST",
        body: JSON.stringify({ assignee: $("assign-who").value, note: $("assign-note").value }),
      });
      apply(alert);
      clearProblem();
      $("assign").close();
    } catch (err) {
      showProblem("指派未完成 Not assigned: " + err.message);
    } finally {
      busy.delete(id);
      $("assign-submit").disabled = false;
      renderAlerts();
    }
  }

  const ROLE_LABELS = {
    admin: ["管理员", "admin"], duty_officer: ["值班员", "duty officer"],
    fire_station: ["微型消防站", "fire station"], viewer: ["只读", "viewer"],
  };

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
      if (!onBoard(alert)) continue;
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
      if (sitePlans.has(siteId)) {
        drawings.push(configuredPlan(siteId, sitePlans.get(siteId),
          lastDevices.filter((d) => d.site === siteId), worst));
        continue;
      }
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
              (alert ? " · " + window.Shouwang.text(window.Shouwang.hazardName(alert)) : "")));
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

  async function loadPlans() {
    try {
      for (const site of await fetchJSON("/api/sites")) {
        if (site.plan) sitePlans.set(site.id, site.plan);
      }
      renderPlan();
    } catch (err) {
      showProblem("平面图加载失败 Could not load site plans: " + err.message);
    }
  }

  function floorName(floor) {
    return floor ? floor + (S_LANG_EN() ? "F" : "层") : "";
  }

  function planDot(device, alert, cx, cy, r) {
    const dot = svgNode("circle", { cx, cy, r: alert ? r : Math.max(2, r - 2),
      class: alert ? "plan-dot plan-alert sev-" + alert.severity : "plan-dot plan-" + device.status });
    dot.dataset.deviceId = device.id;
    dot.append(svgNode("title", {}, (device.name || device.id) + " · " + (device.location.text || "") +
      (alert ? " · " + window.Shouwang.text(window.Shouwang.hazardName(alert)) : "")));
    return dot;
  }

  // A configured plan: each building where the config puts it, its floors as bands (the
  // top floor at the top), a floor's rooms side by side; devices as dots in their place.
  function configuredPlan(siteId, plan, devices, worst) {
    const root = svgNode("svg", { viewBox: "0 0 " + plan.width + " " + plan.height,
      width: Math.round(plan.width * PLAN.zoom), height: Math.round(plan.height * PLAN.zoom),
      class: "plan-svg plan-configured", role: "img" });
    root.dataset.site = siteId;
    root.append(svgNode("title", {}, siteId));
    const placed = new Set();
    for (const building of plan.buildings) {
      const inside = devices.filter((d) => d.location.building === building.name);
      const floors = building.floors.length ? building.floors.map((f) => f.name) :
        [...new Set(inside.map((d) => d.location.floor))].sort((a, b) => floorRank(a) - floorRank(b));
      const rooms = new Map(building.floors.map((f) => [f.name, f.rooms]));
      const group = svgNode("g", { class: "plan-block" });
      group.dataset.building = building.name;
      group.append(svgNode("rect", { x: building.x, y: building.y, width: building.width,
        height: building.height, class: "plan-building" }));
      group.append(svgNode("text", { x: building.x + building.width / 2, y: building.y - 6,
        "text-anchor": "middle", class: "plan-label" }, building.label));
      const band = building.height / Math.max(1, floors.length);
      const labelW = Math.min(36, building.width / 4);
      const r = Math.max(3, Math.min(7, band / 3));
      floors.forEach((floor, i) => {
        const top = building.y + building.height - (i + 1) * band;
        if (i < floors.length - 1) {
          group.append(svgNode("line", { x1: building.x, x2: building.x + building.width,
            y1: top, y2: top, class: "plan-floor" }));
        }
        group.append(svgNode("text", { x: building.x + 3, y: top + Math.min(band - 2, band / 2 + 4),
          class: "plan-floor-label" }, floorName(floor)));
        const onFloor = inside.filter((d) => d.location.floor === floor);
        const named = rooms.get(floor) || [];
        const inRoom = (d) => named.find((room) => (d.location.room || "").startsWith(room));
        const cells = [...named];
        if (onFloor.some((d) => !inRoom(d))) cells.push("");
        const cellW = (building.width - labelW) / Math.max(1, cells.length);
        cells.forEach((room, c) => {
          const x = building.x + labelW + c * cellW;
          if (named.length) {
            group.append(svgNode("line", { x1: x, x2: x, y1: top, y2: top + band, class: "plan-floor" }));
            if (room) {
              group.append(svgNode("text", { x: x + 2, y: top + Math.min(11, band - 1),
                class: "plan-room-label" }, room));
            }
          }
          const here = onFloor.filter((d) => (inRoom(d) || "") === room);
          const perRow = Math.max(1, Math.floor((cellW - 4) / (r * 2 + 3)));
          here.forEach((device, k) => {
            const cx = x + 4 + r + (k % perRow) * (r * 2 + 3);
            const cy = top + band - r - 3 - Math.floor(k / perRow) * (r * 2 + 3);
            group.append(planDot(device, worst.get(device.id), cx, cy, r));
            placed.add(device.id);
          });
        });
      });
      root.append(group);
    }
    const figure = el("figure", "plan-site");
    figure.append(el("figcaption", "", siteId), root);
    const unplaced = devices.filter((d) => !placed.has(d.id));
    if (unplaced.length) {
      const note = el("p", "plan-unplaced");
      note.append(bilingual(["不在平面图上: ", "Not on the plan: "]),
        unplaced.map((d) => (d.name || d.id) + (worst.has(d.id) ? " ⚠" : "")).join("、"));
      figure.append(note);
    }
    return figure;
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
    assigned: ["指派", "Assigned"], reminded: ["提醒", "Reminder"],
  };

  async function showHistory(id) {
    const dialog = $("history");
    try {
      const detail = await fetchJSON("/api/alerts/" + id);
      $("history-title").replaceChildren(
        "#" + detail.id + " ", bilingual(window.Shouwang.hazardName(detail)),
        " · " + (detail.location.text || detail.device_id));
      $("history-rows").replaceChildren(...detail.events.map((event) => {
        const row = el("tr");
        cell(row, "time", formatTime(event.at));
        cell(row, "what", bilingual(ACTIONS[event.action] || [event.action, event.action]));
        cell(row, "actor", event.actor);
        cell(row, "note", noteText(event));
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
    $("assign-form").addEventListener("submit", submitAssign);
    $("assign-cancel").addEventListener("click", () => $("assign").close());
    loadPlans();
    $("device-filters").addEventListener("change", loadDevices);
    $("show-anomalies").addEventListener("change", renderAlerts);
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
