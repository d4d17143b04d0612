// The audit trail for admins: alert actions, silences, config changes, users, residents'
// data requests (GET /api/audit), newest first. Data is only ever inserted with textContent.
"use strict";

(function () {
  const S = window.Shouwang;
  const { el } = S;
  const $ = (id) => document.getElementById(id);

  function time(iso) {
    return new Date(iso).toLocaleString(S.lang() === "en" ? "en-GB" : "zh-CN", { hour12: false });
  }

  function summary(entry) {
    const d = entry.detail || {};
    if (entry.category === "config") {
      return (d.changes || []).map((c) => c.key + ": " + JSON.stringify(c.old) + " → " + JSON.stringify(c.new)).join("\n")
        || (d.command ? "(" + d.command + ")" : "");
    }
    if (entry.category === "alert") return [d.from_status, "→", d.to_status, d.note].filter(Boolean).join(" ");
    return JSON.stringify(d);
  }

  async function load() {
    const params = new URLSearchParams();
    const category = $("category").value;
    if (category) params.set("category", category);
    if ($("actor").value.trim()) params.set("actor", $("actor").value.trim());
    for (const name of ["since", "until"]) {
      if ($(name).value) params.set(name, new Date($(name).value).toISOString());
    }
    let entries;
    try {
      entries = await S.fetchJSON("/api/audit?" + params);
      S.clearProblem();
    } catch (err) {
      S.showProblem(err.status === 403 ? "仅管理员可查看 Admins only" : "加载失败 Could not load: " + err.message);
      return;
    }
    $("audit-rows").replaceChildren(...entries.map((entry) => {
      const row = el("tr");
      for (const value of [time(entry.at), entry.category, entry.action, entry.actor,
        (entry.site ? entry.site + " " : "") + entry.subject]) row.append(el("td", "", value));
      row.append(el("td", "audit-detail", summary(entry)));
      return row;
    }));
  }

  async function start() {
    try {
      await S.loadSession();
    } catch (err) {
      return;
    }
    S.controls($("controls"), load);
    $("back").addEventListener("click", () => location.assign("/"));
    $("audit-filters").addEventListener("change", load);
    await load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
