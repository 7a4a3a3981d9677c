// The page's record of the call: transcript turns, system messages and the latency panel.
// Every text comes from strings.js through `t()`, so a language switch re-renders in place.

export class TranscriptView {
  /** @param {{log: HTMLElement, list: HTMLElement, t: () => object}} parts */
  constructor({ log, list, t }) {
    this.log = log;
    this.list = list;
    this.t = t;
    this.turns = new Map(); // "role:itemId" → li
  }

  /** One `transcript` event from RealtimeClient → the matching turn, created in arrival order. */
  update({ role, itemId, text, final, interrupted, pending, failed, discarded }) {
    const key = itemId ? `${role}:${itemId}` : null;
    if (discarded) {
      this.turns.get(key)?.remove();
      this.turns.delete(key);
      this._updateBusy();
      return;
    }
    const li = (key && this.turns.get(key)) || this._newTurn(role, key);
    li.querySelector(".text").textContent = text || "";
    li.classList.toggle("pending", Boolean(pending) && !text);
    li.classList.toggle("streaming", !final && !pending);
    if (interrupted) this._mark(li, "interrupted");
    else if (failed) this._mark(li, "notTranscribed");
    this._updateBusy();
    li.scrollIntoView({ block: "nearest", behavior: reducedMotion() ? "auto" : "smooth" });
  }

  /** Streaming text is announced once complete, not word by word (aria-busy defers it). */
  _updateBusy() {
    const busy = this.list.querySelector(".turn.streaming") !== null;
    this.log.setAttribute("aria-busy", String(busy));
  }

  _newTurn(role, key) {
    this.list.querySelector(".empty")?.remove();
    const li = document.createElement("li");
    li.className = `turn ${role}`;
    const who = document.createElement("span");
    who.className = "who";
    who.dataset.text = role === "user" ? "you" : "assistant";
    const text = document.createElement("span");
    text.className = "text";
    li.append(who, text);
    this.list.append(li);
    if (key) this.turns.set(key, li);
    this.translate(li);
    return li;
  }

  _mark(li, key) {
    if (key === "interrupted") li.classList.add("interrupted");
    let mark = li.querySelector(".mark");
    if (!mark) {
      mark = document.createElement("span");
      mark.className = "mark";
      li.append(mark);
    }
    mark.dataset.text = key;
    this.translate(li);
  }

  /** Refresh the language-dependent labels inside `root` (the whole list by default). */
  translate(root = this.list) {
    for (const node of root.querySelectorAll(".who[data-text]")) node.textContent = this.t()[node.dataset.text];
    for (const node of root.querySelectorAll(".mark[data-text]")) node.textContent = `(${this.t()[node.dataset.text]})`;
  }
}

export class MessageView {
  /** @param {{box: HTMLElement, t: () => object}} parts */
  constructor({ box, t }) {
    this.box = box;
    this.t = t;
    this.current = null; // {code, detail}
  }

  show(code, detail = {}) {
    this.current = { code, detail };
    this.render();
  }

  clear(code = null) {
    if (code && this.current?.code !== code) return;
    this.current = null;
    this.box.replaceChildren();
  }

  render() {
    if (!this.current) return;
    const { code, detail } = this.current;
    const strings = this.t();
    const item = document.createElement("div");
    item.className = `message ${detail.fatal === false ? "warning" : "error"}`;
    item.dataset.code = code;
    const text = document.createElement("p");
    text.className = "message-text";
    text.textContent = strings.errors[code] || strings.errors.call_failed;
    item.append(text);
    if (detail.serverMessage) {
      const more = document.createElement("p");
      more.className = "message-detail";
      more.textContent = `${strings.detail}: ${detail.serverMessage}`;
      item.append(more);
    }
    this.box.replaceChildren(item);
  }
}

export class LatencyView {
  /** @param {{last: HTMLElement, average: HTMLElement, list: HTMLElement, t: () => object}} parts */
  constructor({ last, average, list, t }) {
    Object.assign(this, { last, average, list, t });
    this.values = [];
  }

  add({ ms }) {
    this.values.push(ms);
    const average = this.values.reduce((a, b) => a + b, 0) / this.values.length;
    this.last.textContent = `${ms} ms`;
    this.average.textContent = `${Math.round(average)} ms`;
    const item = document.createElement("li");
    item.textContent = `${ms} ms`;
    this.list.append(item);
    while (this.list.children.length > 20) this.list.firstElementChild.remove();
  }
}

export function reducedMotion() {
  return matchMedia("(prefers-reduced-motion: reduce)").matches;
}
