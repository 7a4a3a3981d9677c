// Types for conversation-tracker.js: what a person perceives of a call, from the server events.

/** The six conversation states, in the order of a turn. */
export declare const CONVERSATION_STATES: readonly ["idle", "recording", "listening", "processing", "playing",
                                                    "interrupting"];
export type ConversationState = (typeof CONVERSATION_STATES)[number];

/** Prefix of the event ids the tracker gives its own bookkeeping events (their errors stay quiet). */
export declare const INTERNAL_EVENT_PREFIX: "event_client_";

/** A Realtime server event as received on the data channel (GA dialect). */
export interface ServerEvent {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

/** A client event to send on the data channel; `event_id` is added when missing. */
export interface ClientEvent {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

/** The Realtime session, as the server reports it or as asked for (`type: "realtime"` is added). */
export interface RealtimeSession {
  instructions?: string;
  [field: string]: unknown;
}

/** One turn's transcript, so far; the same `itemId` comes again as it grows. */
export interface TranscriptDetail {
  role: "user" | "assistant";
  /** The conversation item; null for text sent with `sendText`. */
  itemId: string | null;
  /** The whole text so far (for an interrupted reply: the part that was heard, with "…"). */
  text: string;
  /** What this event added to `text` ("" when nothing was). */
  delta: string;
  final: boolean;
  /** The reply was cut by the user: `text` is what was heard, `fullText` what was generated.
   *  Absent on `discarded` events. */
  interrupted?: boolean;
  fullText?: string;
  /** The user started speaking; the words are still to come. */
  pending?: boolean;
  /** The user's speech could not be transcribed. */
  failed?: boolean;
  /** The user turn was noise after all: remove it. */
  discarded?: boolean;
}

export interface ConversationStateDetail {
  state: ConversationState;
}

export interface SessionDetail {
  session: RealtimeSession;
}

/** A non-fatal problem the server reported during the call. */
export interface TrackerErrorDetail {
  code: "upstream_error" | "upstream_reconnecting" | "gateway_draining" | "event_rejected";
  message: string;
  serverCode?: string | null;
  serverMessage?: string | null;
  fatal: false;
}

/** A turn's answer began to play (times on the `performance.now()` clock). */
export interface TurnAudioDetail {
  speechEndedAt: number;
  startedAt: number;
}

/** What the tracker emits, by type. */
export interface ConversationTrackerEvents {
  conversationstate: ConversationStateDetail;
  transcript: TranscriptDetail;
  session: SessionDetail;
  error: TrackerErrorDetail;
  turnaudio: TurnAudioDetail;
}

/** `emit`'s arguments: `type` narrows `detail`. */
export type ConversationTrackerEmit = {
  [K in keyof ConversationTrackerEvents]: [type: K, detail: ConversationTrackerEvents[K]];
}[keyof ConversationTrackerEvents];

export interface ConversationTrackerIO {
  emit: (...args: ConversationTrackerEmit) => void;
  /** Send a client event; false when it could not be sent. */
  send: (event: ClientEvent) => boolean;
  /** The clock, in ms (default `performance.now()`). */
  now?: () => number;
}

/** The conversation state machine, fed server events; no DOM and no WebRTC. */
export declare class ConversationTracker {
  constructor(io: ConversationTrackerIO);
  readonly state: ConversationState;
  readonly session: RealtimeSession | null;
  /** The response being generated (response.created … response.done), if any. */
  readonly activeResponse: string | null;
  /** The response whose audio is playing (output_audio_buffer.started … stopped/cleared), if any. */
  readonly playingResponse: string | null;
  readonly userSpeaking: boolean;
  /** The call is up: the user may speak. */
  start(): void;
  /** The user asked for an answer (typed text): a pending "cancel the next reply" no longer holds. */
  expectResponse(): void;
  stop(): void;
  /** Stop the assistant; false when it was neither answering nor speaking. */
  interrupt(): boolean;
  /** Send a bookkeeping event (errors about it are not reported). */
  sendInternal(event: ClientEvent): boolean;
  /** Send an event the user asked for (errors about it are reported as `event_rejected`). */
  sendUser(event: ClientEvent): boolean;
  handle(event: ServerEvent): void;
}

/** `text` cut at the word boundary nearest to `chars` characters, with "…" when cut. */
export declare function cutAtWord(text: string, chars: number): string;
