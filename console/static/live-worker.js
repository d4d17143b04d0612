// A shared worker holding one live alert stream for every tab of a session that connects,
// for browsers without Web Locks (they need https or localhost; a console on plain http on
// the LAN has none). Each EventSource holds an HTTP/1.1 connection and a host gets only 6
// per browser profile. Messages are the ones common.js's liveAlerts delivers.
"use strict";

const RECONNECT_MS = 5000;        // after the server refused the stream outright
const ports = new Set();
let up = false;

function send(message) {
  for (const port of ports) port.postMessage(message);
}

function connect() {
  const source = new EventSource("/api/stream");
  // The session is gone: every tab goes to the login page; nothing to reconnect for.
  source.addEventListener("ended", () => {
    source.close();
    send({ kind: "ended" });
  });
  source.addEventListener("open", () => {
    up = true;
    send({ kind: "open" });
  });
  source.addEventListener("alert", (event) => {
    let alert;
    try {
      alert = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    send({ kind: "alert", alert: alert });
  });
  source.addEventListener("resync", () => send({ kind: "resync" }));
  source.addEventListener("error", () => {
    up = false;
    send({ kind: "down" });
    if (source.readyState !== EventSource.CLOSED) return;   // the browser reconnects
    // Refused outright: a 401 means the session is gone; anything else is retried.
    fetch("/api/session", { credentials: "same-origin" }).then(
      (response) => response.status === 401 ? send({ kind: "ended" })
        : setTimeout(connect, RECONNECT_MS),
      () => setTimeout(connect, RECONNECT_MS));
  });
}

self.addEventListener("connect", (event) => {
  const port = event.ports[0];
  ports.add(port);
  port.addEventListener("message", (message) => {
    if (message.data && message.data.kind === "bye") ports.delete(port);
  });
  port.start();
  // Connected before this, so a tab loading its list now misses nothing sent later.
  if (up) port.postMessage({ kind: "open" });
});

connect();
