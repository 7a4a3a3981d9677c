"""Kokoro's ONNX graph variants and onnxruntime settings, measured: is int8 the fast one here?

    python bench/engine_kokoro_graph.py [--rounds 3] [--out /tmp/kokoro-graphs]

The packaged Kokoro-82M is dynamically quantized int8 (``DynamicQuantizeLinear`` + ``MatMulInteger``
/ ``ConvInteger`` / ``DynamicQuantizeLSTM``). On many x86 CPUs those kernels are slower than fp32,
so this builds, from the shipped graph and with the ``onnx`` package (``pip install onnx``; not an
engine dependency):

- ``fp32``: every weight dequantized, the float ops written back (MatMul, Conv, LSTM);
- ``fp32-nchwc``: the same with each Conv1d written as a Conv2d of height 1, which onnxruntime's
  NCHWc layout pass turns into its blocked direct convolution (it only handles 2-D convs);
- ``int8, pad cropped``: the engine's default (``gateway/engine/kokoro_graph.py``), the shipped
  graph whose decoder skips most of the leading pad;

and measures, for each graph and each onnxruntime setting (threads, spinning, dynamic block base):
CPU seconds per second of audio kept (robust to other load), wall RTF, and the speech itself:
Whisper's transcript, RMS level and median pitch against the int8 output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize, packaged_kokoro  # noqa: E402
from gateway.engine.tts import _trim, phonemize  # noqa: E402

TEXTS = ("Olá!", "A capital do Brasil", "A capital do Brasil é Brasília, no centro do país.")


# --- graph rewrites (the onnx package) ------------------------------------------------------------


def dequantize(model: Any) -> dict[str, int]:
    """Rewrite a dynamically quantized ``onnx.ModelProto`` in place to fp32 weights; returns the
    op types replaced."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def sole(name: str, op: str) -> Any:
        users = consumers[name]
        if len(users) != 1 or users[0].op_type != op:
            raise ValueError(f"{name}: expected one {op} consumer, found {[u.op_type for u in users]}")
        return users[0]

    def other(node: Any, name: str) -> str:
        return next(i for i in node.input if i != name)

    added: dict[str, Any] = {}
    replaced: dict[int, Any] = {}
    removed: set[int] = set()
    counts: dict[str, int] = defaultdict(int)
    index = {id(node): i for i, node in enumerate(graph.node)}

    def weight(name: str, array: np.ndarray) -> str:
        if name not in added:
            added[name] = numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name)
        return name

    def per_channel(op: str, param: np.ndarray, w: np.ndarray) -> tuple[int, ...]:
        if param.size == 1:
            return ()
        return (param.size,) if op == "MatMulInteger" else (param.size,) + (1,) * (w.ndim - 1)

    for node in list(graph.node):
        if node.op_type in ("MatMulInteger", "ConvInteger"):
            quantizer, w = producer.get(node.input[0]), const(node.input[1])
            if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear" or w is None:
                continue
            zero = const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros((), w.dtype)
            if zero is None:
                continue
            chain, bias = [node], None
            if consumers[node.output[0]][0].op_type == "Add":  # int32 bias: Reshape(Cast(Floor(Div(b, s))))
                add = sole(node.output[0], "Add")
                div = producer[producer[producer[producer[other(add, node.output[0])].input[0]].input[0]].input[0]]
                if div.op_type != "Div" or const(div.input[0]) is None:
                    raise ValueError(f"{node.name}: unexpected bias pattern")
                bias = div.input[0]
                chain.append(add)
            cast = sole(chain[-1].output[0], "Cast")
            scale_mul = sole(cast.output[0], "Mul")
            chain += [cast, scale_mul]
            scales = producer[other(scale_mul, cast.output[0])]  # Mul(activation scale, weight scale)
            scale = const(other(scales, quantizer.output[1]))
            if scales.op_type != "Mul" or scale is None:
                raise ValueError(f"{node.name}: unexpected scale pattern")
            values = (w.astype(np.float32) - zero.astype(np.float32).reshape(per_channel(node.op_type, zero, w)))
            values *= scale.astype(np.float32).reshape(per_channel(node.op_type, scale, w))
            inputs = [quantizer.input[0], weight(node.input[1] + "_fp32", values), *([bias] if bias else [])]
            op = "MatMul" if node.op_type == "MatMulInteger" else "Conv"
            new = helper.make_node(op, inputs, [scale_mul.output[0]], name=node.name + "_fp32")
            if op == "Conv":
                new.attribute.extend(node.attribute)
            replaced[index[id(scale_mul)]] = new
            removed.update(index[id(n)] for n in chain[:-1])
            counts[node.op_type] += 1
        elif node.op_type == "DynamicQuantizeLSTM":
            # X, W, R, B, seq_lens, h0, c0, P, W_scale, W_zp, R_scale, R_zp; W is [dirs, in, 4h]
            # (ONNX LSTM's [dirs, 4h, in] transposed), one scale and zero point per direction.
            weights = []
            for slot, scale_slot, zero_slot in ((1, 8, 9), (2, 10, 11)):
                w, s, z = (const(node.input[i]) for i in (slot, scale_slot, zero_slot))
                assert w is not None and s is not None and z is not None, node.name
                values = (w.astype(np.float32) - z.astype(np.float32).reshape(-1, 1, 1)) * s.reshape(-1, 1, 1)
                weights.append(weight(node.input[slot] + "_fp32", values.transpose(0, 2, 1)))
            inputs = [node.input[0], *weights, *node.input[3:8]]
            while inputs and not inputs[-1]:
                inputs.pop()
            new = helper.make_node("LSTM", inputs, list(node.output), name=node.name + "_fp32")
            new.attribute.extend(node.attribute)
            replaced[index[id(node)]] = new
            counts[node.op_type] += 1
    nodes = [replaced.get(i, node) for i, node in enumerate(graph.node) if i not in removed]
    graph.initializer.extend(added.values())
    _keep_live(graph, nodes)
    return dict(counts)


def conv1d_as_2d(model: Any) -> int:
    """Each Conv1d with a constant weight → Unsqueeze, Conv2d (height 1), Squeeze; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "conv2d_axis"))
    nodes, done, count = [], set(), 0
    for node in graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits or len(inits[node.input[1]].dims) != 3:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        name = node.input[1] + "_2d"
        if name not in done:
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, :, None, :]), name))
            done.add(name)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads, stride, dilation = attrs.get("pads", [0, 0]), attrs.get("strides", [1]), attrs.get("dilations", [1])
        x4, y4 = f"{node.input[0]}_2d_{count}", f"{node.output[0]}_2d"
        nodes += [helper.make_node("Unsqueeze", [node.input[0], "conv2d_axis"], [x4]),
                  helper.make_node("Conv", [x4, name, *node.input[2:]], [y4], name=node.name + "_2d",
                                   kernel_shape=[1, w.shape[2]], pads=[0, pads[0], 0, pads[1]],
                                   strides=[1, stride[0]], dilations=[1, dilation[0]], group=attrs.get("group", 1)),
                  helper.make_node("Squeeze", [y4, "conv2d_axis"], [node.output[0]])]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _keep_live(graph, list(graph.node))
    return count


def _keep_live(graph: Any, nodes: list[Any]) -> None:
    """Only the nodes, initializers and value infos the graph's outputs still depend on."""
    producer = {out: node for node in nodes for out in node.output}
    needed = {out.name for out in graph.output}
    live: set[int] = set()
    stack = list(needed)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        for name in node.input:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    for field, keep in ((graph.node, [n for n in nodes if id(n) in live]),
                        (graph.initializer, [i for i in graph.initializer if i.name in needed]),
                        (graph.value_info, [v for v in graph.value_info if v.name in needed])):
        del field[:]
        field.extend(keep)


def build_variants(source: Path, out: Path) -> dict[str, Path]:
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    from gateway.engine.kokoro_graph import cropped_graph

    paths = {"int8 (shipped)": source, "int8, pad cropped (engine)": cropped_graph(source, out),
             "fp32": out / "kokoro-fp32.onnx", "fp32-nchwc": out / "kokoro-fp32-nchwc.onnx"}
    if not paths["fp32"].is_file():
        model = onnx.load(str(source))
        print("dequantized:", dequantize(model))
        onnx.save(model, str(paths["fp32"]))
    if not paths["fp32-nchwc"].is_file():
        model = onnx.load(str(paths["fp32"]))
        print("convs as 2-D:", conv1d_as_2d(model))
        onnx.save(model, str(paths["fp32-nchwc"]))
    return paths


# --- measuring ------------------------------------------------------------------------------------


def pitch_hz(pcm: np.ndarray, rate: int = 24000) -> float:
    """Median F0 of the voiced 40 ms frames (autocorrelation, 70-400 Hz)."""
    x = pcm.astype(np.float32) / 32768
    frame, found = int(0.04 * rate), []
    for start in range(0, len(x) - frame, frame):
        seg = x[start:start + frame] - x[start:start + frame].mean()
        if np.sqrt(np.mean(seg ** 2)) < 0.03:
            continue
        corr = np.correlate(seg, seg, "full")[frame - 1:]
        lo, hi = rate // 400, rate // 70
        lag = lo + int(np.argmax(corr[lo:hi]))
        if corr[lag] > 0.3 * corr[0]:
            found.append(rate / lag)
    return float(np.median(found)) if found else 0.0


class Graph:
    def __init__(self, path: Path, threads: int, spinning: bool, block_base: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if block_base:
            options.add_session_config_entry("session.dynamic_block_base", str(block_base))
        started = time.perf_counter()
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - started

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        audio = self.session.run(None, feed)[0]
        return _trim((np.clip(np.asarray(audio, np.float32).ravel(), -1, 1) * 32767).astype(np.int16))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kokoro-graphs"))
    parser.add_argument("--settings", nargs="+", default=["1", "2", "2+spin", "2+block4"],
                        help="threads, '+spin' (allow spinning), '+blockN' (session.dynamic_block_base)")
    parser.add_argument("--graphs", nargs="+", default=None, help="subset of the variants")
    args = parser.parse_args()
    from gateway.engine.stt import Transcriber

    files = packaged_kokoro(default_cache_dir())
    variants = build_variants(files.model, args.out)
    if args.graphs:
        variants = {k: v for k, v in variants.items() if k in args.graphs}
    vocab = json.loads(files.vocab.read_text())["vocab"]
    with np.load(files.voices) as voices:
        styles = np.asarray(voices["jm_kumo"], np.float32)
    feeds = []
    for text in TEXTS:
        tokens = [vocab[c] for c in phonemize(text) if c in vocab]
        feeds.append({"tokens": np.array([[0, *tokens, 0]], np.int64), "style": styles[len(tokens) - 1].reshape(1, 256),
                      "speed": np.array([1.0], np.float32)})
    whisper = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 2, "none")
    rows = []
    reference: dict[int, np.ndarray] = {}
    for setting in args.settings:
        threads = int(setting.split("+")[0])
        block = next((int(p[5:]) for p in setting.split("+")[1:] if p.startswith("block")), 0)
        graphs = {name: Graph(path, threads, "spin" in setting, block) for name, path in variants.items()}
        for graph in graphs.values():
            graph.run(feeds[-1])
        stats: dict[tuple[str, int], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        audio: dict[tuple[str, int], np.ndarray] = {}
        for _ in range(args.rounds):  # interleaved, so a load change hits every variant alike
            for name, graph in graphs.items():
                for i, feed in enumerate(feeds):
                    cpu, wall = time.process_time(), time.perf_counter()
                    audio[name, i] = graph.run(feed)
                    stats[name, i][0].append(time.process_time() - cpu)
                    stats[name, i][1].append(time.perf_counter() - wall)
        for name, graph in graphs.items():
            cells = []
            for i, text in enumerate(TEXTS):
                pcm = audio[name, i]
                seconds = len(pcm) / 24000
                cpu, wall = (statistics.median(v) for v in stats[name, i])
                cells.append(f"{cpu / seconds:.2f} / {wall / seconds:.2f}")
                if setting == args.settings[0]:
                    reference.setdefault(i, pcm)
                    heard = whisper.transcribe(pcm, "pt", "")
                    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
                    ref = reference[i]
                    print(f"{name:15s} {text!r}: {seconds:.2f} s, RMS {rms:.0f} "
                          f"({rms / np.sqrt(np.mean(ref.astype(np.float64) ** 2)):.2f}× int8), pitch {pitch_hz(pcm):.0f} Hz "
                          f"(int8 {pitch_hz(ref):.0f}), Whisper: {heard!r}")
            rows.append((name, setting, graph.load_s, cells))
    print("\n| graph | onnxruntime | load s | " + " | ".join(f"CPU / wall per audio s “{t}”" for t in TEXTS) + " |")
    print("|---|---|---|" + "---|" * len(TEXTS))
    for name, setting, load, cells in rows:
        print(f"| {name} | {setting} | {load:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
