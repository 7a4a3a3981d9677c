// Types for realtime-client.js: the browser client of the gateway (or of any endpoint shaped like
// OpenAI's Realtime WebRTC interface).

import type {
  ClientEvent, ConversationState, ConversationStateDetail, RealtimeSession, ServerEvent, SessionDetail,
  TranscriptDetail,
} from "./conversation-tracker.js";
import type { LatencyResult } from "./latency-meter.js";

export { CONVERSATION_STATES } from "./conversation-tracker.js";
export type {
  ClientEvent, ConversationState, ConversationStateDetail, RealtimeSession, ServerEvent, SessionDetail,
  TranscriptDetail,
} from "./conversation-tracker.js";
export type { LatencyResult } from "./latency-meter.js";

/** Stable error codes; the `fatal` ones end the call. */
export declare const ERROR_CODES: readonly [
  // before the call: browser and device
  "insecure_context", "unsupported_browser", "mic_denied", "mic_missing", "mic_busy",
  // before the call: the gateway's HTTP interface
  "gateway_unreachable", "not_authorized", "origin_forbidden", "rate_limited", "gateway_busy",
  "token_rejected", "call_failed",
  // the media connection
  "ice_failed", "turn_rejected", "connection_unstable", "connection_lost",
  // during the call
  "session_ended", "gateway_draining", "upstream_reconnecting", "upstream_error", "event_rejected",
];
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The call's connection: `closed` after a hang-up or a fatal error (`connect()` again to redial). */
export type ConnectionState = "idle" | "connecting" | "connected" | "closed";

/** A client secret: the value alone, or as the gateway's /v1/realtime/client_secrets returns it. */
export type ClientSecret = string | { value: string; ice_servers?: RTCIceServer[] };

export interface RealtimeClientOptions {
  /** The gateway's origin ("" = the page's own). */
  baseUrl?: string;
  /** Session config asked for when the gateway mints the client secret. */
  session?: RealtimeSession | null;
  /** A secret minted by your backend, instead of asking the gateway (called on every `connect()`). */
  clientSecret?: ClientSecret | (() => ClientSecret | Promise<ClientSecret>) | null;
  /** Where the assistant plays (one is made if absent). */
  audioElement?: HTMLAudioElement | null;
  /** The browser's echo cancellation, noise suppression and AGC on the microphone (default true). */
  audioProcessing?: boolean;
  /** Send this audio instead of opening the microphone (not stopped on hang-up). */
  stream?: MediaStream | null;
  /** Offer the ICE candidates gathered by then (default 1500 ms). */
  iceGatheringTimeoutMs?: number;
  /** ICE and the event channel must be up by then (default 15000 ms). */
  connectTimeoutMs?: number;
  /** "relay" = TURN only (default "all"). */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** How long a dropped call is brought back on a new connection before `connection_lost`;
   *  0 = never (default 25000 ms, under the gateway's default 30 s RESUME_GRACE). */
  resumeWindowMs?: number;
  /** Used for every request to the gateway (default: the global `fetch`). */
  fetch?: typeof fetch | null;
}

export interface StateChangeDetail {
  state: ConnectionState;
}

export interface ErrorDetail {
  code: ErrorCode;
  message: string;
  /** The server's own error code and message, when it gave them. */
  serverCode?: string | null;
  serverMessage?: string | null;
  /** True: the call has ended (state `closed`). False: a warning; the call goes on. */
  fatal: boolean;
}

export interface RecoveredDetail {
  /** True: on a new connection to the same call (same conversation, e.g. Wi-Fi → 4G); false:
   *  the same connection recovered by itself. */
  resumed: boolean;
}

export interface ServerEventDetail {
  event: ServerEvent;
}

/** Every event a RealtimeClient dispatches (a CustomEvent, payload in `detail`). */
export interface RealtimeClientEventMap {
  statechange: CustomEvent<StateChangeDetail>;
  conversationstate: CustomEvent<ConversationStateDetail>;
  transcript: CustomEvent<TranscriptDetail>;
  /** End of the user's speech → first audible answer, once per turn. */
  latency: CustomEvent<LatencyResult>;
  error: CustomEvent<ErrorDetail>;
  /** The audio is back after a `connection_unstable` warning. */
  recovered: CustomEvent<RecoveredDetail>;
  /** The session as the server reports it (session.created / session.updated). */
  session: CustomEvent<SessionDetail>;
  /** Every data-channel event, as received. */
  serverevent: CustomEvent<ServerEventDetail>;
}

/** An error `connect()` rejects with; also reported through the `error` event. */
export declare class ClientError extends Error {
  constructor(code: string, message: string);
  readonly name: "ClientError";
  /** One of ERROR_CODES, or "aborted" when the call was hung up while connecting. */
  code: ErrorCode | "aborted" | (string & {});
  /** The gateway's own words, when it refused. */
  server?: { code?: string | null; message?: string | null } | null;
  /** The HTTP status of a refused offer. */
  status?: number;
}

export declare class RealtimeClient extends EventTarget {
  constructor(options?: RealtimeClientOptions);

  readonly state: ConnectionState;
  readonly conversationState: ConversationState;
  readonly muted: boolean;
  /** The call's URL at the gateway (its Location), while a call is up. */
  readonly callUrl: string | null;
  /** The gateway's X-Resume-Token, which brings this call back on a new connection. */
  readonly resumeToken: string | null;
  /** The current peer connection (replaced when a call is resumed). */
  readonly peerConnection: RTCPeerConnection | null;
  /** The audio being sent (the microphone, or the `stream` option) while a call is up: for a level meter. */
  readonly localStream: MediaStream | null;
  /** The assistant's audio as received (a new stream after a resume) while a call is up: for a level meter. */
  readonly remoteStream: MediaStream | null;
  readonly baseUrl: string;
  session: RealtimeSession | null;
  clientSecret: RealtimeClientOptions["clientSecret"];
  audioElement: HTMLAudioElement | null;
  audioProcessing: boolean;
  iceGatheringTimeoutMs: number;
  connectTimeoutMs: number;
  iceTransportPolicy: RTCIceTransportPolicy;
  resumeWindowMs: number;

  /** Open the call; resolves once audio and events flow. Rejects (and emits `error`) on failure.
   *  Call it inside a user gesture: browsers start audio on one. */
  connect(): Promise<void>;
  /** Hang up: DELETE the call (survives page unload) and close the peer connection. */
  disconnect(): Promise<void>;
  /** Stop the assistant now; false when it was neither answering nor speaking. */
  interrupt(): boolean;
  setMuted(muted: boolean): void;
  /** Say something by text; the assistant answers as it would to speech. False when not sent. */
  sendText(text: string): boolean;
  /** session.update with these fields (`type: "realtime"` is added). False when not sent. */
  updateSession(session: RealtimeSession): boolean;
  /** Send any client event on the data channel; false when the channel is not open. */
  send(event: ClientEvent): boolean;

  addEventListener<K extends keyof RealtimeClientEventMap>(
    type: K, listener: (this: RealtimeClient, event: RealtimeClientEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                   options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof RealtimeClientEventMap>(
    type: K, listener: (this: RealtimeClient, event: RealtimeClientEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                      options?: boolean | EventListenerOptions): void;
}
