// One live alert stream (/api/stream) turned into messages for emit(): {kind: "open"},
// {kind: "alert", alert}, {kind: "resync"}, {kind: "down"}, {kind: "ended"}. Loaded by the
// pages (before common.js) and by live-worker.js, so a tab's own stream and the shared
// worker's behave alike.
"use strict";

function openLiveStream(emit) {
  const RECONNECT_MS = 5000;      // after the server refused the stream outright
  const connect = () => {
    const source = new EventSource("/api/stream");
    source.addEventListener("ended", () => {
      source.close();   // a reconnect with the dead cookie would only be refused
      emit({ kind: "ended" });
    });
    source.addEventListener("open", () => emit({ kind: "open" }));
    source.addEventListener("alert", (event) => {
      let alert;
      try {
        alert = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      emit({ kind: "alert", alert: alert });
    });
    source.addEventListener("resync", () => emit({ kind: "resync" }));
    source.addEventListener("error", () => {
      emit({ kind: "down" });
      if (source.readyState !== EventSource.CLOSED) return;   // the browser reconnects
      // Refused outright: a 401 means the session is gone; anything else is retried.
      fetch("/api/session", { credentials: "same-origin" }).then(
        (response) => response.status === 401 ? emit({ kind: "ended" })
          : setTimeout(connect, RECONNECT_MS),
        () => setTimeout(connect, RECONNECT_MS));
    });
  };
  connect();
}
