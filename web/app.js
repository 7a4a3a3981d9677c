// The reference page: wires RealtimeClient events to the status area, transcript and messages.
// URL options: ?lang=en, ?base=https://gateway.example (cross-origin gateway), ?processing=off
// (turns the browser's echo cancellation/noise suppression off, for level-sensitive tests),
// ?relay=1 (TURN only, to check a deployment's relay).

import { LatencyChart } from "./latency-chart.js";
import { AudioLevels } from "./level-meter.js";
import { RealtimeClient } from "./realtime-client.js";
import { STRINGS, pickLanguage, rememberLanguage } from "./strings.js";
import { LatencyView, MessageView, TranscriptView } from "./transcript-view.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), button: $("main-button"), stateName: $("state-name"), hint: $("hint"),
  mute: $("mute-button"), end: $("end-button"), reconnect: $("reconnect"), form: $("text-form"),
  input: $("text-input"), language: $("language"), audio: $("remote-audio"),
};
// `events`: the last server events, for tests and debugging (window.realtimePage.events).
const page = { lang: pickLanguage(params.get("lang")), client: null, wakeLock: null, events: [] };
const t = () => STRINGS[page.lang];
const transcript = new TranscriptView({ log: $("transcript-log"), list: $("transcript"), t });
const messages = new MessageView({ box: $("messages"), t });
const latency = new LatencyView({ last: $("latency-last"), average: $("latency-average"),
                                  list: $("latency-list"), t });
const latencyChart = new LatencyChart({ svg: $("latency-chart"), caption: $("latency-chart-caption"), t });
const levels = new AudioLevels({ root: $("levels"), mic: $("mic-level"), assistant: $("assistant-level"),
                                 hint: $("mic-hint"), t });
// Calls that drop (rather than fail to start) get a "reconnect?" prompt.
const DROPPED = new Set(["connection_lost", "session_ended", "ice_failed"]);

function applyLanguage() {
  document.documentElement.lang = page.lang;
  ui.language.value = page.lang;
  document.title = t().title;
  for (const node of document.querySelectorAll("[data-text]")) {
    if (!node.closest(".turn")) node.textContent = t()[node.dataset.text];
  }
  for (const node of document.querySelectorAll("[data-placeholder]")) node.placeholder = t()[node.dataset.placeholder];
  transcript.translate();
  messages.render();
  latencyChart.render();
  levels.translate();
  render();
}

/** The status area, main button and call controls, from the client's current state. */
function render() {
  const client = page.client;
  const connecting = client?.state === "connecting";
  const state = connecting ? "connecting" : client?.conversationState ?? "idle";
  const inCall = client?.state === "connected";
  const muted = inCall && client.muted;
  ui.status.dataset.state = state;
  ui.status.dataset.muted = String(muted);
  const shown = muted && state === "recording" ? "muted" : state;
  ui.stateName.textContent = t().states[shown];
  ui.hint.textContent = t().hints[shown];
  const action = !inCall ? "start" : ["processing", "playing", "interrupting"].includes(state) ? "interrupt" : "stop";
  ui.button.dataset.action = action;
  ui.button.setAttribute("aria-label", connecting ? t().hints.connecting : t()[action]);
  ui.button.title = t()[action];
  ui.button.setAttribute("aria-disabled", String(connecting)); // (not `disabled`: it keeps the focus)
  ui.button.setAttribute("aria-keyshortcuts", action === "interrupt" ? "Escape Space Enter" : "Space Enter");
  ui.mute.hidden = ui.form.hidden = !inCall;
  ui.end.hidden = !inCall || action !== "interrupt";
  ui.mute.setAttribute("aria-pressed", String(muted));
}

function onError(detail) {
  console.warn(`[realtime] ${detail.code}: ${detail.message}`, detail.serverCode || "");
  if (detail.code === "upstream_reconnecting" || detail.code === "connection_unstable") {
    messages.show(detail.code, { fatal: false }); // cleared when things recover
  } else {
    messages.show(detail.code, detail);
  }
  if (detail.fatal && DROPPED.has(detail.code)) ui.reconnect.hidden = false;
  render();
}

async function start() {
  messages.clear();
  ui.reconnect.hidden = true;
  const client = new RealtimeClient({ baseUrl: params.get("base") || "", audioElement: ui.audio,
                                     audioProcessing: params.get("processing") !== "off",
                                     iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all" });
  page.client = client;
  const on = (type, handler) => client.addEventListener(type, (e) => { if (page.client === client) handler(e.detail); });
  on("statechange", ({ state }) => {
    if (state === "closed") levels.stop();
    render();
    keepAwake(state === "connected");
  });
  on("conversationstate", ({ state }) => {
    if (state === "listening" || state === "playing") messages.clear("upstream_reconnecting");
    render();
  });
  on("serverevent", ({ event }) => { page.events.push(event); if (page.events.length > 1000) page.events.shift(); });
  on("transcript", (detail) => transcript.update(detail));
  on("latency", (detail) => { latency.add(detail); latencyChart.add(detail); });
  on("recovered", () => messages.clear("connection_unstable"));
  on("error", onError);
  ui.audio.play().catch(() => {}); // unlock playback inside the user's tap (iOS autoplay rule)
  levels.start(client); // its AudioContext too
  render();
  try {
    await client.connect();
  } catch { /* reported through the error event */ }
  render();
}

async function stop() {
  await page.client?.disconnect();
  render();
}

function mainAction() {
  if (page.client?.state === "connecting") return;
  const action = ui.button.dataset.action;
  if (action === "start") start();
  else if (action === "interrupt") page.client.interrupt();
  else stop();
}

/** Keep a phone's screen on during a call (a sleeping screen may suspend the page). */
async function keepAwake(on) {
  try {
    if (on && !page.wakeLock && document.visibilityState === "visible" && navigator.wakeLock) {
      page.wakeLock = await navigator.wakeLock.request("screen");
      page.wakeLock.addEventListener("release", () => { page.wakeLock = null; }); // e.g. tab hidden
    } else if (!on && page.wakeLock) {
      await page.wakeLock.release();
      page.wakeLock = null;
    }
  } catch { /* not supported or not allowed: the call works anyway */ }
}

ui.button.addEventListener("click", mainAction);
ui.end.addEventListener("click", stop);
ui.mute.addEventListener("click", () => { page.client?.setMuted(!page.client.muted); render(); });
$("reconnect-button").addEventListener("click", () => { start(); ui.button.focus(); });
ui.language.addEventListener("change", () => {
  page.lang = ui.language.value;
  rememberLanguage(page.lang);
  applyLanguage();
});
ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (text && page.client?.sendText(text)) ui.input.value = "";
});
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest?.("input, textarea, select, button, summary, a");
  if (event.key === "Escape") {
    if (page.client?.interrupt()) event.preventDefault();
  } else if ((event.key === " " || event.key === "Enter") && !typing && !event.repeat) {
    event.preventDefault();
    mainAction();
  }
});
// Leaving the page hangs up at once (the DELETE is sent with keepalive), freeing the gateway.
addEventListener("pagehide", () => { if (page.client?.state === "connected") page.client.disconnect(); });
document.addEventListener("visibilitychange", () => { if (page.client?.state === "connected") keepAwake(true); });
page.levels = levels;
window.realtimePage = page; // for tests and debugging
applyLanguage();
