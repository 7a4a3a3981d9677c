// Realtime voice client for the gateway (or any OpenAI-compatible Realtime WebRTC endpoint).
// No build step, no dependencies: import it as an ES module.
//
//   const client = new RealtimeClient({ baseUrl: "https://gateway.example" });
//   client.addEventListener("transcript", (e) => console.log(e.detail.role, e.detail.text));
//   await client.connect();
//
// Events (CustomEvent, payload in `detail`):
//   statechange        {state}   idle | connecting | connected | closed
//   conversationstate  {state}   idle | recording | listening | processing | playing | interrupting
//   transcript         {role, itemId, text, delta, final, interrupted}
//   latency            {ms}      end of user speech → first assistant audio (per turn)
//   error              {code, message, serverMessage, serverCode, fatal}
//   serverevent        {event}   every event from the data channel, as received

export const ERROR_CODES = Object.freeze([
  "insecure_context", "mic_denied", "mic_missing", "gateway_unreachable", "token_rejected",
  "call_failed", "ice_failed", "turn_rejected", "session_ended", "upstream_error",
]);

const PT_BR_CHARS_PER_MS = 0.014;
const INTERNAL = "client_internal_"; // fallback speaking rate when the server cannot tell what was heard

export class RealtimeClient extends EventTarget {
  constructor({ baseUrl = "", session = null, audioElement = null, audioProcessing = true,
                iceGatheringTimeoutMs = 1500, iceTransportPolicy = "all", fetchImpl = null } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.session = session;
    this.audioElement = audioElement;
    this.audioProcessing = audioProcessing;
    this.iceGatheringTimeoutMs = iceGatheringTimeoutMs;
    this.iceTransportPolicy = iceTransportPolicy; // "relay": TURN only, as behind a strict firewall
    this.fetch = fetchImpl || window.fetch.bind(window);
    this.state = "idle";
    this.conversationState = "idle";
    this.muted = false;
    this._pc = null;
    this._channel = null;
    this._stream = null;
    this._location = null;
    this._items = new Map(); // assistant item id → {text, startedAt}
    this._speechStoppedAt = null;
    this._silenceMs = 500;
    this._pendingLatency = false;
  }

  // --- lifecycle ------------------------------------------------------------------------------

  async connect() {
    if (this.state === "connecting" || this.state === "connected") return;
    this._setState("connecting");
    try {
      if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
        throw new ClientError("insecure_context", "Microphone access needs https or localhost.");
      }
      const secret = await this._mintSecret();
      this._stream = await this._openMic();
      const pc = (this._pc = new RTCPeerConnection({ iceServers: secret.ice_servers || [],
                                                      iceTransportPolicy: this.iceTransportPolicy }));
      pc.addEventListener("track", (e) => this._playRemote(e.streams[0] || new MediaStream([e.track])));
      pc.addEventListener("connectionstatechange", () => this._onConnectionState(pc.connectionState));
      pc.addEventListener("icecandidateerror", (e) => {
        if (e.errorCode === 401 || e.errorCode === 438) {  // TURN refused the (expired?) credentials
          this._emit("error", { code: "turn_rejected", message: `${e.url}: ${e.errorText}`, fatal: false });
        }
      });
      for (const track of this._stream.getAudioTracks()) pc.addTrack(track, this._stream);
      this._channel = pc.createDataChannel("oai-events");
      this._channel.addEventListener("message", (e) => this._onServerEvent(e.data));
      this._channel.addEventListener("close", () => {
        if (this.state === "connected") {
          this._fail(new ClientError("session_ended", "The gateway ended the call."));
        }
      });
      await pc.setLocalDescription(await pc.createOffer());
      await this._iceGathered(pc);
      const answer = await this._createCall(secret.value, pc.localDescription.sdp);
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (error) {
      this._fail(error);
      throw error;
    }
  }

  async disconnect() {
    const location = this._location;
    this._location = null;
    this._teardown();
    if (location) {
      try {
        await this.fetch(this._url(location), { method: "DELETE" });
      } catch { /* the call ends anyway when the peer connection closes */ }
    }
    this._setState("closed");
    this._setConversation("idle");
  }

  // --- controls -------------------------------------------------------------------------------

  /** Stop the assistant now: cancel the response and drop the audio queued for playback. */
  interrupt() {
    if (this.conversationState !== "playing" && this.conversationState !== "processing") return;
    this._setConversation("interrupting");
    this.send({ type: "response.cancel" });
    this.send({ type: "output_audio_buffer.clear" });
  }

  setMuted(muted) {
    this.muted = muted;
    this._stream?.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  }

  sendText(text) {
    this.send({ type: "conversation.item.create",
                item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
    this.send({ type: "response.create" });
    this._emit("transcript", { role: "user", itemId: null, text, delta: text, final: true });
  }

  updateSession(session) {
    this.send({ type: "session.update", session: { type: "realtime", ...session } });
  }

  send(event) {
    if (this._channel?.readyState !== "open") return false;
    this._channel.send(JSON.stringify(event));
    return true;
  }

  // --- signaling ------------------------------------------------------------------------------

  _url(path) {
    return path.startsWith("http") ? path : `${this.baseUrl}${path}`;
  }

  async _request(path, init) {
    try {
      return await this.fetch(this._url(path), init);
    } catch (error) {
      throw new ClientError("gateway_unreachable", `The gateway did not answer: ${error.message}`);
    }
  }

  async _mintSecret() {
    const body = this.session ? { session: { type: "realtime", ...this.session } } : {};
    const response = await this._request("/v1/realtime/client_secrets", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!response.ok) throw await errorFrom(response, "call_failed");
    return response.json();
  }

  async _createCall(secret, sdp) {
    const response = await this._request("/v1/realtime/calls", {
      method: "POST", body: sdp,
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${secret}` } });
    if (!response.ok) {
      throw await errorFrom(response, response.status === 401 ? "token_rejected" : "call_failed");
    }
    this._location = response.headers.get("Location");
    return response.text();
  }

  async _openMic() {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: {
        echoCancellation: this.audioProcessing, noiseSuppression: this.audioProcessing,
        autoGainControl: this.audioProcessing } });
    } catch (error) {
      if (error.name === "NotAllowedError" || error.name === "SecurityError") {
        throw new ClientError("mic_denied", "Microphone permission was denied.");
      }
      throw new ClientError("mic_missing", `No usable microphone: ${error.message}`);
    }
  }

  _iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, this.iceGatheringTimeoutMs); // send what we have: host candidates suffice on a LAN
    });
  }

  _playRemote(stream) {
    if (!this.audioElement) {
      this.audioElement = document.createElement("audio");
      this.audioElement.autoplay = true;
    }
    this.audioElement.srcObject = stream;
    this.audioElement.play?.().catch(() => { /* started again by the next user gesture */ });
  }

  _onConnectionState(state) {
    if (state === "connected") {
      this._setState("connected");
      this._setConversation("recording");
    } else if (state === "failed") {
      this._fail(new ClientError("ice_failed", "The audio connection could not be established."));
    } else if (state === "disconnected") {
      // Often transient (a network hiccup): give ICE a moment to recover before giving up.
      clearTimeout(this._disconnectTimer);
      this._disconnectTimer = setTimeout(() => {
        if (this._pc?.connectionState === "disconnected") {
          this._fail(new ClientError("session_ended", "The connection to the gateway was lost."));
        }
      }, 4000);
    } else if (state === "closed" && this.state === "connected") {
      this._fail(new ClientError("session_ended", "The call was closed."));
    }
  }

  _fail(error) {
    const code = error.code || "call_failed";
    // A session the server ended usually said why just before: pass that reason on.
    const serverMessage = code === "session_ended" ? this._lastServerError : undefined;
    this._teardown();
    this._setState("closed");
    this._setConversation("idle");
    this._emit("error", { code, message: error.message, serverMessage, fatal: true });
  }

  _teardown() {
    clearTimeout(this._disconnectTimer);
    const channel = this._channel;
    this._channel = null; // its close event is ours, not the gateway's
    channel?.close();
    this._pc?.close();
    this._stream?.getTracks().forEach((t) => t.stop());
    this._pc = this._stream = null;
  }

  // --- server events --------------------------------------------------------------------------

  _onServerEvent(data) {
    let event;
    try { event = JSON.parse(data); } catch { return; }
    this._emit("serverevent", { event });
    const handler = HANDLERS[event.type];
    if (handler) handler.call(this, event);
  }

  _assistant(itemId) {
    if (!this._items.has(itemId)) this._items.set(itemId, { text: "", interrupted: false });
    return this._items.get(itemId);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("statechange", { state });
  }

  _setConversation(state) {
    if (this.conversationState === state) return;
    this.conversationState = state;
    this._emit("conversationstate", { state });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

const HANDLERS = {
  "session.created"(event) { this._silenceFrom(event.session); },
  "session.updated"(event) { this._silenceFrom(event.session); },
  "input_audio_buffer.speech_started"() {
    this._setConversation(this.conversationState === "playing" ? "interrupting" : "listening");
  },
  "input_audio_buffer.speech_stopped"() {
    this._speechStoppedAt = performance.now() - this._silenceMs; // speech ended one silence earlier
    this._pendingLatency = true;
    this._setConversation("processing");
  },
  "response.created"() {
    if (this.conversationState !== "playing") this._setConversation("processing");
  },
  "conversation.item.input_audio_transcription.delta"(event) {
    this._emit("transcript", { role: "user", itemId: event.item_id, delta: event.delta, text: null, final: false });
  },
  "conversation.item.input_audio_transcription.completed"(event) {
    this._emit("transcript", { role: "user", itemId: event.item_id, text: event.transcript, final: true });
  },
  "response.output_audio_transcript.delta"(event) { this._assistantDelta(event); },
  "response.output_text.delta"(event) { this._assistantDelta(event); },
  "response.output_audio_transcript.done"(event) { this._assistantDone(event.item_id, event.transcript); },
  "response.output_text.done"(event) { this._assistantDone(event.item_id, event.text); },
  "output_audio_buffer.started"() {
    if (this._pendingLatency && this._speechStoppedAt !== null) {
      this._emit("latency", { ms: Math.max(0, Math.round(performance.now() - this._speechStoppedAt)) });
    }
    this._pendingLatency = false;
    this._setConversation("playing");
  },
  "output_audio_buffer.stopped"() { this._setConversation("recording"); },
  "output_audio_buffer.cleared"() { this._setConversation("recording"); },
  "conversation.item.truncated"(event) {
    const item = this._assistant(event.item_id);
    item.interrupted = true;
    item.heardChars = Math.round(event.audio_end_ms * PT_BR_CHARS_PER_MS);
    // The server may know exactly what was heard (the local engine keeps the cut text).
    this.send({ type: "conversation.item.retrieve", item_id: event.item_id, event_id: `${INTERNAL}retrieve` });
    this._emitInterrupted(event.item_id);
  },
  "conversation.item.retrieved"(event) {
    const item = this._items.get(event.item.id);
    const heard = event.item.content?.[0]?.transcript;
    if (item?.interrupted && typeof heard === "string" && heard.length) {
      item.heardText = heard;
      this._emitInterrupted(event.item.id);
    }
  },
  error(event) {
    const error = event.error || {};
    if (error.event_id?.startsWith(INTERNAL)) return; // our own bookkeeping, not the user's concern
    this._lastServerError = error.message;
    this._emit("error", { code: "upstream_error", message: error.message || "Upstream error",
                          serverMessage: error.message, serverCode: error.code, fatal: false });
  },
};

Object.assign(RealtimeClient.prototype, {
  _silenceFrom(session) {
    const ms = session?.audio?.input?.turn_detection?.silence_duration_ms;
    if (typeof ms === "number") this._silenceMs = ms;
  },
  _assistantDelta(event) {
    const item = this._assistant(event.item_id);
    item.text += event.delta;
    this._emit("transcript", { role: "assistant", itemId: event.item_id, delta: event.delta, text: item.text,
                               final: false });
  },
  _assistantDone(itemId, text) {
    const item = this._assistant(itemId);
    if (item.interrupted) {
      this._emitInterrupted(itemId);
      return;
    }
    item.text = text ?? item.text;
    this._emit("transcript", { role: "assistant", itemId, text: item.text, final: true, interrupted: false });
  },
  /** An interrupted reply, cut at what was heard: the server's truncated text, else an estimate. */
  _emitInterrupted(itemId) {
    const item = this._items.get(itemId);
    const text = item.heardText ?? cutAtWord(item.text, item.heardChars);
    this._emit("transcript", { role: "assistant", itemId, text, final: true, interrupted: true });
  },
});

function cutAtWord(text, chars) {
  if (text.length <= chars) return text;
  const cut = text.lastIndexOf(" ", chars);
  return `${text.slice(0, cut > 0 ? cut : chars)}…`;
}

class ClientError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function errorFrom(response, code) {
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    message = body.error?.message || message;
  } catch { /* not JSON */ }
  return new ClientError(code, message);
}
