"""{{name}}: a VWED script.

The gateway runs this file in its own kernel, then calls boot(). Register your
routes, functions, event listeners and timers in boot(); they are served until
the script is stopped. `VWED` is preloaded: no import needed.
"""


def boot():
    VWED.log.info("script", "{{name}} started")

    # --- VWED.api: HTTP routes, served at /script-api/<path> ----------------------
    VWED.api.register_route("/{{name}}/hello", "GET", hello)
    # @VWED.api.route("/robots/{robot_id}", methods=["GET"])   # decorator form
    # return VWED.api.Response(b"raw bytes", status=201, content_type="application/octet-stream")

    # --- VWED.function: named functions for task flows and other scripts --------------
    VWED.function.register("{{name}}_add", add, "add two numbers", params=["a", "b"])
    # result = VWED.function.call("allocate_storage", {"goods_type": "box", "quantity": 3})

    # --- VWED.event: events between scripts and from task flows ----------------------
    # VWED.event.listen("robot_arrived", on_robot_arrived, priority=1)
    # VWED.event.emit("order_ready", {"order_id": 42})

    # --- VWED.timer: periodic and delayed work ---------------------------------------
    # VWED.timer.schedule(10, poll_sensors)            # every 10 s
    # VWED.timer.cron("0 2 * * *", nightly_cleanup)    # 02:00 every day

    # --- VWED.http: outgoing HTTP with timeouts ----------------------------------------
    # r = VWED.http.get("http://127.0.0.1:9000/health", timeout=5); r.json()

    # --- VWED.device: Modbus TCP (and OPC UA / PLC with extras) ----------------------
    # VWED.device.modbus("192.168.1.10", 502, register=100)            # read
    # VWED.device.modbus("192.168.1.10", 502, register=100, value=1)   # write

    # --- VWED.storage / VWED.task / VWED.robot: the platform's data --------------------
    # VWED.storage.lock_location("A-01", task_id)
    # VWED.task.get_variables(task_id)
    # VWED.robot.get_status("AMR-7")

    # --- VWED.mail: mail through the gateway's SMTP settings ---------------------------
    # VWED.mail.send("ops@example.com", "subject", "body")


def hello(request):
    name = request["query_params"].get("name", "world")
    return {"message": f"hello, {name}"}


def add(a, b):
    return a + b
