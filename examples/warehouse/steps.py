"""Task-flow steps for the warehouse: functions the task engine calls with
POST /script-engine/execute (no boot() needed: a step calls a function of the file)."""

ZONES = {"box": "A", "pallet": "B", "bin": "C"}


def pick_location(goods_type, quantity=1):
    zone = ZONES.get(goods_type, "Z")
    VWED.log.info("steps", f"picking {quantity} x {goods_type} in zone {zone}")
    return {"zone": zone, "location": f"{zone}-{int(quantity):02d}", "goods_type": goods_type}


def route_length(points):
    """Manhattan length of a route given as [[x, y], ...]."""
    return sum(
        abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(points, points[1:], strict=False)
    )
