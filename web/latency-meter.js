// Per-turn latency as the user lives it: from the end of their speech to the moment the
// assistant's voice is actually audible in the browser. `output_audio_buffer.started` says when
// the gateway began sending; the browser's jitter buffer and playout add a little more, which
// the inbound RTP stream's audio energy (what WebRTC has played out) reveals.

const POLL_MS = 20;
const GIVE_UP_MS = 2000;         // a muted element reports no energy: fall back to "started"
const AUDIBLE_MEAN_SQUARE = 1e-6; // ≈ -60 dBFS: above the gateway's idle silence frames

/**
 * Measure one turn. Resolves {ms, startedMs, audible}: `ms` to first audible audio when it could be
 * seen, else to `output_audio_buffer.started`; `startedMs` always to "started".
 * @param {() => RTCPeerConnection | null} peer
 * @param {{speechEndedAt: number, startedAt: number}} turn times on the performance.now() clock
 */
export async function measureTurn(peer, { speechEndedAt, startedAt }) {
  const startedMs = Math.max(0, Math.round(startedAt - speechEndedAt));
  let previous = await inboundEnergy(peer());
  while (previous && performance.now() - startedAt < GIVE_UP_MS) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const current = await inboundEnergy(peer());
    if (!current) break;
    const seconds = current.duration - previous.duration;
    if (seconds > 0 && (current.energy - previous.energy) / seconds > AUDIBLE_MEAN_SQUARE) {
      const heardAt = performance.now() - POLL_MS / 2; // somewhere within the last poll
      return { ms: Math.max(startedMs, Math.round(heardAt - speechEndedAt)), startedMs, audible: true };
    }
    previous = current;
  }
  return { ms: startedMs, startedMs, audible: false };
}

/** Audio energy and duration WebRTC has played out on the inbound audio stream. */
export async function inboundEnergy(pc) {
  if (!pc || pc.connectionState === "closed") return null;
  let found = null;
  try {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        found = { energy: s.totalAudioEnergy || 0, duration: s.totalSamplesDuration || 0 };
      }
    });
  } catch {
    return null; // closed meanwhile
  }
  return found;
}
