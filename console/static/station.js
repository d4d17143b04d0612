// The fire station's phone page: only its own sites' live alerts, big text, where exactly,
// what to do, and one Acknowledge button. Data is only ever inserted with textContent.
"use strict";

(function () {
  const S = window.Shouwang;
  const { el, bilingual, SEVERITY, STATUS, CAN_ACK, ALARM, showProblem } = S;
  const SHOWN = new Set(["open", "escalated", "acknowledged"]);
  const TODO = {
    gas: ["关闭燃气总阀，开窗通风；严禁开关电器、动用明火；疏散同层住户。",
      "Shut the gas main and open windows; no switches or flames; evacuate the floor."],
    co: ["开窗通风，将人员转移到室外；检查热水器和炉具；有人不适立即拨打120。",
      "Ventilate and move people outside; check the heater and stove; call 120 if anyone is unwell."],
    smoke: ["携带灭火器和水带赶赴现场，确认火情；火势扩大立即拨打119并组织疏散。",
      "Go with extinguishers and hose; confirm the fire; if it spreads call 119 and evacuate."],
    heat: ["携带灭火器赶赴现场，确认是否起火；必要时拨打119。",
      "Go with extinguishers and check for fire; call 119 if needed."],
    flood: ["切断地下空间电源，启动排水泵，设置警戒，转移车辆和物资。",
      "Cut power to the basement, start the pumps, cordon off, move vehicles and goods."],
    electrical_leak: ["断开相关回路电源；起火时使用干粉灭火器，严禁用水。",
      "Switch off the circuit; on fire use a powder extinguisher, never water."],
    overheat: ["断开相关回路电源；起火时使用干粉灭火器，严禁用水。",
      "Switch off the circuit; on fire use a powder extinguisher, never water."],
    fall: ["立即上门查看老人情况，必要时拨打120。", "Visit the resident now; call 120 if needed."],
    sos: ["立即上门查看老人情况，必要时拨打120。", "Visit the resident now; call 120 if needed."],
    heart_rate_high: ["立即上门查看老人情况，必要时拨打120。", "Visit the resident now; call 120 if needed."],
    heart_rate_low: ["立即上门查看老人情况，必要时拨打120。", "Visit the resident now; call 120 if needed."],
    inactivity: ["上门或电话确认老人安全。", "Visit or call to check the resident is safe."],
  };
  const DEFAULT_TODO = ["前往现场确认情况，并向值班员报告。", "Go and check on site; report to the duty officer."];

  const alerts = new Map();
  const sites = new Map();
  const busy = new Set();
  let timers = [];

  const $ = (id) => document.getElementById(id);

  function since(iso) {
    return S.formatDuration((Date.now() - Date.parse(iso)) / 1000);
  }

  function field(pair, value) {
    const box = el("div", "field");
    box.append(el("div", "field-label"));
    box.firstChild.append(bilingual(pair));
    box.append(el("div", "field-value", value || "—"));
    return box;
  }

  function card(alert) {
    const card = el("article", "station-card sev-" + alert.severity);
    card.dataset.alertId = String(alert.id);
    const head = el("div", "card-head");
    const sev = el("span", "card-sev");
    sev.append(bilingual(SEVERITY[alert.severity] || [alert.severity, alert.severity]));
    const hazard = el("span", "card-hazard");
    hazard.append(bilingual(S.hazardName(alert)));
    const open = el("span", "card-since", since(alert.opened_at));
    timers.push([open, alert.opened_at]);
    head.append(sev, hazard, open);
    if (alert.drill) head.append(el("span", "drill", "演练 Drill"));

    const site = sites.get(alert.site);
    const address = el("div", "card-address",
      site ? site.name + (site.address ? " · " + site.address : "") : alert.site);
    const loc = alert.location;
    const place = el("div", "card-place");
    place.append(
      field(["楼栋", "Building"], [loc.building, loc.unit].filter(Boolean).join(" ")),
      field(["楼层", "Floor"], loc.floor),
      field(["房间", "Room"], loc.room));

    const todo = el("div", "card-todo");
    const todoLabel = el("div", "field-label");
    todoLabel.append(bilingual(["处置要点", "What to do"]));
    todo.append(todoLabel);
    todo.append(bilingual(TODO[alert.hazard] || DEFAULT_TODO));
    if (alert.message) todo.append(el("div", "detail", alert.message));

    const status = el("div", "card-status status-" + alert.status);
    status.append(bilingual(STATUS[alert.status] || [alert.status, alert.status]));

    card.append(head, address, place, todo, status);
    if (CAN_ACK.has(alert.status) && S.canAct()) {
      const button = el("button", "act act-ack station-ack");
      button.type = "button";
      button.disabled = busy.has(alert.id);
      button.append(bilingual(["确认接警", "Acknowledge"]));
      button.addEventListener("click", () => acknowledge(alert.id));
      card.append(button);
    }
    return card;
  }

  function render() {
    timers = [];
    const list = [...alerts.values()].sort(S.byUrgency);
    $("station-alerts").replaceChildren(...list.map(card));
    $("no-alerts").hidden = list.length > 0;
    document.title = (list.length ? "(" + list.length + ") " : "") + "微型消防站 · 守望";
  }

  function apply(alert) {
    // Unusual readings (learned anomaly) are for the duty desk, not the fire station.
    if (SHOWN.has(alert.status) && alert.kind !== "anomaly") alerts.set(alert.id, alert);
    else alerts.delete(alert.id);
  }

  async function load() {
    try {
      const list = await S.fetchJSON("/api/alerts?status=live");
      alerts.clear();
      for (const alert of list) apply(alert);
      render();
      S.clearProblem();
    } catch (err) {
      showProblem("警报加载失败 Could not load alerts: " + err.message);
    }
  }

  async function acknowledge(id) {
    busy.add(id);
    render();
    try {
      apply(await S.fetchJSON("/api/alerts/" + id + "/ack", { method: "POST", body: "{}" }));
    } catch (err) {
      showProblem("操作未完成 Not done: " + err.message);
      load();
    } finally {
      busy.delete(id);
      render();
    }
  }

  function onAlert(alert) {
    const before = alerts.get(alert.id);
    if (ALARM.has(alert.severity) && CAN_ACK.has(alert.status) &&
        (!before || before.severity_level < alert.severity_level)) S.beep(alert.severity);
    apply(alert);
    render();
  }

  function connect() {
    S.liveAlerts({ open: load, alert: onAlert, resync: load },
      [["实时", "live"], ["重连中…", "reconnecting…"]]);
  }

  async function start() {
    try {
      await S.loadSession();
    } catch (err) {
      return;
    }
    S.controls($("controls"), render);
    try {
      for (const site of await S.fetchJSON("/api/sites")) sites.set(site.id, site);
    } catch (err) {
      showProblem("小区信息加载失败 Could not load sites: " + err.message);
    }
    render();
    connect();
    setInterval(() => {
      for (const [node, opened] of timers) node.textContent = since(opened);
    }, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
