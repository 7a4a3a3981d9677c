// Types for latency-meter.js: end of the user's speech → the answer audible in the browser.

export interface LatencyResult {
  /** To the first audible answer audio when it could be seen, else to `startedMs`. */
  ms: number;
  /** To `output_audio_buffer.started` (the gateway began sending the answer). */
  startedMs: number;
  /** Whether `ms` was measured from the played-out audio (false: a muted element, no stats). */
  audible: boolean;
}

/** Measure one turn; times on the `performance.now()` clock. */
export declare function measureTurn(peer: () => RTCPeerConnection | null,
                                    turn: { speechEndedAt: number; startedAt: number }): Promise<LatencyResult>;

/** Audio energy and duration WebRTC has played out on the inbound audio stream (null: none/closed). */
export declare function inboundEnergy(pc: RTCPeerConnection | null): Promise<{ energy: number; duration: number } | null>;
