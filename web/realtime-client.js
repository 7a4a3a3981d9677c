// Realtime voice client for the gateway, or any endpoint shaped like OpenAI's Realtime WebRTC
// interface. An ES module with no build step and no dependencies.
//
//   import { RealtimeClient } from "https://gateway.example/realtime-client.js";
//   const client = new RealtimeClient({ baseUrl: "https://gateway.example" });
//   client.addEventListener("transcript", (e) => console.log(e.detail.role, e.detail.text));
//   await client.connect();   // inside a click handler: browsers start audio on a user gesture
//
// Events (CustomEvent, payload in `detail`):
//   statechange        {state}  idle | connecting | connected | closed
//   conversationstate  {state}  idle | recording | listening | processing | playing | interrupting
//   transcript         {role: "user"|"assistant", itemId, text (so far), delta, final,
//                       interrupted (reply cut at what was heard; fullText), pending, failed, discarded}
//   latency            {ms, startedMs, audible}  end of user speech → first audible answer
//   error              {code (one of ERROR_CODES), message, serverCode, serverMessage, fatal}
//   recovered          {resumed} the audio is back after a `connection_unstable` warning; `resumed`:
//                      on a new connection to the same call (same conversation, e.g. Wi-Fi → 4G)
//   session            {session} the session as the server reports it (created/updated)
//   serverevent        {event}  every data-channel event, as received
// (Types: realtime-client.d.ts. Call set-up and resume: call-connection.js; the conversation
// itself, from the server events: conversation-tracker.js.)

import { ClientError, clientSecret, negotiate, openMicrophone, resumeCall } from "./call-connection.js";
import { ConversationTracker } from "./conversation-tracker.js";
import { measureTurn } from "./latency-meter.js";

export { ClientError } from "./call-connection.js";
export { CONVERSATION_STATES } from "./conversation-tracker.js";

/** Stable error codes; `fatal` errors end the call. */
export const ERROR_CODES = Object.freeze([
  // before the call: browser and device
  "insecure_context", "unsupported_browser", "mic_denied", "mic_missing", "mic_busy",
  // before the call: the gateway's HTTP interface
  "gateway_unreachable", "not_authorized", "origin_forbidden", "rate_limited", "gateway_busy",
  "token_rejected", "call_failed",
  // the media connection
  "ice_failed", "turn_rejected", "connection_unstable", "connection_lost",
  // during the call
  "session_ended", "gateway_draining", "upstream_reconnecting", "upstream_error", "event_rejected",
]);

export class RealtimeClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] the gateway's origin ("" = the page's own)
   * @param {object} [options.session] session config asked for when minting the client secret
   * @param {string | (() => Promise<string | {value: string, ice_servers?: RTCIceServer[]}>)}
   *        [options.clientSecret] a secret minted by your backend, instead of asking the gateway
   * @param {HTMLAudioElement} [options.audioElement] where the assistant plays (one is made if absent)
   * @param {boolean} [options.audioProcessing] echo cancellation, noise suppression, AGC (default on)
   * @param {MediaStream} [options.stream] use this audio instead of opening the microphone
   * @param {number} [options.iceGatheringTimeoutMs] offer the candidates gathered by then (default 1.5 s)
   * @param {number} [options.connectTimeoutMs] ICE + data channel must be up by then (default 15 s)
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] "relay" = TURN only
   * @param {number} [options.resumeWindowMs] how long a dropped call is brought back on a new
   *        connection (the gateway's X-Resume-Token) before giving up; 0 = never (default 25 s,
   *        under the gateway's default 30 s RESUME_GRACE)
   * @param {typeof fetch} [options.fetch] used for every request to the gateway (default: the global)
   */
  constructor({ baseUrl = "", session = null, clientSecret = null, audioElement = null, audioProcessing = true,
                stream = null, iceGatheringTimeoutMs = 1500, connectTimeoutMs = 15000, iceTransportPolicy = "all",
                resumeWindowMs = 25000, fetch: fetchImpl = null } = {}) {
    super();
    Object.assign(this, { session, clientSecret, audioElement, audioProcessing, iceGatheringTimeoutMs,
                          connectTimeoutMs, iceTransportPolicy, resumeWindowMs });
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.state = "idle";
    this.muted = false;
    this.callUrl = null; // the call's Location, for DELETE
    this.resumeToken = null; // the gateway's X-Resume-Token: brings this call back on a new connection
    this._iceServers = [];
    this._resuming = null; // the running resume (a promise), if any
    this._givenStream = stream;
    this._stream = this._remoteStream = this._pc = this._channel = null;
    this._attempt = 0;
    this._lastServerError = null;
    this._tracker = this._newTracker();
  }

  get conversationState() { return this._tracker.state; }
  get peerConnection() { return this._pc; }
  /** The audio being sent (the microphone, or the `stream` option) while a call is up: for a level meter. */
  get localStream() { return this._stream; }
  /** The assistant's audio as received (a new stream after a resume) while a call is up: for a level meter. */
  get remoteStream() { return this._remoteStream; }

  // --- lifecycle ------------------------------------------------------------------------------

  /** Open the call; resolves once audio and events flow. Rejects (and emits `error`) on failure. */
  async connect() {
    if (this.state === "connecting" || this.state === "connected") return;
    const attempt = ++this._attempt;
    const current = () => { if (attempt !== this._attempt) throw new ClientError("aborted", "Disconnected."); };
    this._setState("connecting");
    this._tracker = this._newTracker();
    this._lastServerError = null;
    try {
      if (!window.isSecureContext) {
        throw new ClientError("insecure_context", "Microphone access needs https or localhost.");
      }
      if (!window.RTCPeerConnection || (!this._givenStream && !navigator.mediaDevices?.getUserMedia)) {
        throw new ClientError("unsupported_browser", "This browser lacks WebRTC or microphone access.");
      }
      const request = (path, init) => this._request(path, init);
      const secret = await clientSecret(request, this.clientSecret, this.session);
      current();
      this._stream = this._givenStream || await openMicrophone(this.audioProcessing);
      current();
      this._stream.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
      this._iceServers = secret.ice_servers || [];
      const { pc, channel } = this._buildPeer();
      [this._pc, this._channel] = [pc, channel];
      await negotiate(pc, channel, {
        request, token: secret.value,
        iceGatheringTimeoutMs: this.iceGatheringTimeoutMs, openTimeoutMs: () => this.connectTimeoutMs, current,
        rejectedCode: (status) => (status === 401 ? "token_rejected" : "call_failed"),
        answered: (response) => {
          const location = response.headers.get("Location");
          this.callUrl = location ? this._url(location) : null;
          this.resumeToken = response.headers.get("X-Resume-Token");
        } });
      this._setState("connected");
      this._tracker.start();
    } catch (error) {
      if (attempt !== this._attempt) throw error; // disconnect() cleaned up already
      this._fail(error);
      throw error;
    }
  }

  /** Hang up: DELETE the call (survives page unload) and close the peer connection. */
  async disconnect() {
    this._attempt++;
    const callUrl = this.callUrl;
    this.callUrl = this.resumeToken = null;
    this._teardown();
    this._setState("closed");
    this._tracker.stop();
    if (callUrl) {
      try {
        await this.fetch(callUrl, { method: "DELETE", keepalive: true });
      } catch { /* the gateway also ends the call when the peer connection closes */ }
    }
  }

  // --- controls -------------------------------------------------------------------------------

  /** Stop the assistant now: cancel its reply and drop the audio queued for playback. */
  interrupt() { return this._tracker.interrupt(); }

  setMuted(muted) {
    this.muted = Boolean(muted);
    this._stream?.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
  }

  /** Say something by text; the assistant answers as it would to speech. */
  sendText(text) {
    const item = { type: "message", role: "user", content: [{ type: "input_text", text }] };
    if (!this._tracker.sendUser({ type: "conversation.item.create", item })) return false;
    this._tracker.expectResponse();
    this._tracker.sendUser({ type: "response.create" });
    this._emit("transcript", { role: "user", itemId: null, text, delta: text, final: true, interrupted: false });
    return true;
  }

  updateSession(session) {
    return this._tracker.sendUser({ type: "session.update", session: { type: "realtime", ...session } });
  }

  /** Send any client event on the data channel; false when the channel is not open. */
  send(event) {
    if (this._channel?.readyState !== "open") return false;
    this._channel.send(JSON.stringify(event));
    return true;
  }

  // --- signaling ------------------------------------------------------------------------------

  _url(path) { return /^https?:/.test(path) ? path : `${this.baseUrl || location.origin}${path}`; }

  async _request(path, init) {
    try {
      return await this.fetch(this._url(path), init);
    } catch (error) {
      throw new ClientError("gateway_unreachable", `The gateway did not answer: ${error.message}`);
    }
  }

  /** A peer connection with the mic track and the event channel; the caller makes it current. */
  _buildPeer() {
    const pc = new RTCPeerConnection({ iceServers: this._iceServers, iceTransportPolicy: this.iceTransportPolicy });
    pc.addEventListener("track", (e) => {
      if (pc === this._pc || this._resuming) this._playRemote(e.streams[0] || new MediaStream([e.track]));
    });
    pc.addEventListener("connectionstatechange", () => this._onConnectionState(pc));
    pc.addEventListener("icecandidateerror", (e) => {
      if (e.errorCode === 401 || e.errorCode === 438) { // TURN refused the (expired?) credentials
        this._emit("error", { code: "turn_rejected", message: `${e.url}: ${e.errorText}`, fatal: false });
      }
    });
    for (const track of this._stream.getAudioTracks()) pc.addTrack(track, this._stream);
    const channel = pc.createDataChannel("oai-events");
    channel.addEventListener("message", (e) => this._onMessage(e.data));
    channel.addEventListener("close", () => {
      if (channel !== this._channel || this.state !== "connected") return;
      const error = this._endedError(pc);
      if (error.code === "connection_lost") this._connectionLost(pc);
      else this._fail(error);
    });
    return { pc, channel };
  }

  /** During a call: a path that wavers gets a warning, one that stays down a new connection. */
  _onConnectionState(pc) {
    if (pc !== this._pc || this.state !== "connected" || this._resuming) return;
    const state = pc.connectionState;
    clearTimeout(this._lostTimer);
    if (state === "disconnected") {
      // Often a hiccup that ICE rides out; if not, the network changed under us: resume soon.
      this._unstable = true;
      this._emit("error", { code: "connection_unstable", message: "The connection is unstable.", fatal: false });
      this._lostTimer = setTimeout(() => this._connectionLost(pc), this._canResume() ? 1500 : 5000);
    } else if (state === "connected" && this._unstable) {
      this._unstable = false;
      this._emit("recovered", { resumed: false });
    } else if (state === "failed") {
      this._connectionLost(pc);
    } else if (state === "closed") {
      this._fail(this._endedError(pc));
    }
  }

  _canResume() { return Boolean(this.resumeToken) && this.resumeWindowMs > 0; }

  /** The path to the gateway is gone (not the call): bring the call back, or report the loss. */
  _connectionLost(pc) {
    if (pc !== this._pc || this.state !== "connected" || this._resuming) return;
    if (pc.connectionState === "connected" && this._channel?.readyState === "open") return;
    if (this._canResume()) this._resume();
    else this._fail(new ClientError("connection_lost", "The connection to the gateway was lost."));
  }

  /** Offer new connections with the resume token until one is up or the window closes. The
   *  conversation (transcript, state) carries on: only the peer connection is replaced. */
  _resume() {
    const attempt = this._attempt;
    const current = () => attempt === this._attempt;
    this._unstable = true;
    this._resuming = resumeCall({ windowMs: this.resumeWindowMs, current,
                                  reconnect: (deadline) => this._reconnect(current, deadline) })
      .then((resumed) => {
        if (!resumed) return;
        this._unstable = false;
        this._emit("recovered", { resumed: true });
      }, (error) => this._fail(error))
      .finally(() => { if (current()) this._resuming = null; });
  }

  /** One resume attempt: a new peer connection for the same call, made current once it is up. */
  async _reconnect(isCurrent, deadline) {
    const { pc, channel } = this._buildPeer();
    try {
      await negotiate(pc, channel, {
        request: (path, init) => this._request(path, init), token: this.resumeToken,
        iceGatheringTimeoutMs: this.iceGatheringTimeoutMs,
        openTimeoutMs: () => Math.max(1000, Math.min(this.connectTimeoutMs, deadline - performance.now())),
        current: () => { if (!isCurrent()) throw new ClientError("aborted", "Disconnected."); },
        rejectedCode: () => "connection_lost",
        answered: (response) => { this.resumeToken = response.headers.get("X-Resume-Token") || this.resumeToken; } });
    } catch (error) {
      pc.close();
      throw error;
    }
    const [oldPc, oldChannel] = [this._pc, this._channel];
    [this._pc, this._channel] = [pc, channel];
    oldChannel?.close();
    oldPc?.close();
  }

  /** The call went away under us: the server hung up (usually saying why just before), or the
   *  network did. */
  _endedError(pc) {
    const server = this._lastServerError && performance.now() - this._lastServerError.at < 5000
      ? this._lastServerError.error : null;
    if (!server && pc.connectionState !== "connected") {
      return new ClientError("connection_lost", "The connection to the gateway was lost.");
    }
    const error = new ClientError("session_ended", "The gateway ended the call.");
    error.server = server;
    return error;
  }

  _playRemote(stream) {
    if (!this.audioElement) {
      this.audioElement = document.createElement("audio");
      this.audioElement.autoplay = true;
    }
    this._remoteStream = stream;
    this.audioElement.srcObject = stream;
    this.audioElement.play?.().catch(() => { /* started again by the next user gesture */ });
  }

  _fail(error) {
    const code = ERROR_CODES.includes(error.code) ? error.code : "call_failed";
    this._attempt++;
    const callUrl = this.callUrl;
    this.callUrl = this.resumeToken = null;
    this._teardown();
    if (callUrl && code !== "session_ended") this.fetch(callUrl, { method: "DELETE", keepalive: true }).catch(() => {});
    this._setState("closed");
    this._tracker.stop();
    this._emit("error", { code, message: error.message, serverCode: error.server?.code,
                          serverMessage: error.server?.message, fatal: true });
  }

  _teardown() {
    clearTimeout(this._lostTimer);
    this._resuming = null; // a resume in flight sees the attempt change and closes its own peer
    this._unstable = false;
    const channel = this._channel;
    this._channel = null; // its close event is ours, not the gateway's
    channel?.close();
    this._pc?.close();
    if (this._stream !== this._givenStream) this._stream?.getTracks().forEach((t) => t.stop());
    this._pc = this._stream = this._remoteStream = null;
  }

  // --- server events --------------------------------------------------------------------------

  _newTracker() {
    return new ConversationTracker({ send: (event) => this.send(event), emit: (type, detail) => {
      if (type === "turnaudio") this._measureLatency(detail);
      else this._emit(type, detail);
    } });
  }

  _onMessage(data) {
    let event;
    try { event = JSON.parse(data); } catch { return; }
    if (event?.type === "error") this._lastServerError = { error: event.error || {}, at: performance.now() };
    this._emit("serverevent", { event });
    this._tracker.handle(event);
  }

  async _measureLatency(turn) {
    const pc = this._pc;
    const result = await measureTurn(() => (pc === this._pc ? pc : null), turn);
    if (pc === this._pc) this._emit("latency", result);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("statechange", { state });
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}
