// What a person perceives of a call, derived from the Realtime server events alone: the
// conversation state, each turn's transcript, where an interrupted reply was cut, and when a
// turn's answer began to play. No DOM and no WebRTC here: RealtimeClient feeds events in and
// forwards what comes out, so this logic can be checked by feeding it event sequences.

/** The six conversation states of the original spec (Inativo … Interrompendo). */
export const CONVERSATION_STATES = Object.freeze(
  ["idle", "recording", "listening", "processing", "playing", "interrupting"]);

/** Prefix of the event ids this client gives its own bookkeeping events. */
export const INTERNAL_EVENT_PREFIX = "event_client_";

const DEFAULT_CHARS_PER_MS = 0.014; // ~14 characters a second (pt-BR speech) until measured
// Errors that are not the user's business: a noise burst too short to commit, a cancel that
// raced the end of the reply.
const QUIET_ERROR_CODES = new Set(["input_audio_buffer_commit_empty", "response_cancel_not_active"]);

export class ConversationTracker {
  /**
   * @param {{emit: (type: string, detail: object) => void, send: (event: object) => boolean,
   *          now?: () => number}} io
   */
  constructor({ emit, send, now = () => performance.now() }) {
    this._emit = emit;
    this._send = send;
    this._now = now;
    this.state = "idle";
    this.session = null;
    this.activeResponse = null;   // response.created … response.done
    this.playingResponse = null;  // output_audio_buffer.started … stopped/cleared
    this.userSpeaking = false;
    this._items = new Map();      // item id → {role, text, interrupted, heardText, heardChars, responseId}
    this._silenceMs = 500;
    this._speechEndedAt = null;   // when the user's last turn ended (client clock)
    this._latencyPending = false;
    this._playStartedAt = null;
    this._charsPerMs = DEFAULT_CHARS_PER_MS;
    this._cancelNextResponse = false;
    this._sentIds = new Set();    // event ids of events the user asked for (errors about them are shown)
    this._spoken = new Set();     // responses with audio, and…
    this._played = new Set();     // …those whose audio began to play
    this._seq = 0;
  }

  // --- driven by the client -------------------------------------------------------------------

  start() { this._setState("recording"); }

  /** The user asked for an answer (typed text): a pending "cancel the next reply" no longer holds. */
  expectResponse() { this._cancelNextResponse = false; }

  stop() {
    clearTimeout(this._playbackTimer);
    clearTimeout(this._flushTimer);
    this.activeResponse = this.playingResponse = null;
    this.userSpeaking = false;
    this._setState("idle");
  }

  /** Stop the assistant: drop what is queued for playback and cancel the reply being made. */
  interrupt() {
    if (this.state !== "playing" && this.state !== "processing") return false;
    if (this.activeResponse) this.sendInternal({ type: "response.cancel" });
    else if (!this.playingResponse) this._cancelNextResponse = true; // the answer is still coming
    if (this.playingResponse || this.state === "playing") this.sendInternal({ type: "output_audio_buffer.clear" });
    if (this.playingResponse) this._interrupting();
    else this._setState("recording");
    return true;
  }

  /** Wait for the server to confirm the flush ("cleared"/"stopped"), but not forever. */
  _interrupting() {
    this._setState("interrupting");
    clearTimeout(this._flushTimer);
    this._flushTimer = setTimeout(() => {
      if (this.state !== "interrupting") return;
      this.playingResponse = null;
      this._settle();
    }, 2500);
  }

  sendInternal(event) {
    return this._send({ ...event, event_id: `${INTERNAL_EVENT_PREFIX}${++this._seq}` });
  }

  /** An event the user asked for: errors that echo its id are reported as `event_rejected`. */
  sendUser(event) {
    const eventId = event.event_id || `event_user_${++this._seq}`;
    this._sentIds.add(eventId);
    return this._send({ ...event, event_id: eventId });
  }

  handle(event) {
    const handler = HANDLERS[event?.type];
    if (handler) handler.call(this, event);
  }

  // --- helpers --------------------------------------------------------------------------------

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("conversationstate", { state });
  }

  /** Where the conversation rests when nothing is playing. */
  _settle() {
    if (this.state === "idle") return;
    if (this.playingResponse) this._setState(this.state === "interrupting" ? "interrupting" : "playing");
    else if (this.userSpeaking) this._setState("listening");
    else if (this.activeResponse && !this._cancelNextResponse) this._setState("processing");
    else this._setState("recording");
  }

  _item(itemId, role) {
    if (!this._items.has(itemId)) this._items.set(itemId, { role, text: "", interrupted: false });
    return this._items.get(itemId);
  }

  _emitTranscript(itemId, fields) {
    const item = this._items.get(itemId);
    this._emit("transcript", { role: item.role, itemId, text: item.text, delta: "", final: false,
                               interrupted: false, ...fields });
  }

  _assistantDelta(event) {
    if (event.type === "response.output_audio_transcript.delta") this._spoken.add(event.response_id);
    const item = this._item(event.item_id, "assistant");
    item.responseId ||= event.response_id;
    item.text += event.delta || "";
    if (item.interrupted) this._emitCut(event.item_id);
    else this._emitTranscript(event.item_id, { delta: event.delta || "" });
  }

  _assistantDone(itemId, text) {
    const item = this._item(itemId, "assistant");
    if (typeof text === "string") item.text = text;
    if (item.interrupted) this._emitCut(itemId);
    else this._emitTranscript(itemId, { final: true });
  }

  /** An interrupted reply, cut at what was heard: the server's text when it kept it, else an
   *  estimate from the heard audio length and this voice's measured speaking rate. */
  _emitCut(itemId) {
    const item = this._items.get(itemId);
    const text = item.heardText ?? cutAtWord(item.text, item.heardChars ?? item.text.length);
    this._emit("transcript", { role: "assistant", itemId, text, delta: "", final: true, interrupted: true,
                               fullText: item.text });
  }

  _learnSpeakingRate(responseId) {
    if (this._playStartedAt === null) return;
    const playedMs = this._now() - this._playStartedAt;
    let chars = 0;
    for (const item of this._items.values()) if (item.responseId === responseId) chars += item.text.length;
    if (playedMs > 1000 && chars > 10) this._charsPerMs = 0.5 * this._charsPerMs + 0.5 * (chars / playedMs);
  }
}

const HANDLERS = {
  "session.created"(event) { this._onSession(event.session); },
  "session.updated"(event) { this._onSession(event.session); },

  "input_audio_buffer.speech_started"(event) {
    this.userSpeaking = true;
    if (event.item_id) {
      this._item(event.item_id, "user");
      this._emitTranscript(event.item_id, { pending: true });
    }
    // Over a playing reply this is a barge-in: the gateway flushes the audio and says "cleared".
    if (!this.playingResponse) this._setState("listening");
    else if (this._turnDetection().interrupt_response !== false) this._interrupting();
  },
  "input_audio_buffer.speech_stopped"() {
    this.userSpeaking = false;
    this._speechEndedAt = this._now() - this._silenceMs; // the server waited this long to be sure
    this._latencyPending = true;
    this._cancelNextResponse = false;
    if (this.playingResponse) return;
    if (this._turnDetection().create_response === false && !this.activeResponse) this._settle();
    else this._setState("processing");
  },
  "input_audio_buffer.cleared"() { this.userSpeaking = false; this._settle(); },
  "input_audio_buffer.timeout_triggered"() { this.userSpeaking = false; this._settle(); },

  "conversation.item.input_audio_transcription.delta"(event) {
    const item = this._item(event.item_id, "user");
    item.text += event.delta || "";
    this._emitTranscript(event.item_id, { delta: event.delta || "" });
  },
  "conversation.item.input_audio_transcription.completed"(event) {
    const item = this._item(event.item_id, "user");
    item.text = event.transcript ?? item.text;
    this._emitTranscript(event.item_id, { final: true });
  },
  "conversation.item.input_audio_transcription.failed"(event) {
    this._item(event.item_id, "user");
    this._emitTranscript(event.item_id, { final: true, failed: true });
  },

  "response.created"(event) {
    this.activeResponse = event.response?.id || "unknown";
    if (this._cancelNextResponse) {  // the user pressed "interrupt" before the answer came
      this._cancelNextResponse = false;
      this.sendInternal({ type: "response.cancel" });
      return;
    }
    if (!this.playingResponse && !this.userSpeaking) this._setState("processing");
  },
  "response.output_item.added"(event) {
    if (event.item?.role === "assistant") this._item(event.item.id, "assistant").responseId = event.response_id;
  },
  "response.output_audio_transcript.delta"(event) { this._assistantDelta(event); },
  "response.output_text.delta"(event) { this._assistantDelta(event); },
  "response.output_audio_transcript.done"(event) { this._assistantDone(event.item_id, event.transcript); },
  "response.output_text.done"(event) { this._assistantDone(event.item_id, event.text); },
  "response.done"(event) {
    const response = event.response || {};
    if (!response.id || response.id === this.activeResponse) this.activeResponse = null;
    if (response.status === "failed") {
      const error = response.status_details?.error || {};
      this._emit("error", { code: "upstream_error", serverCode: error.code, fatal: false,
                            message: error.message || "The assistant could not answer." });
    }
    if (response.status === "completed" && this._spoken.has(response.id) && !this._played.has(response.id)) {
      // Generated before its audio began to play: "started" is on its way (give up after a while).
      clearTimeout(this._playbackTimer);
      this._playbackTimer = setTimeout(() => { if (!this._played.has(response.id)) this._settle(); }, 3000);
      return;
    }
    this._settle(); // a reply without audio (text only, failed, cancelled early) must not hang here
  },

  "output_audio_buffer.started"(event) {
    this.playingResponse = event.response_id || "unknown";
    this._played.add(this.playingResponse);
    this._playStartedAt = this._now();
    if (this._latencyPending && this._speechEndedAt !== null) {
      this._emit("turnaudio", { speechEndedAt: this._speechEndedAt, startedAt: this._playStartedAt });
    }
    this._latencyPending = false;
    this._setState("playing");
  },
  "output_audio_buffer.stopped"(event) {
    this._learnSpeakingRate(event.response_id);
    this.playingResponse = this._playStartedAt = null;
    this._settle();
  },
  "output_audio_buffer.cleared"() {
    this.playingResponse = this._playStartedAt = null;
    this._settle();
  },

  "conversation.item.truncated"(event) {
    const item = this._item(event.item_id, "assistant");
    item.interrupted = true;
    item.heardChars = Math.round((event.audio_end_ms || 0) * this._charsPerMs);
    // Some servers keep the text that was heard (the local engine does): ask.
    this.sendInternal({ type: "conversation.item.retrieve", item_id: event.item_id });
    this._emitCut(event.item_id);
  },
  "conversation.item.deleted"(event) {
    const item = this._items.get(event.item_id);
    if (item?.role !== "assistant") return;
    item.interrupted = true;  // deleted after a barge-in: none of it was heard
    item.heardText = "";
    this._emitCut(event.item_id);
  },
  "conversation.item.retrieved"(event) {
    const item = this._items.get(event.item?.id);
    const heard = event.item?.content?.[0]?.transcript;
    if (item?.interrupted && typeof heard === "string" && heard.length) {
      item.heardText = heard;
      this._emitCut(event.item.id);
    }
  },

  error(event) {
    const error = event.error || {};
    const eventId = error.event_id || "";
    if (eventId.startsWith(INTERNAL_EVENT_PREFIX) || QUIET_ERROR_CODES.has(error.code)) {
      if (error.code === "input_audio_buffer_commit_empty") {
        this._discardPendingUserTurns();
        this._settle();
      }
      return;
    }
    this._emit("error", { code: errorCode(error, this._sentIds.has(eventId)), serverCode: error.code,
                          message: error.message || "Upstream error", serverMessage: error.message,
                          fatal: false });
  },
};

Object.assign(ConversationTracker.prototype, {
  _onSession(session) {
    this.session = session || this.session;
    const ms = session?.audio?.input?.turn_detection?.silence_duration_ms;
    if (typeof ms === "number") this._silenceMs = ms;
    this._emit("session", { session });
  },
  _turnDetection() {
    return this.session?.audio?.input?.turn_detection || {};
  },
  _discardPendingUserTurns() {
    for (const [itemId, item] of this._items) {
      if (item.role === "user" && !item.text) {
        this._items.delete(itemId);
        this._emit("transcript", { role: "user", itemId, text: "", delta: "", final: true, discarded: true });
      }
    }
  },
});

/** The client-facing code of a server `error` event. */
function errorCode(error, userEvent) {
  if (error.code === "upstream_reconnecting") return "upstream_reconnecting";
  if (error.code === "gateway_shutting_down") return "gateway_draining";
  if (userEvent) return "event_rejected";
  return "upstream_error";
}

/** `text` cut at the word boundary nearest to `chars` characters, with "…" when cut. */
export function cutAtWord(text, chars) {
  if (chars >= text.length) return text;
  let best = 0;
  for (let i = text.indexOf(" "); i !== -1; i = text.indexOf(" ", i + 1)) {
    if (Math.abs(i - chars) <= Math.abs(best - chars)) best = i;
  }
  if (Math.abs(text.length - chars) < Math.abs(best - chars)) return text;
  return best > 0 ? `${text.slice(0, best).trimEnd()}…` : "";
}
