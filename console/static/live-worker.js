// A shared worker holding one live alert stream for every tab of a session that connects,
// for browsers without Web Locks (they need https or localhost; a console on plain http on
// the LAN has none). Each EventSource holds an HTTP/1.1 connection and a host gets only 6
// per browser profile. Messages are the ones common.js's liveAlerts delivers.
"use strict";

importScripts("/static/live-stream.js");

const ports = new Set();
let up = false;

function send(message) {
  if (message.kind === "open") up = true;
  else if (message.kind === "down") up = false;
  for (const port of ports) port.postMessage(message);
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

openLiveStream(send);
