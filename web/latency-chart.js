// The details panel's latency chart: one point per turn (end of the user's speech → first audible
// answer), the last 20 turns, as inline SVG drawn at the panel's own width (no charting library).
// The caption says the same in words (range and average) and names the chart for screen readers;
// the list beside it has every value. The average is a dashed line, the points a solid one, so
// nothing depends on colour.

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 150;
const PAD = { left: 48, right: 16, top: 14, bottom: 26 };
const STEPS_MS = [100, 250, 500, 1000, 2000, 2500, 5000, 10000];

/** The top of the y axis: the smallest round figure at or above `ms`, with room above the highest point. */
export function axisTop(ms) {
  const wanted = ms * 1.1;
  for (const step of STEPS_MS) {
    const top = Math.ceil(wanted / step) * step;
    if (top / step <= 4) return Math.max(top, step);
  }
  return Math.ceil(wanted / 10000) * 10000;
}

function node(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

export class LatencyChart {
  /** @param {{svg: SVGSVGElement, caption: HTMLElement, t: () => object, keep?: number}} parts */
  constructor({ svg, caption, t, keep = 20 }) {
    Object.assign(this, { svg, caption, t, keep });
    this.turns = []; // {turn (1-based, since the page opened), ms}
    this.count = 0;
    new ResizeObserver(() => this.render()).observe(svg); // also draws once the panel opens
    this.render();
  }

  add({ ms }) {
    this.turns.push({ turn: ++this.count, ms });
    if (this.turns.length > this.keep) this.turns.shift();
    this.render();
  }

  render() {
    const strings = this.t();
    const values = this.turns.map((p) => p.ms);
    if (!values.length) {
      this.caption.textContent = strings.latencyChartEmpty;
    } else {
      const average = Math.round(values.reduce((a, b) => a + b, 0) / values.length);
      this.caption.textContent = strings.latencyChartSummary(values.length, Math.min(...values), Math.max(...values),
                                                             average);
    }
    const width = Math.round(this.svg.getBoundingClientRect().width);
    if (!width) return; // the panel is closed: drawn when it opens
    this.svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    this.svg.setAttribute("height", String(HEIGHT));
    this.svg.replaceChildren(...this._shapes(width, values, strings));
  }

  _shapes(width, values, strings) {
    const top = axisTop(Math.max(1, ...values));
    const plot = { x0: PAD.left, x1: width - PAD.right, y0: HEIGHT - PAD.bottom, y1: PAD.top };
    const y = (ms) => plot.y0 - (ms / top) * (plot.y0 - plot.y1);
    const slots = Math.max(this.keep - 1, 1);
    const x = (index) => plot.x0 + (index / slots) * (plot.x1 - plot.x0);
    const shapes = [];
    for (const tick of [0, top / 2, top]) { // gridlines and their labels
      shapes.push(node("line", { class: "grid", x1: plot.x0, x2: plot.x1, y1: y(tick), y2: y(tick) }));
      shapes.push(node("text", { class: "axis", x: plot.x0 - 6, y: y(tick) + 4, "text-anchor": "end" },
                       `${tick} ms`));
    }
    if (!values.length) return shapes;
    const first = this.turns[0].turn;
    const last = this.turns.at(-1).turn;
    shapes.push(node("text", { class: "axis", x: x(0), y: HEIGHT - 6, "text-anchor": "start" },
                     `${strings.turn} ${first}`));
    if (last !== first && x(this.turns.length - 1) - x(0) >= 70) { // else the two labels would overlap
      shapes.push(node("text", { class: "axis", x: x(this.turns.length - 1), y: HEIGHT - 6,
                                 "text-anchor": this.turns.length > this.keep / 2 ? "end" : "middle" },
                       `${strings.turn} ${last}`));
    }
    const average = values.reduce((a, b) => a + b, 0) / values.length;
    if (values.length > 1) {
      shapes.push(node("line", { class: "average", x1: plot.x0, x2: plot.x1, y1: y(average), y2: y(average) }));
      const points = values.map((ms, i) => `${x(i).toFixed(1)},${y(ms).toFixed(1)}`).join(" ");
      shapes.push(node("polyline", { class: "line", points }));
    }
    values.forEach((ms, i) => {
      const isLast = i === values.length - 1;
      shapes.push(node("circle", { class: isLast ? "point last" : "point", cx: x(i), cy: y(ms), r: isLast ? 5 : 3.5,
                                   "data-ms": ms }));
    });
    const lastX = x(values.length - 1);
    const anchor = values.length > this.keep / 2 ? "end" : "start";
    shapes.push(node("text", { class: "value", x: lastX + (anchor === "end" ? -10 : 10), y: y(values.at(-1)) + 4,
                               "text-anchor": anchor }, `${values.at(-1)} ms`)); // beside the last point
    return shapes;
  }
}
