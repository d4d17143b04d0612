// One device: its details, a chart of recent readings (time buckets: min-max band and mean)
// with its threshold lines, and its alert history. SVG built node by node, text as text.
"use strict";

(function () {
  const S = window.Shouwang;
  const { el, bilingual, showProblem } = S;
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 900;
  const HEIGHT = 320;
  const PAD = { left: 60, right: 90, top: 16, bottom: 34 };
  const COLOURS = { red: "#d7191c", orange: "#f07c00", yellow: "#c9a400", blue: "#1f6fd1" };
  const SEVERITY = S.SEVERITY;
  const STATUS = Object.assign({
    online: ["在线", "Online"], offline: ["离线", "Offline"], unknown: ["未上报", "Never seen"],
  }, S.STATUS);

  const $ = (id) => document.getElementById(id);
  const deviceId = new URLSearchParams(location.search).get("id") || "";
  let device = null;

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function time(iso) {
    return new Date(iso).toLocaleString(S.lang() === "en" ? "en-GB" : "zh-CN", { hour12: false });
  }

  function info() {
    const box = $("device-info");
    const title = el("h2", "", device.name || device.id);
    const facts = el("dl", "facts");
    const add = (pair, value) => {
      const dt = el("dt");
      dt.append(bilingual(pair));
      const dd = el("dd");
      if (typeof value === "string") dd.textContent = value;
      else dd.append(value);
      facts.append(dt, dd);
    };
    add(["编号", "ID"], device.id);
    add(["小区", "Site"], device.site);
    add(["位置", "Place"], device.location.text || "—");
    add(["状态", "Status"], bilingual(STATUS[device.status] || [device.status, device.status]));
    add(["电量", "Battery"], device.battery === null ? "—" : Math.round(device.battery) + "%");
    add(["最后上报", "Last seen"], device.last_seen ? time(device.last_seen) : "—");
    box.replaceChildren(title, facts);
    $("device-title").textContent = device.name || device.id;
  }

  function metricOptions() {
    const select = $("metric");
    select.replaceChildren(...device.metrics.map((m) => {
      const option = el("option", "", (S.lang() === "en" ? m.label_en : m.label_zh) + " (" + m.unit + ")");
      option.value = m.key;
      return option;
    }));
    const firstWithLines = device.thresholds.length ? device.thresholds[0].metric : null;
    if (firstWithLines) select.value = firstWithLines;
  }

  function draw(data, metric) {
    const chart = $("chart");
    const lines = device.thresholds.filter((t) => t.metric === metric);
    const buckets = data.buckets;
    $("no-readings").hidden = buckets.length > 0;
    const start = Date.parse(data.start);
    const end = Date.parse(data.end);
    let low = Math.min(...buckets.map((b) => b.min), ...lines.map((t) => t.value));
    let high = Math.max(...buckets.map((b) => b.max), ...lines.map((t) => t.value));
    if (!isFinite(low) || !isFinite(high)) { low = 0; high = 1; }
    if (high === low) { high += 1; low -= 1; }
    const margin = (high - low) * 0.08;
    low -= margin;
    high += margin;
    const x = (ms) => PAD.left + (ms - start) / (end - start) * (WIDTH - PAD.left - PAD.right);
    const y = (v) => PAD.top + (high - v) / (high - low) * (HEIGHT - PAD.top - PAD.bottom);
    const root = svg("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", class: "chart-svg" });
    root.append(svg("rect", { x: PAD.left, y: PAD.top, width: WIDTH - PAD.left - PAD.right,
      height: HEIGHT - PAD.top - PAD.bottom, class: "chart-frame" }));
    for (const value of [low + margin, (low + high) / 2, high - margin]) {
      const label = svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "chart-axis", "text-anchor": "end" });
      label.textContent = String(Math.round(value * 10) / 10);
      root.append(label);
    }
    for (const [ms, anchor] of [[start, "start"], [end, "end"]]) {
      const label = svg("text", { x: x(ms), y: HEIGHT - 10, class: "chart-axis", "text-anchor": anchor });
      label.textContent = time(new Date(ms).toISOString());
      root.append(label);
    }
    if (buckets.length) {
      const width = data.bucket_s * 1000;
      // A bucket's middle, kept inside the chart (the newest bucket is still filling).
      const mid = (b) => x(Math.min(Date.parse(b.start) + width / 2, end));
      const top = buckets.map((b) => mid(b) + "," + y(b.max));
      const bottom = buckets.slice().reverse().map((b) => mid(b) + "," + y(b.min));
      root.append(svg("polygon", { points: top.concat(bottom).join(" "), class: "chart-band" }));
      root.append(svg("polyline", {
        points: buckets.map((b) => mid(b) + "," + y(b.mean)).join(" "),
        class: "chart-mean" }));
      for (const b of buckets) {
        root.append(svg("circle", { cx: mid(b), cy: y(b.mean), r: 3,
          class: "chart-point" }));
      }
    }
    for (const line of lines) {
      root.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(line.value), y2: y(line.value),
        stroke: COLOURS[line.severity] || "#555", class: "chart-threshold" }));
      const label = svg("text", { x: WIDTH - PAD.right + 4, y: y(line.value) + 4,
        fill: COLOURS[line.severity] || "#555", class: "chart-axis" });
      label.textContent = S.text(SEVERITY[line.severity] || [line.severity, line.severity]) + " " + line.value;
      root.append(label);
    }
    chart.replaceChildren(root);
  }

  async function loadChart() {
    const metric = $("metric").value;
    if (!metric) return;
    try {
      const params = new URLSearchParams({ metric, hours: $("hours").value, buckets: "120" });
      draw(await S.fetchJSON("/api/devices/" + encodeURIComponent(deviceId) + "/readings?" + params), metric);
    } catch (err) {
      showProblem("读数加载失败 Could not load readings: " + err.message);
    }
  }

  function alertRows() {
    $("device-alert-rows").replaceChildren(...device.alerts.map((alert) => {
      const row = el("tr", "sev-" + alert.severity);
      const cells = [time(alert.opened_at),
        bilingual(S.hazardName(alert)),
        bilingual(SEVERITY[alert.severity] || [alert.severity, alert.severity]),
        bilingual(STATUS[alert.status] || [alert.status, alert.status]),
        alert.last_value === null ? "—" : String(Math.round(alert.last_value * 100) / 100)];
      for (const value of cells) {
        const td = el("td");
        if (typeof value === "string") td.textContent = value;
        else td.append(value);
        row.append(td);
      }
      return row;
    }));
  }

  function render() {
    info();
    const chosen = $("metric").value;
    metricOptions();
    if (chosen) $("metric").value = chosen;
    alertRows();
    loadChart();
  }

  async function start() {
    try {
      await S.loadSession();
    } catch (err) {
      return;
    }
    S.controls($("controls"), render);
    $("back").addEventListener("click", () => location.assign("/"));
    $("chart-filters").addEventListener("change", loadChart);
    try {
      device = await S.fetchJSON("/api/devices/" + encodeURIComponent(deviceId));
    } catch (err) {
      showProblem("设备加载失败 Could not load the device: " + err.message);
      return;
    }
    render();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
