// Setting up the media connection to the gateway: the client secret, the one offer → POST
// /v1/realtime/calls → answer exchange that both opens a call and resumes it, the resume retry
// loop, and small WebRTC helpers. Holds no call state: RealtimeClient owns the call and passes
// in what each step needs, so the two paths cannot drift apart.

/** An error with one of RealtimeClient's `ERROR_CODES` (or "aborted": the call ended meanwhile).
 *  May carry `server` (the gateway's `{code, message}`) and `status` (the refusing HTTP status). */
export class ClientError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
}

/** @type {Record<number, string>} statuses that mean the same whichever request got them */
const HTTP_ERROR_CODES = { 403: "origin_forbidden", 429: "rate_limited", 503: "gateway_busy" };

/**
 * A failed HTTP answer as a ClientError, keeping the gateway's `{error: {code, message}}`.
 * @param {Response} response
 * @param {string} fallback the code when the status says nothing more specific
 * @returns {Promise<ClientError>}
 */
export async function errorFrom(response, fallback) {
  let server = { code: null, message: `HTTP ${response.status}` };
  try {
    server = { ...server, ...(await response.json()).error };
  } catch { /* not JSON */ }
  const error = new ClientError(HTTP_ERROR_CODES[response.status] || fallback, server.message);
  error.server = server;
  return error;
}

/**
 * The call's client secret: the one given (a string, `{value, ice_servers}`, or a function giving
 * either), else one minted by the gateway for `session`.
 * @param {(path: string, init: RequestInit) => Promise<Response>} request
 * @param {*} given RealtimeClient's `clientSecret` option
 * @param {object | null} session
 * @returns {Promise<{value: string, ice_servers?: RTCIceServer[]}>}
 */
export async function clientSecret(request, given, session) {
  if (given) {
    const secret = typeof given === "function" ? await given() : given;
    return typeof secret === "string" ? { value: secret, ice_servers: [] } : secret;
  }
  const body = session ? { session: { type: "realtime", ...session } } : {};
  const response = await request("/v1/realtime/client_secrets", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) throw await errorFrom(response, response.status === 401 ? "not_authorized" : "call_failed");
  return response.json();
}

/**
 * @typedef {object} NegotiateOptions
 * @property {(path: string, init: RequestInit) => Promise<Response>} request the client's fetch
 *           (base URL applied, network failure → `gateway_unreachable`)
 * @property {string} token Bearer: a client secret for a new call, the resume token for a resume
 * @property {number} iceGatheringTimeoutMs
 * @property {() => number} openTimeoutMs read once the answer is applied (a resume's window shrinks)
 * @property {() => void} current throws when the call is no longer the one being set up
 * @property {(status: number) => string} rejectedCode the error code of a refused offer
 * @property {(response: Response) => void} answered the gateway accepted: its headers (Location,
 *           X-Resume-Token) are needed even if the connection then fails to come up
 */

/**
 * Offer `pc`'s tracks and `channel`, POST the offer, apply the answer and wait until ICE is up and
 * the channel open. Rejects with a ClientError (its `status` set when the gateway refused).
 * @param {RTCPeerConnection} pc
 * @param {RTCDataChannel} channel
 * @param {NegotiateOptions} options
 */
export async function negotiate(pc, channel, { request, token, iceGatheringTimeoutMs, openTimeoutMs, current,
                                                rejectedCode, answered }) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, iceGatheringTimeoutMs);
  current();
  const response = await request("/v1/realtime/calls", {
    method: "POST", body: pc.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const error = await errorFrom(response, rejectedCode(response.status));
    error.status = response.status;
    throw error;
  }
  answered(response);
  const answer = await response.text();
  current();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  await whenOpen(pc, channel, openTimeoutMs());
  current();
}

/**
 * Bring a dropped call back: `reconnect` (one new connection with the resume token) until it
 * works, the gateway says the call is gone (401/404), the window closes or the call ends.
 * Resolves true when resumed, false when the call ended meanwhile; else rejects `connection_lost`.
 * @param {{windowMs: number, current: () => boolean, reconnect: (deadline: number) => Promise<void>}} options
 * @returns {Promise<boolean>}
 */
export async function resumeCall({ windowMs, current, reconnect }) {
  const deadline = performance.now() + windowMs;
  let pause = 250;
  let lastError = null;
  while (current() && performance.now() < deadline) {
    try {
      await reconnect(deadline);
      return current();
    } catch (error) {
      lastError = error;
      if (error.status === 404 || error.status === 401) break; // the gateway has let the call go
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 2000);
    }
  }
  if (!current()) return false;
  const error = new ClientError("connection_lost", "The connection to the gateway was lost and could not be resumed.");
  error.server = lastError?.server;
  throw error;
}

/**
 * Resolves when ICE gathering completes or after `timeoutMs`, whichever is first: we send what
 * we have then, as host candidates suffice on a LAN.
 * @param {RTCPeerConnection} pc
 * @param {number} timeoutMs
 * @returns {Promise<void>}
 */
export function iceGathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

/**
 * Resolves once ICE is connected and the event channel is open; `ice_failed` otherwise.
 * @param {RTCPeerConnection} pc
 * @param {RTCDataChannel} channel
 * @param {number} timeoutMs
 * @returns {Promise<void>}
 */
export function whenOpen(pc, channel, timeoutMs) {
  return new Promise((resolve, reject) => {
    const settle = (error) => {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      channel.removeEventListener("open", check);
      channel.removeEventListener("close", check);
      if (error) reject(error); else resolve();
    };
    const check = () => {
      if (pc.connectionState === "connected" && channel.readyState === "open") settle();
      else if (["failed", "closed"].includes(pc.connectionState) || channel.readyState === "closed") {
        settle(new ClientError("ice_failed", "The audio connection could not be established."));
      }
    };
    const timer = setTimeout(() => settle(new ClientError("ice_failed", "The audio connection did not come up in time.")),
                             timeoutMs);
    pc.addEventListener("connectionstatechange", check);
    channel.addEventListener("open", check);
    channel.addEventListener("close", check);
    check();
  });
}

/**
 * The microphone, with the browser's echo cancellation, noise suppression and AGC on or off;
 * its failures as `mic_denied`, `mic_busy` or `mic_missing`.
 * @param {boolean} processing
 * @returns {Promise<MediaStream>}
 */
export async function openMicrophone(processing) {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing } });
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      throw new ClientError("mic_denied", "Microphone permission was denied.");
    }
    if (error.name === "NotReadableError" || error.name === "AbortError") {
      throw new ClientError("mic_busy", `The microphone could not be opened: ${error.message}`);
    }
    throw new ClientError("mic_missing", `No usable microphone: ${error.message}`);
  }
}
