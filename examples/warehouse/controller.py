"""Warehouse controller: storage status and allocation for task flows."""

LOCATIONS = {f"A-{i:02d}": None for i in range(1, 11)}


def boot():
    VWED.api.register_route("/warehouse/status", "GET", warehouse_status)
    VWED.api.register_route("/warehouse/locations/{code}", "GET", location)
    VWED.function.register(
        "allocate_storage",
        allocate_storage,
        "reserve free locations for goods",
        params=["goods_type", "quantity"],
    )
    VWED.log.info("warehouse", f"controller ready with {len(LOCATIONS)} locations")


def warehouse_status(request):
    free = [code for code, goods in LOCATIONS.items() if goods is None]
    return {"total": len(LOCATIONS), "free": len(free), "occupied": len(LOCATIONS) - len(free)}


def location(request):
    code = request["path_params"]["code"]
    if code not in LOCATIONS:
        return VWED.api.Response({"error": f"no location {code}"}, status=404)
    return {"code": code, "goods": LOCATIONS[code]}


def allocate_storage(goods_type, quantity=1):
    free = [code for code, goods in LOCATIONS.items() if goods is None][: int(quantity)]
    if len(free) < int(quantity):
        raise ValueError(f"only {len(free)} free locations, {quantity} asked")
    for code in free:
        LOCATIONS[code] = goods_type
    VWED.log.info("warehouse", f"allocated {free} for {goods_type}")
    return {"locations": free, "goods_type": goods_type}
