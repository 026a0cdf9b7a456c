// The swarm health page: fetch /v1/swarm and render it. Names come from workers, so every value
// is set with textContent (never as HTML).
"use strict";

const REFRESH_MS = 5000;

function cell(row, text, numeric) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  row.appendChild(td);
}

function fill(id, rows, columns) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const [value, numeric] of columns(item)) cell(tr, value, numeric);
    body.appendChild(tr);
  }
}

function ago(at, now) {
  const s = Math.max(0, Math.round(now - at));
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function render(swarm) {
  const set = (id, value) => { document.getElementById(id).textContent = String(value); };
  set("live-workers", swarm.live_workers);
  set("model-count", swarm.models.length);
  set("tps-1m", swarm.tokens_per_s_1m.toFixed(1));
  set("tps-5m", swarm.tokens_per_s_5m.toFixed(1));
  set("jobs-queued", swarm.jobs.queued || 0);
  set("jobs-running", swarm.jobs.running || 0);
  fill("models", swarm.models, (m) => [[m.name, false], [m.workers, true], [m.price, true], [m.n_ctx, true]]);
  fill("workers", swarm.workers, (w) => [[w.node_id + "…", false], [w.models.join(", "), false],
                                         [ago(w.last_seen, swarm.at), true]]);
  const series = document.getElementById("series");
  series.replaceChildren();
  const peak = Math.max(1, ...swarm.series.map((m) => m.tokens));
  for (const m of swarm.series) {
    const bar = document.createElement("div");
    bar.style.height = Math.round((100 * m.tokens) / peak) + "%";
    bar.title = new Date(m.minute * 1000).toLocaleTimeString() + ": " + m.tokens + " tokens";
    series.appendChild(bar);
  }
  set("series-note", "last " + swarm.series.length + " minutes, peak " + peak + " tokens/min");
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const answer = await fetch("/v1/swarm", { cache: "no-store" });
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
    status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
    status.className = "";
  } catch (error) {
    status.textContent = "Could not load the swarm's state: " + error.message;
    status.className = "error";
  }
}

// The event stream (GET /v1/swarm/events): Server-Sent Events, one named event per kind. A
// reconnecting EventSource asks again from the start (?since=0), so events already shown are skipped.
const EVENT_KINDS = ["worker_joined", "worker_left", "job_queued", "job_dispatched", "job_done", "job_failed",
                     "check_done", "notice"];
const MAX_EVENTS = 20;
let lastSeq = 0;

function showEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch (error) {
    return;
  }
  if (typeof event.seq !== "number" || event.seq <= lastSeq) return;
  lastSeq = event.seq;
  const list = document.getElementById("events");
  const item = document.createElement("li");
  const when = document.createElement("time");
  when.textContent = new Date(event.at * 1000).toLocaleTimeString();
  item.appendChild(when);
  item.appendChild(document.createTextNode(String(event.message)));
  item.dataset.kind = String(event.kind);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function follow() {
  const status = document.getElementById("events-status");
  if (typeof EventSource === "undefined") {
    status.textContent = "this browser cannot follow events.";
    return;
  }
  const source = new EventSource("/v1/swarm/events?since=0");
  for (const kind of EVENT_KINDS) source.addEventListener(kind, showEvent);
  source.onopen = () => { status.textContent = "connected."; status.className = ""; };
  source.onerror = () => {
    const closed = source.readyState === EventSource.CLOSED;
    status.textContent = closed ? "the stream was refused; reload to retry." : "reconnecting…";
    status.className = "error";
  };
}

refresh();
setInterval(refresh, REFRESH_MS);
follow();
