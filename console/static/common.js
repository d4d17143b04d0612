// Shared by every console page: the session (CSRF token), JSON calls, the language switch,
// the alarm sound, the problem banner, durations, and the live alert stream.
// Data is only ever inserted with textContent.
"use strict";

window.Shouwang = (function () {
  const LANG_KEY = "shouwang.lang";
  const SOUND_KEY = "shouwang.sound";
  let session = null;             // {name, role, sites, csrf_token}
  let audio = null;               // AudioContext, made on the first user gesture

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---- language: Chinese by default; "en" switches every label ----------------------------

  function lang() {
    return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
  }

  function applyLang() {
    document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
    document.documentElement.dataset.lang = lang();
  }

  function setLang(value) {
    localStorage.setItem(LANG_KEY, value === "en" ? "en" : "zh");
    applyLang();
  }

  // [Chinese, English] -> one element holding both; CSS shows the chosen language.
  function bilingual(pair) {
    const span = el("span", "bi");
    span.append(el("span", "zh", pair[0]));
    if (pair[1] && pair[1] !== pair[0]) span.append(el("span", "en", pair[1]));
    else span.firstChild.className = "";
    return span;
  }

  function text(pair) {
    return lang() === "en" && pair[1] ? pair[1] : pair[0];
  }

  // ---- session and JSON calls --------------------------------------------------------------

  function toLogin() {
    const next = location.pathname === "/station" ? "?next=station" : "";
    location.assign("/login" + next);
  }

  async function fetchJSON(url, options) {
    const init = Object.assign({ credentials: "same-origin" }, options || {});
    const method = (init.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") {
      init.headers = Object.assign({ "Content-Type": "application/json" }, init.headers || {});
      if (session) init.headers["X-CSRF-Token"] = session.csrf_token;
    }
    const response = await fetch(url, init);
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (response.status === 401 && url !== "/api/login") {
      toLogin();
    }
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error : response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function loadSession() {
    session = await fetchJSON("/api/session");
    return session;
  }

  function canAct() {
    return session !== null && session.role !== "viewer";
  }

  async function logout() {
    try {
      await fetchJSON("/api/logout", { method: "POST", body: "{}" });
    } finally {
      location.assign("/login");
    }
  }

  // ---- alarm sound: WebAudio beeps, no sound file to fetch ---------------------------------

  function soundOn() {
    return localStorage.getItem(SOUND_KEY) !== "off";
  }

  function unlockAudio() {
    // Browsers only start audio after a click or key press on the page.
    if (audio === null && window.AudioContext) audio = new AudioContext();
    if (audio && audio.state === "suspended") audio.resume();
  }

  function beep(severity) {
    const count = Number(document.body.dataset.beeps || "0") + 1;
    document.body.dataset.beeps = String(count);   // lets tests and people see it rang
    if (!soundOn() || audio === null) return;
    const tones = severity === "red" ? [880, 660, 880, 660] : [660, 660];
    let at = audio.currentTime;
    for (const hz of tones) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.25);
      at += 0.3;
    }
  }

  // ---- the header controls every page has --------------------------------------------------

  function controls(container, onLangChange) {
    const who = el("span", "who");
    if (session) {
      who.append(session.name + " · ");
      who.append(bilingual(ROLES[session.role] || [session.role, session.role]));
    }
    const langButton = el("button", "ctl ctl-lang", lang() === "en" ? "中文" : "English");
    langButton.type = "button";
    langButton.id = "lang-switch";
    langButton.addEventListener("click", () => {
      setLang(lang() === "en" ? "zh" : "en");
      langButton.textContent = lang() === "en" ? "中文" : "English";
      if (onLangChange) onLangChange();
    });
    const soundButton = el("button", "ctl ctl-sound");
    soundButton.type = "button";
    soundButton.id = "sound-switch";
    const showSound = () => soundButton.replaceChildren(
      bilingual(soundOn() ? ["声音 开", "Sound on"] : ["声音 关", "Sound off"]));
    showSound();
    soundButton.addEventListener("click", () => {
      localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
      unlockAudio();
      showSound();
    });
    const out = el("button", "ctl ctl-logout");
    out.type = "button";
    out.id = "logout";
    out.append(bilingual(["退出", "Log out"]));
    out.addEventListener("click", logout);
    container.append(who, soundButton, langButton, out);
  }

  // ---- the problem banner (#problem) every page has -----------------------------------------

  function showProblem(message) {
    const box = document.getElementById("problem");
    box.textContent = message;
    box.hidden = false;
  }

  function clearProblem() {
    document.getElementById("problem").hidden = true;
  }

  // ---- times -------------------------------------------------------------------------------

  // "m:ss", "h:mm:ss", or with days in front.
  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const days = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    const clock = (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
    return days ? days + "天 d " + clock : clock;
  }

  // Most severe first, then the newest.
  function byUrgency(a, b) {
    return (b.severity_level - a.severity_level) || (Date.parse(b.opened_at) - Date.parse(a.opened_at));
  }

  // ---- the live alert stream ---------------------------------------------------------------
  // handlers: {open(), alert(alert), resync()}; linkLabels: [[zh, en] when up, [zh, en] when down].
  //
  // One tab per session holds /api/stream and forwards it to the session's other tabs: each
  // EventSource keeps an HTTP/1.1 connection, and Chromium gives a host only 6 per profile,
  // so a seventh board tab would leave no connection for acknowledging. The leader is the
  // tab holding a Web Lock; when it closes, the lock passes to a waiting tab, which opens the
  // stream and makes every tab reload its list (nothing falls into the handover). Web Locks
  // need https or localhost: elsewhere a shared worker holds the stream, and a browser with
  // neither keeps a stream per tab.

  // One stream in this tab: emit({kind: "open" | "down" | "resync" | "ended"} or
  // {kind: "alert", alert}). "ended": the session is gone (logged out, new password, expired):
  // the server said so, or refused a reconnect with 401; every tab must log in again.
  // Tabs share a stream only within one login: a new session (another user, or the same
  // one again) gets its own lock and channel, so a leftover leader never feeds it.
  function sharedStreamName() {
    return "shouwang.live:" + session.name + ":" + session.csrf_token.slice(0, 16);
  }

  // The tab holding the session's Web Lock opens the stream and forwards it on a channel.
  function sharedByLock(deliver) {
    const name = sharedStreamName();
    const channel = new BroadcastChannel(name);
    const tab = Math.random().toString(36).slice(2);
    let leading = false;
    let up = false;                 // the leader's stream, as the leader knows it
    let heard = false;              // a follower's first answer from the leader
    channel.addEventListener("message", (event) => {
      const message = event.data || {};
      if (leading) {
        // A tab that just opened asks whether the stream is up, to load its list now.
        if (message.kind === "hello") channel.postMessage({ kind: "state", up: up, to: message.from });
      } else if (message.kind === "state") {
        if (message.to !== tab || heard) return;
        heard = true;
        // Subscribed before asking, so loading now misses nothing the leader forwards.
        if (message.up) deliver({ kind: "open" });   // else the leader's "open" follows
      } else if (message.kind !== "hello") {
        if (message.kind === "open") heard = true;   // loads the list: the answer is moot
        deliver(message);
      }
    });
    document.body.dataset.live = "follower";
    channel.postMessage({ kind: "hello", from: tab });
    navigator.locks.request(name, () => {
      leading = true;
      document.body.dataset.live = "leader";
      // Followers' lists may be missing what changed while no tab held the stream: the
      // "open" this stream sends makes every tab reload.
      const emit = (message) => {
        if (message.kind === "open") up = true;
        if (message.kind === "down") up = false;
        channel.postMessage(message);
        deliver(message);
      };
      channel.postMessage({ kind: "down" });   // the old leader's stream is gone
      openLiveStream(emit);   // live-stream.js
      return new Promise(() => {});   // held until the tab closes
    }).catch(() => {
      if (leading) return;
      channel.close();   // no lock after all: this tab keeps a stream of its own
      ownStream(deliver);
    });
  }

  // Without Web Locks: a shared worker per session holds the stream (live-worker.js).
  function sharedByWorker(deliver) {
    const worker = new SharedWorker("/static/live-worker.js", { name: sharedStreamName() });
    worker.addEventListener("error", () => ownStream(deliver));   // the worker did not start
    worker.port.addEventListener("message", (event) => deliver(event.data || {}));
    worker.port.start();
    window.addEventListener("pagehide", (event) => {
      if (!event.persisted) worker.port.postMessage({ kind: "bye" });   // a cached page may come back
    });
    document.body.dataset.live = "worker";
  }

  function ownStream(deliver) {
    document.body.dataset.live = "own";
    openLiveStream(deliver);
  }

  function liveAlerts(handlers, linkLabels) {
    const setLink = (up) => {
      const link = document.getElementById("link");
      link.className = "link " + (up ? "link-up" : "link-down");
      link.replaceChildren(bilingual(up ? linkLabels[0] : linkLabels[1]));
    };
    const deliver = (message) => {
      if (message.kind === "open") {
        setLink(true);
        handlers.open();   // after subscribing, so nothing falls between the list and the stream
      } else if (message.kind === "alert") {
        handlers.alert(message.alert);
      } else if (message.kind === "resync") {
        handlers.resync();
      } else if (message.kind === "down") {
        setLink(false);
      } else if (message.kind === "ended") {
        toLogin();
      }
    };
    if (session !== null && navigator.locks && window.BroadcastChannel) sharedByLock(deliver);
    else if (session !== null && window.SharedWorker) sharedByWorker(deliver);
    else ownStream(deliver);
  }

  // An alert's hazard as messages name it: the server sends hazard_name with each alert.
  function hazardName(alert) {
    return alert.hazard_name || [alert.hazard, alert.hazard];
  }
  const SEVERITY = {
    red: ["红色", "Red"], orange: ["橙色", "Orange"], yellow: ["黄色", "Yellow"], blue: ["蓝色", "Blue"],
  };
  const STATUS = {
    open: ["待处理", "Open"], acknowledged: ["已确认", "Acknowledged"],
    escalated: ["已升级", "Escalated"], suppressed: ["已抑制", "Suppressed"],
    resolved: ["已处置", "Resolved"], expired: ["已过期", "Expired"],
  };
  const ALARM = new Set(["red", "orange"]);        // these ring
  const CAN_ACK = new Set(["open", "escalated"]);
  const ROLES = {
    admin: ["管理员", "Admin"], duty_officer: ["值班员", "Duty officer"],
    fire_station: ["微型消防站", "Fire station"], care: ["养老护理", "Elderly care"],
    viewer: ["只读", "Viewer"],
  };

  applyLang();
  document.addEventListener("click", unlockAudio);
  document.addEventListener("keydown", unlockAudio);

  return {
    hazardName, SEVERITY, STATUS, ALARM, CAN_ACK, el, bilingual, text, lang, setLang,
    fetchJSON,
    loadSession, canAct, beep, controls, showProblem, clearProblem, formatDuration, byUrgency,
    liveAlerts, session: () => session,
  };
})();
