"""Robot battery estimates: a stateless script, so it can run in several kernels
("replicas": each call goes to the replica with the fewest calls in flight)."""

FULL_RANGE_M = 12_000  # metres on a full charge


def boot():
    VWED.api.register_route("/robot/range/{percent}", "GET", remaining_range)
    VWED.function.register("can_reach", can_reach, "whether a robot can drive a distance")


def remaining_range(request):
    percent = max(0.0, min(100.0, float(request["path_params"]["percent"])))
    return {"percent": percent, "range_m": round(FULL_RANGE_M * percent / 100)}


def can_reach(percent, distance_m, reserve=0.1):
    usable = FULL_RANGE_M * (float(percent) / 100 - float(reserve))
    return {"reachable": usable >= float(distance_m), "usable_m": max(0, round(usable))}
