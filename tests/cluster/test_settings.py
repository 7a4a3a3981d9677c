"""The scale-out settings: validated at start, with the defaults an operator expects."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config, sanitise_instance_id
from gateway.server.worker_pool import instance_of, owner, tag


def test_instance_id_defaults_to_the_sanitised_host_name() -> None:
    assert sanitise_instance_id("Gateway_03.eu-west.example") == "gateway-03-eu-west-example"
    assert sanitise_instance_id("w1") == "hw1"  # never mistaken for a worker tag
    assert sanitise_instance_id("realtime-gateway-2") == "realtime-gateway-2"
    assert load_config([], environ={}).instance_id == sanitise_instance_id(__import__("socket").gethostname())


@pytest.mark.parametrize(("flags", "setting"), [
    (["--instance-id", "Bad_Name"], "INSTANCE_ID"),
    (["--instance-id", "w3"], "INSTANCE_ID"),
    (["--gateway-secret", "short"], "GATEWAY_SECRET"),
    (["--redis-url", "http://redis:6379"], "REDIS_URL"),
    (["--instances", "gw-1=10.0.0.2:8000"], "INSTANCES"),
    (["--advertise-url", "10.0.0.2:8000"], "ADVERTISE_URL"),
])
def test_bad_values_are_refused_at_start_naming_the_setting(flags: list[str], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_config(flags, environ={})


def test_ids_name_worker_and_instance_for_any_front() -> None:
    call_id = tag("rtc_", 1, "gw-2") + "0123abcd"
    assert call_id == "rtc_w1_gw-2_0123abcd" and (owner(call_id), instance_of(call_id)) == (1, "gw-2")
    assert (owner("rtc_gw-2_00ff"), instance_of("rtc_gw-2_00ff")) == (None, "gw-2")
    assert (owner("ek_w0_" + "x" * 43), instance_of("ek_w0_" + "x" * 43)) == (0, None)  # older ids
