// Typechecked (strict) against the package's declarations, never run: the API as an app uses it.
// Each @ts-expect-error is a mistake the declarations must catch.
import {
  CONVERSATION_STATES, ClientError, ERROR_CODES, RealtimeClient,
  type ConnectionState, type ConversationState, type ErrorCode, type ErrorDetail, type TranscriptDetail,
} from "realtime-gateway-client";
import { ConversationTracker, cutAtWord } from "realtime-gateway-client/conversation-tracker";
import { measureTurn } from "realtime-gateway-client/latency-meter";

const client = new RealtimeClient({
  baseUrl: "https://gateway.example",
  session: { instructions: "Be brief." },
  clientSecret: async () => ({ value: "ek_123", ice_servers: [{ urls: "turn:turn.example" }] }),
  audioElement: document.createElement("audio"),
  audioProcessing: false,
  iceTransportPolicy: "relay",
  resumeWindowMs: 0,
  fetch: (input, init) => fetch(input, init),
});
new RealtimeClient();
new RealtimeClient({ clientSecret: "ek_456" });
// @ts-expect-error not an option
new RealtimeClient({ baseURL: "https://gateway.example" });
// @ts-expect-error not a transport policy
new RealtimeClient({ iceTransportPolicy: "tcp" });

const state: ConnectionState = client.state;
const conversation: ConversationState = client.conversationState;
const pc: RTCPeerConnection | null = client.peerConnection;
const callUrl: string | null = client.callUrl;
// @ts-expect-error read-only
client.state = "connected";

async function call(): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    if (error instanceof ClientError) console.log(error.code, error.server?.message);
  }
  const sent: boolean = client.sendText("Olá") && client.updateSession({ instructions: "Speak English." })
    && client.send({ type: "response.create" });
  const stopped: boolean = client.interrupt();
  client.setMuted(!client.muted);
  await client.disconnect();
  console.log(sent, stopped);
}

client.addEventListener("statechange", ({ detail }) => {
  const s: ConnectionState = detail.state;
  console.log(s);
});
client.addEventListener("conversationstate", (event) => {
  const s: ConversationState = event.detail.state;
  console.log(CONVERSATION_STATES.indexOf(s));
});
client.addEventListener("transcript", ({ detail }) => {
  const t: TranscriptDetail = detail;
  const role: "user" | "assistant" = t.role;
  const itemId: string | null = t.itemId;
  const words: string = t.final && t.interrupted ? `${t.text} (of ${t.fullText ?? ""})` : t.text + t.delta;
  if (t.discarded || t.pending || t.failed) console.log(role, itemId);
  console.log(words);
});
client.addEventListener("latency", ({ detail }) => {
  const ms: number = detail.ms + detail.startedMs;
  const audible: boolean = detail.audible;
  console.log(ms, audible);
});
client.addEventListener("error", ({ detail }) => {
  const d: ErrorDetail = detail;
  const code: ErrorCode = d.code;
  const fatal: boolean = d.fatal;
  const server: string | null | undefined = d.serverCode ?? d.serverMessage;
  if (code === "connection_unstable" || code === "turn_rejected") console.log(fatal, d.message, server);
  // @ts-expect-error not one of ERROR_CODES
  if (code === "mic_broken") console.log(code);
});
client.addEventListener("recovered", ({ detail }) => { const resumed: boolean = detail.resumed; console.log(resumed); });
client.addEventListener("session", ({ detail }) => console.log(detail.session.instructions));
client.addEventListener("serverevent", ({ detail }) => { const type: string = detail.event.type; console.log(type); });
client.addEventListener("anything-else", (event: Event) => console.log(event.type));
const onTranscript = (event: CustomEvent<TranscriptDetail>) => console.log(event.detail.text);
client.addEventListener("transcript", onTranscript);
client.removeEventListener("transcript", onTranscript);
// @ts-expect-error a transcript has no `words`
client.addEventListener("transcript", ({ detail }) => detail.words);
// @ts-expect-error latency's ms is a number
client.addEventListener("latency", ({ detail }) => detail.ms.toUpperCase());

const codes: readonly ErrorCode[] = ERROR_CODES;
// @ts-expect-error the list is read-only
ERROR_CODES.push("call_failed");

const tracker = new ConversationTracker({
  send: (event) => event.type.length > 0,
  emit: (type, detail) => {
    if (type === "transcript") console.log(detail.text);
    else if (type === "turnaudio") console.log(detail.startedAt - detail.speechEndedAt);
  },
});
tracker.handle({ type: "session.created", session: {} });
const cut: string = cutAtWord("Olá! Tudo bem?", 3);
measureTurn(() => client.peerConnection, { speechEndedAt: 0, startedAt: 1 }).then((r) => console.log(r.ms));

console.log(state, conversation, pc, callUrl, call, codes, cut, tracker.state);
