// Live audio levels on the page: how loud the microphone and the assistant are right now, each as
// a bar (its length), a word ("captando som" / "silêncio") and an ARIA meter, so the level is
// never told by colour alone. The microphone's meter also answers "is my microphone working?"
// before the first turn: a hint when no sound arrives for 5 s after it opened.
//
// One AudioContext per call, made inside the user's tap (browsers start audio only on a gesture);
// one AnalyserNode per stream, connected to nothing else (the <audio> element plays the
// assistant). The bar follows every animation frame, rising at once and falling back slowly;
// with prefers-reduced-motion it moves in steps twice a second instead. The word and
// aria-valuenow change at most twice a second either way, so a screen reader is not flooded.

const FLOOR_DB = -60;       // the empty end of the bar
const SOUND_DB = -50;       // louder is "sound": speech sits around -35..-15 dBFS, a quiet room's mic below
const HOLD_MS = 400;        // the word stays on "sound" this long after the level falls (pauses between syllables)
const WORD_MS = 500;        // the word and aria-valuenow change at most this often
const FLAT_MS = 5000;       // the microphone open this long without any sound → the hint
const RELEASE_PER_S = 1.5;  // how fast the bar falls back (bar lengths per second)
const REDUCED_TICK_MS = 100;
const MAX_STEP_MS = 250;    // a longer gap between ticks (a hidden tab) does not count as listening time

/** RMS level of Float32 samples in dBFS (-Infinity for digital silence). */
export function levelDb(samples) {
  let sum = 0;
  for (const x of samples) sum += x * x;
  return 10 * Math.log10(sum / samples.length);
}

/** dBFS → 0..1 along the bar. */
export function barFraction(db) {
  return Math.min(1, Math.max(0, (db - FLOOR_DB) / -FLOOR_DB));
}

function reducedMotion() {
  return matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** One meter: an analyser on one stream, drawn into `root` (.level with a [role=meter] bar and a .level-word). */
class LevelMeter {
  constructor(root, words, t) {
    this.root = root;
    this.t = t;
    this.bar = root.querySelector("[role=meter]");
    this.word = root.querySelector(".level-word");
    this.words = words; // [sound, silent] keys in t().levelWords
    this.stream = this.source = this.analyser = null;
    this.reset();
  }

  reset() {
    this.shown = 0;           // bar length drawn
    this.lastDb = -Infinity;  // the last reading
    this.peakDb = -Infinity;  // loudest since the last word update
    this.soundUntil = -Infinity;
    this.wordKey = this.words[1];
    this.draw(0);
    this.bar.setAttribute("aria-valuenow", "0");
    this.translate();
  }

  attach(context, stream) {
    this.detach();
    this.stream = stream;
    if (!context || !stream?.getAudioTracks().length) return;
    this.source = context.createMediaStreamSource(stream);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 2048; // ~43 ms at 48 kHz
    this.samples = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);
  }

  detach() {
    this.source?.disconnect();
    this.stream = this.source = this.analyser = null;
  }

  /** Read the level now; true when it is sound (or was, HOLD_MS ago). */
  measure(now) {
    if (!this.analyser) return false;
    this.analyser.getFloatTimeDomainData(this.samples);
    const db = levelDb(this.samples);
    this.lastDb = db;
    this.peakDb = Math.max(this.peakDb, db);
    if (db > SOUND_DB) this.soundUntil = now + HOLD_MS;
    return now < this.soundUntil;
  }

  /** The bar on every frame: up at once, down at RELEASE_PER_S. */
  follow(seconds) {
    const target = this.analyser ? barFraction(this.lastDb) : 0;
    this.shown = Math.max(target, this.shown - RELEASE_PER_S * seconds);
    this.draw(this.shown);
  }

  /** Twice a second: the word, the ARIA value and (reduced motion) the bar, from the loudest moment since. */
  settle(now, { muted = false, stepped = false } = {}) {
    const fraction = this.analyser && !muted ? barFraction(this.peakDb) : 0;
    this.wordKey = muted ? "micMuted" : now < this.soundUntil ? this.words[0] : this.words[1];
    this.root.dataset.sound = String(this.wordKey === this.words[0]);
    this.bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    this.translate();
    if (stepped) this.draw(Math.round(fraction * 10) / 10);
    this.peakDb = -Infinity;
  }

  translate() {
    const word = this.t().levelWords[this.wordKey];
    if (this.word.textContent === word && this.bar.getAttribute("aria-valuetext") === word) return;
    this.bar.setAttribute("aria-valuetext", word);
    this.word.textContent = word;
  }

  draw(fraction) { this.root.style.setProperty("--level", fraction.toFixed(3)); }
}

export class AudioLevels {
  /**
   * @param {{root: HTMLElement, mic: HTMLElement, assistant: HTMLElement, hint: HTMLElement, t: () => object}} parts
   *        `hint`: a live region (kept in the page, emptied rather than hidden) for the flat-microphone hint
   */
  constructor({ root, mic, assistant, hint, t }) {
    Object.assign(this, { root, hint, t });
    this.mic = new LevelMeter(mic, ["micSound", "micSilent"], t);
    this.assistant = new LevelMeter(assistant, ["assistantSound", "assistantSilent"], t);
    this.context = this.client = this.timer = null;
  }

  /** Call inside the user's tap: the AudioContext for this call; then the meters follow `client`'s streams. */
  start(client) {
    this.stop();
    try {
      this.context = new AudioContext();
      this.context.resume().catch(() => {});
    } catch {
      return; // no Web Audio here: no meters, the call works the same
    }
    this.client = client;
    this.flatMs = 0;         // microphone time without sound, while open and not muted
    this.heard = false;      // any sound from the microphone in this call
    this.flat = false;       // the hint is showing
    this.lastTick = this.lastSettle = performance.now();
    this.root.hidden = false;
    this._schedule();
  }

  stop() {
    cancelAnimationFrame(this.timer);
    clearTimeout(this.timer);
    this.timer = null;
    this.mic.detach();
    this.assistant.detach();
    this.mic.reset();
    this.assistant.reset();
    this.context?.close().catch(() => {});
    this.context = this.client = null;
    this.flat = false;
    this.hint.textContent = "";
    this.root.hidden = true;
  }

  /** The language changed: words, ARIA values and hint in it. */
  translate() {
    this.mic.translate();
    this.assistant.translate();
    this.hint.textContent = this.flat ? this.t().micFlat : "";
  }

  _schedule() {
    if (reducedMotion()) this.timer = setTimeout(() => this._tick(performance.now()), REDUCED_TICK_MS);
    else this.timer = requestAnimationFrame((now) => this._tick(now));
  }

  _tick(now) {
    const client = this.client;
    if (!client) return;
    // The streams come and go under the call: the mic once it opens, the assistant's on each (re)connection.
    if (client.localStream !== this.mic.stream) {
      this.mic.attach(this.context, client.localStream);
      this.flatMs = 0;
    }
    if (client.remoteStream !== this.assistant.stream) this.assistant.attach(this.context, client.remoteStream);
    const step = Math.min(Math.max(0, now - this.lastTick), MAX_STEP_MS);
    this.lastTick = now;
    const muted = client.muted;
    const micSound = this.mic.measure(now) && !muted;
    this.assistant.measure(now);
    const stepped = reducedMotion();
    if (!stepped) {
      this.mic.follow(step / 1000);
      this.assistant.follow(step / 1000);
    }
    if (micSound) this.heard = true;
    else if (this.mic.analyser && !muted) this.flatMs += step;
    if (now - this.lastSettle >= WORD_MS) {
      this.lastSettle = now;
      this.mic.settle(now, { muted, stepped });
      this.assistant.settle(now, { stepped });
      this._hint(!this.heard && !muted && this.flatMs >= FLAT_MS);
    }
    this._schedule();
  }

  _hint(flat) {
    if (flat === this.flat) return;
    this.flat = flat;
    this.hint.textContent = flat ? this.t().micFlat : "";
  }
}
