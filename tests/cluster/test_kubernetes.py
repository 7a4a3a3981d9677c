"""The shipped Kubernetes manifests are valid for Kubernetes 1.37 and wire what the gateway needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(DIR.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_statefulset_names_each_pod_and_drains() -> None:
    kinds = {doc["kind"]: doc for doc in documents() if doc["metadata"]["name"] == "realtime-gateway"}
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    pod = kinds["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "httpGet" not in container["livenessProbe"]  # a draining pod answers 503 on /healthz
    drain = int(kinds["ConfigMap"]["data"]["SHUTDOWN_DRAIN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert "GATEWAY_SECRET" in kinds["Secret"]["stringData"]
    assert "preStop" in container["lifecycle"]
