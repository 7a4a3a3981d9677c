"""deploy/grafana/realtime-gateway.json against what a real gateway exports.

The dashboard is only as good as its queries: a metric renamed in gateway/server/metrics.py (or a
typo in a panel) leaves a panel empty without any error in Grafana. So a two-worker gateway
process carries a real call — a turn, a barge-in, an event the upstream refuses, a hang-up — and
/metrics is scraped from loopback (where it answers without METRICS_TOKEN); every metric name
each panel and variable queries must be in that scrape, with samples, and every label a query
groups or filters by must be on them; and every metric in the scrape must have a panel.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.page_client import GatewayProcess, PageClient
from tests.server.test_call import speak

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "realtime-gateway.json"
SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes, not by the gateway
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
            "inf", "nan"}
LABEL_LISTS = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' children included."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable (label_values(expr, label) → expr)."""
    found = [(f"panel {p['title']!r} target {t['refId']}", t["expr"])
             for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            found.append((f"variable {variable['name']}", f"sum by ({match.group(2)}) ({match.group(1)})"))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (in {…}, by (…), on (…)…), ranges or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(LABEL_LISTS, " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if match.group(0).lower() in KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation called here
        names.add(match.group(0))
    return names


def label_names(expr: str) -> set[str]:
    """Labels an expression filters on ({label=…}) or groups/matches by (by (…), ignoring (…)…)."""
    labels = {m.group(1) for body in re.findall(r"\{([^}]*)\}", expr)
              for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", re.sub(r'"(?:[^"\\]|\\.)*"', '""', body))}
    for body in re.findall(LABEL_LISTS, expr):
        labels |= {name.strip() for name in body.split(",") if name.strip()}
    return labels


class Scrape:
    """One /metrics text: sample names → their label names; declared families → their type."""

    def __init__(self, text: str) -> None:
        self.labels: dict[str, set[str]] = {}
        self.workers: dict[str, set[str]] = {}
        self.families: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                self.workers.setdefault(sample.name, set()).add(sample.labels.get("worker", ""))

    def declared(self, name: str) -> bool:
        """A sample name, or one its family's type implies (a histogram's _bucket/_sum/_count, a counter's _total)."""
        if name in self.labels:
            return True
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
        return any(name == family + suffix for family, kind in self.families.items()
                   for suffix in suffixes.get(kind, ()))


def test_the_metric_name_parser() -> None:
    """The parser itself: what it must find and what it must leave out."""
    expr = ('histogram_quantile(0.99, sum by (le, direction) (rate(gateway_added_latency_seconds_bucket'
            '{instance=~"$instance", worker=~"$worker"}[$__rate_interval]))) / ignoring(origin) group_left '
            'sum(rate(gateway_mic_frames_total{origin=~"fec|concealed"}[5m])) * 60 or vector(0)')
    assert metric_names(expr) == {"gateway_added_latency_seconds_bucket", "gateway_mic_frames_total"}
    assert label_names(expr) == {"le", "direction", "instance", "worker", "origin"}
    scrape = Scrape("# HELP x_seconds h\n# TYPE x_seconds histogram\n# HELP y c\n# TYPE y counter\n")
    assert scrape.declared("x_seconds_bucket") and scrape.declared("y_total")
    assert not scrape.declared("x_seconds_total") and not scrape.declared("y_bucket")


def test_the_dashboard_imports_into_grafana() -> None:
    """What Grafana's import needs: a Prometheus data source variable every query uses, unique
    panel ids, panels on the 24-column grid without overlapping."""
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"instance", "worker"} <= variables.keys()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"{panel['title']!r} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["expr"].count("{") == target["expr"].count("}"), target["expr"]
            assert metric_names(target["expr"]), f"{panel['title']!r} queries no metric"
            if panel["title"] != "Upstream errors":  # (the one stat that says 0 when nothing was counted)
                assert 'worker=~"$worker"' in target["expr"] and 'instance=~"$instance"' in target["expr"]


async def test_every_panel_queries_metrics_a_gateway_exports(two_worker_gateway: GatewayProcess,
                                                              fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.reply_seconds = 4.0
    page = PageClient(two_worker_gateway.url)
    peer = ClientPeer(two_worker_gateway.url)
    try:
        _, answer, _ = await page.start_call(peer)
        assert answer.status == 201, answer.text
        await peer.channel_open()
        await peer.wait_for("session.created")
        await speak(peer)  # a turn…
        await peer.wait_for("output_audio_buffer.started", timeout=15)
        await asyncio.sleep(1.0)
        mark = len(peer.events)
        await speak(peer, 0.8)  # …cut by the caller's voice (a barge-in)…
        await peer.wait_for("output_audio_buffer.cleared", after=mark, timeout=10)
        await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=20)
        peer.send({"type": "conversation.item.delete", "item_id": "item_none", "event_id": "evt_x"})
        await peer.wait_for("error", timeout=5)  # …an event the upstream refuses…
        assert (await page.hang_up(peer.location or "")).status == 204  # …and a hang-up.
    finally:
        await peer.close()
    await asyncio.sleep(0.5)
    answer = await page.request("GET", "/metrics")
    assert answer.status == 200, answer.text
    scrape = Scrape(answer.text)
    assert scrape.workers["gateway_active_calls"] == {"0", "1"}  # the $worker variable has both to offer

    board = dashboard()
    queried = set().union(*(metric_names(expr) for _, expr in queries(board)))
    unshown = {family for family in scrape.families  # (``_created``: the client library's timestamps)
               if not family.endswith("_created")
               and not queried & {family + suffix for suffix in ("", "_total", "_bucket", "_sum", "_count")}}
    assert not unshown, f"the gateway exports {unshown}, which no panel shows"
    for where, expr in queries(board):
        names = metric_names(expr)
        missing = {name for name in names if not scrape.declared(name)}
        assert not missing, f"{where} queries {missing}, which the gateway does not export"
        empty = {name for name in names if name not in scrape.labels}
        assert not empty, f"{where}: {empty} had no samples after a call"
        labels = set().union(*(scrape.labels[name] for name in names)) | SCRAPE_LABELS
        assert label_names(expr) <= labels, f"{where} uses labels {label_names(expr) - labels} that {names} lack"
