"""``GET /script-engine/stats`` (series sampled by the gateway every
``--stats-interval`` seconds), the rates of ``GET /running``, ``GET /whoami`` with
either token, and the two settings (``--jupyter-url``, ``--stats-interval``)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from conftest import token_gateway, unique, wait_until
from kernel_gateway import __version__
from kernel_gateway.config import ConfigError, Settings, parse_settings

ADMIN = "stats-admin-" + uuid.uuid4().hex
CALLER = "stats-caller-" + uuid.uuid4().hex
LAB = "http://lab.example:8888/lab"

SCRIPT = """
def ok(request):
    return {{"ok": True}}

def bad(request):
    raise RuntimeError("conveyor jammed")

def boot():
    VWED.api.register_route("/{n}/ok", "GET", ok)
    VWED.api.register_route("/{n}/bad", "GET", bad)
"""


@pytest.fixture(scope="module")
def stats_gw(tmp_path_factory):
    yield from token_gateway(
        tmp_path_factory, "stats", ADMIN, CALLER, stats_interval=0.2, jupyter_url=LAB
    )


@pytest.fixture
def admin(stats_gw):
    gw, _ = stats_gw
    with httpx.Client(
        base_url=gw.url, timeout=30, headers={"Authorization": f"token {ADMIN}"}
    ) as c:
        yield c


def stats(client: httpx.Client, **params: object) -> dict:
    r = client.get("/script-engine/stats", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_calls_show_in_the_series_and_in_running(stats_gw, admin):
    _, root = stats_gw
    n = unique("stat")
    path = f"{n}.py"
    (root / path).write_text(SCRIPT.format(n=n))
    r = admin.post("/script-engine/start", json={"script_path": path})
    assert r.status_code == 200, r.text
    sid = r.json()["script_id"]
    try:
        for _ in range(9):
            assert admin.get(f"/script-api/{n}/ok").status_code == 200
        assert admin.get(f"/script-api/{n}/bad").status_code == 500

        # /running: the rates of the last minute, at once (not waiting for a sample)
        item = next(
            s
            for s in admin.get("/script-engine/running").json()["scripts"]
            if s["script_id"] == sid
        )
        assert item["calls_per_s"] > 0
        assert item["error_rate"] == pytest.approx(0.1)

        def sampled():
            # the ten calls may span several 0.2 s intervals: wait for the one with the error
            series = stats(admin, script_path=path)["scripts"].get(path)
            if not series or not sum(series["errors"]):
                return None
            return series

        series = wait_until(sampled, 10, "a sample with the calls")
        assert set(series) == {"t", "calls_per_s", "errors", "p50_ms", "p99_ms"}
        assert len({len(v) for v in series.values()}) == 1  # one value per point of t
        busy = [i for i, v in enumerate(series["calls_per_s"]) if v > 0]
        assert sum(series["errors"][i] for i in busy) == 1
        assert all(series["p50_ms"][i] > 0 for i in busy)
        assert all(series["p99_ms"][i] >= series["p50_ms"][i] for i in busy)
        assert series["t"] == sorted(series["t"])
        # an idle interval of a running script is a point too: 0 calls, no quantiles
        later = wait_until(
            lambda: (lambda s: s if s["calls_per_s"][-1] == 0 else None)(
                stats(admin, script_path=path)["scripts"][path]
            ),
            10,
            "an idle point",
        )
        assert later["p50_ms"][-1] is None and later["p99_ms"][-1] is None

        kernels = wait_until(
            lambda: {
                k: v
                for k, v in stats(admin, script_path=path)["kernels"].items()
                if any(x is not None and x > 0 for x in v["rss_mb"])
            },
            10,
            "a kernel sample",
        )
        assert list(kernels) == [f"{path}#0"]
        point = kernels[f"{path}#0"]
        assert set(point) == {"t", "cpu_percent", "rss_mb"}
        assert all(c is None or c >= 0 for c in point["cpu_percent"])

        whole = stats(admin)
        assert whole["interval_s"] == 0.2
        assert path in whole["scripts"] and f"{path}#0" in whole["kernels"]
        assert stats(admin, script_path="other.py") == {
            "success": True,
            "interval_s": 0.2,
            "scripts": {},
            "kernels": {},
        }
        recent = stats(admin, script_path=path, minutes=1)["scripts"][path]
        assert 0 < len(recent["t"]) <= len(stats(admin, script_path=path)["scripts"][path]["t"])
    finally:
        admin.post("/script-engine/stop", json={"script_id": sid})

    # a stopped script keeps its history (for the hour)
    after = stats(admin, script_path=path)
    assert any(v > 0 for v in after["scripts"][path]["calls_per_s"])
    assert f"{path}#0" in after["kernels"]


@pytest.mark.parametrize(
    "params", [{"minutes": "0"}, {"minutes": "61"}, {"minutes": "an hour"}, {"window": "5"}]
)
def test_bad_stats_parameters_are_400(admin, params):
    r = admin.get("/script-engine/stats", params=params)
    assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER", r.text
    assert list(params)[0] in r.json()["error"]


def test_whoami_answers_the_role_of_each_token(stats_gw):
    gw, _ = stats_gw
    url = f"{gw.url}/script-engine/whoami"
    for token, role in ((ADMIN, "admin"), (CALLER, "caller")):
        r = httpx.get(url, headers={"Authorization": f"token {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "success": True,
            "role": role,
            "version": __version__,
            "jupyter_url": LAB,
        }
    r = httpx.get(url, headers={"Authorization": f"Bearer {CALLER}"}, timeout=10)
    assert r.json()["role"] == "caller"
    assert httpx.get(url, timeout=10).status_code == 401
    bad = httpx.get(url, headers={"Authorization": "token nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json()["code"] == "UNAUTHORIZED"
    # the caller sees who it is, not the gateway's series
    r = httpx.get(
        f"{gw.url}/script-engine/stats", headers={"Authorization": f"token {CALLER}"}, timeout=10
    )
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"


def test_whoami_without_auth_and_without_jupyter_url(client):
    r = client.get("/script-engine/whoami")  # the shared gateway: --no-auth
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin" and r.json()["jupyter_url"] is None


@pytest.mark.parametrize(
    "value",
    ["lab.example:8888", "ftp://lab.example/", "http://", "javascript:alert(1)", "http://h:99999/"],
)
def test_jupyter_url_must_be_http(tmp_path, value):
    with pytest.raises(ConfigError, match="jupyter_url"):
        Settings(scripts_dir=str(tmp_path), jupyter_url=value).validated()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "7200"])
def test_stats_interval_must_be_positive(tmp_path, value):
    with pytest.raises(ConfigError, match="stats_interval"):
        parse_settings(["--scripts-dir", str(tmp_path), "--stats-interval", value])


def test_the_two_settings_from_flags(tmp_path):
    settings = parse_settings(
        [
            "--scripts-dir",
            str(tmp_path),
            "--jupyter-url",
            "https://lab.factory.local/jupyter/",
            "--stats-interval",
            "2.5",
        ]
    )
    assert settings.jupyter_url == "https://lab.factory.local/jupyter/"
    assert settings.stats_interval == 2.5
    assert Settings().stats_interval == 10.0 and Settings().jupyter_url == ""


def test_meter_bounds_and_series_lifetime():
    """The call path keeps at most MAX_DURATIONS durations an interval; quantiles come
    from them; a path that is not running keeps its series for the hour, then goes."""
    import time

    from kernel_gateway.engine import ScriptTable
    from kernel_gateway.stats import KEEP_SECONDS, MAX_DURATIONS, CallStats

    stats = CallStats(ScriptTable(), 10.0)
    meter = stats.meter("a.py")
    assert stats.meter("a.py") is meter
    for i in range(3 * MAX_DURATIONS):
        meter.record(i % 10 != 0, 0.001 * (1 + i % 100))
    assert len(meter.durations) == MAX_DURATIONS
    calls_per_s, error_rate = meter.rates()
    assert calls_per_s > 0 and error_rate == pytest.approx(0.1, abs=0.001)
    now = time.time() + 10
    stats.sample(now)
    series = stats.series("a.py")["scripts"]["a.py"]
    assert series["t"] == [now] and series["errors"] == [len(range(0, 3 * MAX_DURATIONS, 10))]
    assert 1.0 <= series["p50_ms"][0] <= series["p99_ms"][0] <= 100.0
    assert meter.calls == 0 and meter.durations == []
    stats.sample(now + 10)  # not running, no calls: no point, the history stays
    assert stats.series("a.py")["scripts"]["a.py"]["t"] == [now]
    stats.sample(now + KEEP_SECONDS + 1)
    assert stats.series()["scripts"] == {}
