"""/metrics (Prometheus), readiness in health, CPU and RSS per script kernel."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from conftest import unique, wait_until


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_health_and_usage(scripts, client):
    n = unique("met")
    started = scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.api.register_route("/{n}/ok", "GET", lambda: 1)
    VWED.api.register_route("/{n}/bad", "GET", bad)

def bad():
    raise ValueError("nope")
""",
    )
    for _ in range(3):
        client.get(f"/script-api/{n}/ok")
    client.get(f"/script-api/{n}/bad")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)
    script = f"{n}.py"
    assert (
        samples[("vwed_calls_total", (("kind", "api"), ("outcome", "ok"), ("script", script)))] == 3
    )
    assert (
        samples[
            (
                "vwed_calls_total",
                (("kind", "api"), ("outcome", "HANDLER_ERROR"), ("script", script)),
            )
        ]
        == 1
    )
    assert samples[("vwed_call_duration_seconds_count", (("kind", "api"), ("script", script)))] == 4
    assert samples[("vwed_kernels_alive", (("role", "script"),))] >= 1
    assert samples[("vwed_scripts", (("status", "running"),))] >= 1
    assert ("vwed_log_records_dropped_total", ()) in samples and (
        "vwed_log_queue_depth",
        (),
    ) in samples

    health = wait_until(
        lambda: (lambda h: h if h["ready"] else None)(client.get("/script-engine/health").json()),
        30,
        "readiness",
    )
    assert health["checks"] == {"pool_warm": True, "database": True}

    info = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    kernel = info["kernels"][0]
    assert kernel["rss_mib"] > 10 and kernel["cpu_percent"] is not None
