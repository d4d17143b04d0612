// Drills: start a scenario on a device, follow its timeline live (polling the drill while
// it runs), read its scorecard, and (admins) delete its data. Text only via textContent.
"use strict";

(function () {
  const S = window.Shouwang;
  const { el, bilingual } = S;
  const POLL_MS = 1000;        // the open drill, while it runs
  const LIST_MS = 5000;        // the list of drills
  const SEVERITY = { red: ["红色", "Red"], orange: ["橙色", "Orange"], yellow: ["黄色", "Yellow"], blue: ["蓝色", "Blue"] };
  const STATUS = {
    running: ["进行中", "Running"], finished: ["已结束", "Finished"], failed: ["失败", "Failed"],
  };
  const KIND = {
    onset: ["险情开始", "Onset"], detection: ["检测报警", "Detected"], notification: ["发出通知", "Notified"],
    acknowledged: ["已确认", "Acknowledged"], resolved: ["已处置", "Resolved"], escalated: ["已升级", "Escalated"],
    reminded: ["提醒", "Reminder"], expired: ["已过期", "Expired"], silenced: ["已静默", "Silenced"],
    inhibited: ["已抑制", "Inhibited"], assigned: ["已指派", "Assigned"], delivery_failed: ["发送失败", "Delivery failed"],
  };
  const SCENARIO = {
    gas_leak: ["燃气泄漏", "Gas leak"], slow_gas_leak: ["缓慢燃气泄漏", "Slow gas leak"],
    fast_gas_leak: ["快速燃气泄漏", "Fast gas leak"], kitchen_fire: ["厨房火灾", "Kitchen fire"],
    electrical_overheat: ["配电箱过热", "Electrical overheating"], garage_flood: ["地库水浸", "Garage flood"],
    fall_no_movement: ["老人跌倒", "Fall, no movement"], sos: ["紧急呼救", "SOS"],
    night_heart_rate: ["夜间心率异常", "Night heart rate"], building_power_outage: ["整栋停电", "Building power outage"],
    nuisance_day: ["干扰日（不应报警）", "Nuisance day (no alarm)"],
  };

  const $ = (id) => document.getElementById(id);
  let scenarios = [];
  let chosen = Number(new URLSearchParams(location.search).get("id")) || null;
  let pollTimer = null;

  function showProblem(message) {
    $("problem").textContent = message;
    $("problem").hidden = false;
  }

  function clearProblem() {
    $("problem").hidden = true;
  }

  function time(iso) {
    return iso ? new Date(iso).toLocaleString(S.lang() === "en" ? "en-GB" : "zh-CN", { hour12: false }) : "—";
  }

  function seconds(value) {
    return value === null || value === undefined ? "—" : value.toFixed(1) + " s";
  }

  function pair(table, key) {
    return bilingual(table[key] || [key, key]);
  }

  // The hazard as messages name it: the server sends hazard_name with every entry.
  function hazardLabel(item) {
    return item.hazard ? bilingual(S.hazardName(item)) : el("span", "", "—");
  }

  // ---- starting a drill --------------------------------------------------------------------

  function sites() {
    const found = new Set();
    for (const s of scenarios) for (const d of s.devices) found.add(d.site);
    return Array.from(found).sort();
  }

  function fillScenarios() {
    const select = $("drill-scenario");
    const current = select.value;
    select.replaceChildren(...scenarios.map((s) => {
      const option = el("option", "", S.text(SCENARIO[s.name] || [s.name, s.name]));
      option.value = s.name;
      return option;
    }));
    if (current) select.value = current;
  }

  function fillDevices() {
    const scenario = scenarios.find((s) => s.name === $("drill-scenario").value);
    const site = $("drill-site").value;
    const devices = scenario ? scenario.devices.filter((d) => d.site === site) : [];
    $("drill-device").replaceChildren(...devices.map((d) => {
      const option = el("option", "", d.id + (d.place ? " · " + d.place : "") + (d.name ? " · " + d.name : ""));
      option.value = d.id;
      return option;
    }));
    $("scenario-description").textContent = scenario ? scenario.description : "";
    $("drill-start").disabled = devices.length === 0;
  }

  async function loadScenarios() {
    scenarios = await S.fetchJSON("/api/drills/scenarios");
    $("drill-site").replaceChildren(...sites().map((id) => {
      const option = el("option", "", id);
      option.value = id;
      return option;
    }));
    fillScenarios();
    fillDevices();
  }

  async function startDrill(event) {
    event.preventDefault();
    const button = $("drill-start");
    button.disabled = true;
    try {
      const drill = await S.fetchJSON("/api/drills", {
        method: "POST",
        body: JSON.stringify({
          scenario: $("drill-scenario").value, site: $("drill-site").value,
          device_id: $("drill-device").value, speed: Number($("drill-speed").value),
          run_s: Number($("drill-run").value),
        }),
      });
      clearProblem();
      await choose(drill.id);
      await loadList();
    } catch (err) {
      showProblem("演练未能开始 Could not start the drill: " + err.message);
    } finally {
      button.disabled = false;
    }
  }

  // ---- one drill: live timeline and scorecard ----------------------------------------------

  function timelineRows(drill) {
    $("timeline-rows").replaceChildren(...drill.timeline.map((entry) => {
      const row = el("tr", "kind-" + entry.kind);
      row.dataset.kind = entry.kind;
      row.append(el("td", "", time(entry.at)), el("td", "", seconds(entry.t_s)));
      const kind = el("td");
      kind.append(pair(KIND, entry.kind));
      const what = el("td");
      what.append(el("span", "", entry.device_id + " · "), hazardLabel(entry));
      if (entry.severity) what.append(el("span", "", " · "), pair(SEVERITY, entry.severity));
      const detail = [entry.channel, entry.receiver, entry.actor, entry.detail].filter(Boolean).join(" · ");
      row.append(kind, what, el("td", "detail", detail));
      return row;
    }));
  }

  function scorecard(drill) {
    const card = drill.scorecard;
    $("report").hidden = card === null;
    if (card === null) return;
    $("score-rows").replaceChildren(...card.rows.map((r) => {
      const row = el("tr");
      const hazard = el("td");
      hazard.append(hazardLabel(r));
      const expected = el("td");
      expected.append(pair(SEVERITY, r.expected_severity));
      const reached = el("td");
      reached.append(r.severity ? pair(SEVERITY, r.severity) : bilingual(["未检出", "Missed"]));
      const notified = Object.entries(r.notified_s).sort()
        .map(([channel, at]) => channel + " " + seconds(at)).join(", ") || "—";
      row.append(el("td", "", r.device_id), hazard, expected, reached, el("td", "", seconds(r.detected_s)),
        el("td", "", notified), el("td", "", seconds(r.acknowledged_s)), el("td", "", seconds(r.resolved_s)));
      return row;
    }));
    $("score-missed").replaceChildren(bilingual(["漏报：", "Missed: "]),
      el("span", "", card.missed.length ? card.missed.join(", ") : "—"));
    $("score-unexpected").replaceChildren(bilingual(["意外报警：", "Unexpected alerts: "]),
      el("span", "", card.unexpected.length
        ? card.unexpected.map((u) => "#" + u.alert_id + " " + u.device_id + " " + S.text(S.hazardName(u))).join(", ") : "—"));
    // A same-origin path built from the numeric id: never a URL taken from data.
    $("report-link").setAttribute("href", "/api/drills/" + encodeURIComponent(Number(drill.id)) + "/report.md");
    const session = S.session();
    $("purge").hidden = !(session && session.role === "admin" && drill.purged_at === null);
  }

  function showDrill(drill) {
    $("detail-panel").hidden = false;
    $("detail-panel").dataset.status = drill.status;
    $("detail-panel").dataset.drill = String(drill.id);
    $("detail-title").replaceChildren(el("span", "", "#" + drill.id + " "),
      bilingual(SCENARIO[drill.scenario] || [drill.scenario, drill.scenario]),
      el("span", "", " · " + drill.site + " · " + drill.device_id));
    const state = [pair(STATUS, drill.status), el("span", "", " · "),
      bilingual(["开始于 ", "started "]), el("span", "", time(drill.started_at))];
    if (drill.purged_at) state.push(el("span", "", " · "), bilingual(["演练数据已删除 ", "data deleted "]),
      el("span", "", time(drill.purged_at)));
    if (drill.error) state.push(el("span", "", " · " + drill.error));
    $("detail-state").replaceChildren(...state);
    timelineRows(drill);
    scorecard(drill);
    markChosen();
  }

  async function refresh() {
    if (chosen === null) return;
    clearTimeout(pollTimer);
    try {
      const drill = await S.fetchJSON("/api/drills/" + chosen);
      if (drill.id !== chosen) return;
      showDrill(drill);
      if (drill.status === "running") pollTimer = setTimeout(refresh, POLL_MS);
      else loadList();
    } catch (err) {
      showProblem("演练加载失败 Could not load the drill: " + err.message);
      pollTimer = setTimeout(refresh, POLL_MS * 5);
    }
  }

  async function choose(id) {
    chosen = id;
    history.replaceState(null, "", "/drills?id=" + id);
    await refresh();
  }

  async function purge() {
    if (chosen === null) return;
    if (!confirm(S.text(["删除本次演练的读数、报警和通知？成绩单会保留。",
      "Delete this drill's readings, alerts and messages? The scorecard stays."]))) return;
    try {
      await S.fetchJSON("/api/drills/" + chosen + "/purge", { method: "POST", body: "{}" });
      await refresh();
    } catch (err) {
      showProblem("删除失败 Could not delete: " + err.message);
    }
  }

  // ---- the list ----------------------------------------------------------------------------

  function markChosen() {
    for (const row of $("drill-rows").children) {
      row.classList.toggle("chosen", Number(row.dataset.drill) === chosen);
    }
  }

  async function loadList() {
    let drills;
    try {
      drills = await S.fetchJSON("/api/drills");
    } catch (err) {
      showProblem("演练记录加载失败 Could not load drills: " + err.message);
      return;
    }
    $("no-drills").hidden = drills.length > 0;
    $("drill-rows").replaceChildren(...drills.map((d) => {
      const row = el("tr");
      row.dataset.drill = String(d.id);
      const scenario = el("td");
      scenario.append(bilingual(SCENARIO[d.scenario] || [d.scenario, d.scenario]));
      const status = el("td");
      status.append(pair(STATUS, d.status));
      if (d.purged_at) status.append(el("span", "detail", " · "), bilingual(["数据已删除", "data deleted"]));
      const result = d.detected === null ? "—"
        : d.detected + "/" + d.expected.length + (d.missed.length ? " · " + S.text(["漏报 ", "missed "]) + d.missed.join(", ") : "");
      row.append(el("td", "", d.id), el("td", "", time(d.started_at)), scenario,
        el("td", "", d.site + " · " + d.device_id), status, el("td", "", result));
      row.addEventListener("click", () => choose(d.id));
      return row;
    }));
    markChosen();
  }

  async function start() {
    try {
      await S.loadSession();
    } catch (err) {
      return;
    }
    S.controls($("controls"), () => { fillScenarios(); loadList(); refresh(); });
    $("back").addEventListener("click", () => location.assign("/"));
    const session = S.session();
    if (session.role === "admin" || session.role === "duty_officer") {
      $("start-panel").hidden = false;
      $("drill-form").addEventListener("submit", startDrill);
      $("drill-scenario").addEventListener("change", fillDevices);
      $("drill-site").addEventListener("change", fillDevices);
      try {
        await loadScenarios();
      } catch (err) {
        showProblem("情景加载失败 Could not load scenarios: " + err.message);
      }
    }
    $("purge").addEventListener("click", purge);
    await loadList();
    setInterval(loadList, LIST_MS);
    if (chosen !== null) await refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
