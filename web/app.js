// The reference page: wires RealtimeClient events to the status area, transcript and messages.
// URL options: ?lang=en, ?base=https://gateway.example (cross-origin gateway), ?processing=off
// (turns the browser's echo cancellation/noise suppression off, for level-sensitive tests),
// ?relay=1 (TURN only, to check a deployment's relay).

import { RealtimeClient } from "./realtime-client.js";
import { STRINGS, pickLanguage } from "./strings.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), button: $("main-button"), stateName: $("state-name"), hint: $("hint"),
  mute: $("mute-button"), messages: $("messages"), reconnect: $("reconnect"), transcript: $("transcript"),
  form: $("text-form"), input: $("text-input"), language: $("language"), audio: $("remote-audio"),
  latencyLast: $("latency-last"), latencyAverage: $("latency-average"), latencyList: $("latency-list"),
};
const page = { lang: pickLanguage(params.get("lang")), client: null, latencies: [], turns: new Map() };
const t = () => STRINGS[page.lang];

function applyLanguage() {
  document.documentElement.lang = page.lang;
  ui.language.value = page.lang;
  document.title = t().title;
  for (const node of document.querySelectorAll("[data-text]")) node.textContent = t()[node.dataset.text];
  for (const node of document.querySelectorAll("[data-placeholder]")) node.placeholder = t()[node.dataset.placeholder];
  render();
}

function conversationState() {
  return page.client?.conversationState ?? "idle";
}

function render() {
  const state = conversationState();
  const connecting = page.client?.state === "connecting";
  ui.status.dataset.state = connecting ? "connecting" : state;
  ui.stateName.textContent = t().states[state];
  ui.hint.textContent = connecting ? t().hints.connecting : t().hints[state];
  const action = state === "idle" ? "start" : state === "playing" || state === "processing" ? "interrupt" : "stop";
  ui.button.dataset.action = connecting ? "start" : action;
  ui.button.setAttribute("aria-label", t()[action]);
  ui.button.title = t()[action];
  ui.button.disabled = connecting;
  const live = state !== "idle";
  ui.mute.hidden = ui.form.hidden = !live;
  const muted = page.client?.muted ?? false;
  ui.mute.textContent = muted ? t().unmute : t().mute;
  ui.mute.setAttribute("aria-pressed", String(muted));
}

function showMessage(code, detail = {}) {
  const text = (t().errors[code] || t().errors.call_failed).replace("{message}", detail.serverMessage || "").trim();
  const item = document.createElement("p");
  item.className = `message ${detail.fatal === false ? "warning" : "error"}`;
  item.textContent = text;
  item.dataset.code = code;
  ui.messages.replaceChildren(item);
}

function turnElement(role, itemId) {
  const key = itemId ? `${role}:${itemId}` : null;
  if (key && page.turns.has(key)) return page.turns.get(key);
  ui.transcript.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.className = `turn ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? t().you : t().assistant;
  const text = document.createElement("span");
  text.className = "text";
  li.append(who, text);
  ui.transcript.append(li);
  if (key) page.turns.set(key, li);
  li.scrollIntoView({ block: "nearest", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth" });
  return li;
}

function onTranscript({ role, itemId, text, delta, final, interrupted }) {
  const li = turnElement(role, itemId);
  const span = li.querySelector(".text");
  span.textContent = text ?? span.textContent + (delta || "");
  li.classList.toggle("streaming", !final);
  if (interrupted) {
    li.classList.add("interrupted");
    let mark = li.querySelector(".mark");
    if (!mark) {
      mark = document.createElement("span");
      mark.className = "mark";
      li.append(mark);
    }
    mark.textContent = `(${t().interrupted})`;
  }
}

function onLatency(ms) {
  page.latencies.push(ms);
  const average = page.latencies.reduce((a, b) => a + b, 0) / page.latencies.length;
  ui.latencyLast.textContent = `${ms} ms`;
  ui.latencyAverage.textContent = `${Math.round(average)} ms`;
  const item = document.createElement("li");
  item.textContent = `${ms} ms`;
  ui.latencyList.append(item);
}

async function start() {
  ui.messages.replaceChildren();
  ui.reconnect.hidden = true;
  const client = new RealtimeClient({ baseUrl: params.get("base") || "", audioElement: ui.audio,
                                     audioProcessing: params.get("processing") !== "off",
                                     iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all" });
  page.client = client;
  client.addEventListener("conversationstate", render);
  client.addEventListener("statechange", render);
  client.addEventListener("transcript", (e) => onTranscript(e.detail));
  client.addEventListener("latency", (e) => onLatency(e.detail.ms));
  client.addEventListener("error", (e) => {
    showMessage(e.detail.code, e.detail);
    if (e.detail.fatal && (e.detail.code === "session_ended" || e.detail.code === "ice_failed")) {
      ui.reconnect.hidden = false;
    }
    render();
  });
  ui.audio.play().catch(() => {}); // unlock playback inside the user's tap (iOS autoplay rule)
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
  const action = ui.button.dataset.action;
  if (action === "start") start();
  else if (action === "interrupt") page.client.interrupt();
  else stop();
}

ui.button.addEventListener("click", mainAction);
ui.mute.addEventListener("click", () => { page.client?.setMuted(!page.client.muted); render(); });
$("reconnect-button").addEventListener("click", start);
ui.language.addEventListener("change", () => {
  page.lang = ui.language.value;
  localStorage.setItem("language", page.lang);
  applyLanguage();
});
ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (text && page.client) page.client.sendText(text);
  ui.input.value = "";
});
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest?.("input, textarea, select, button, summary");
  if (event.key === "Escape") {
    page.client?.interrupt();
  } else if ((event.key === " " || event.key === "Enter") && !typing) {
    event.preventDefault();
    if (!ui.button.disabled) mainAction();
  }
});
window.realtimePage = page; // for tests and debugging
applyLanguage();
