"""``VWED.device``: field devices. Modbus TCP on pymodbus; OPC UA and S7 PLCs with
their optional extras."""

from __future__ import annotations

import threading
from typing import Any

from ..errors import VWEDError

__all__ = ["DeviceModule", "ModbusDevice", "DeviceError"]


class DeviceError(VWEDError, OSError):
    """A device is down, or answered with an error (``exception_code`` set then)."""

    def __init__(self, message: str, exception_code: int | None = None) -> None:
        super().__init__(message)
        self.exception_code = exception_code


class ModbusDevice:
    """A Modbus TCP device: one connection, kept open and reconnected on failure.

    Addresses are 0-based; ``unit`` is the Modbus unit (device) id.
    """

    def __init__(self, ip: str, port: int = 502, unit: int = 1, timeout: float = 3.0) -> None:
        from pymodbus.client import ModbusTcpClient

        self.ip, self.port, self.unit = ip, port, unit
        self._client = ModbusTcpClient(ip, port=port, timeout=timeout, retries=1)
        self._lock = threading.Lock()

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        from pymodbus.exceptions import ModbusException

        with self._lock:
            for attempt in (1, 2):
                if not self._client.connected and not self._client.connect():
                    if attempt == 2:
                        raise DeviceError(f"Modbus device {self.ip}:{self.port} is not reachable")
                    continue
                try:
                    response = getattr(self._client, method)(
                        *args, device_id=kwargs.pop("unit", self.unit), **kwargs
                    )
                except (ModbusException, OSError) as exc:
                    self._client.close()  # reconnect once, then give up
                    if attempt == 2:
                        raise DeviceError(
                            f"Modbus {what} on {self.ip}:{self.port} failed: {exc}"
                        ) from exc
                    continue
                if response.isError():
                    code = getattr(response, "exception_code", None)
                    raise DeviceError(
                        f"Modbus {what} on {self.ip}:{self.port} answered exception code {code}",
                        code,
                    )
                return response
        raise DeviceError(f"Modbus device {self.ip}:{self.port} is not reachable")

    def read_holding_registers(
        self, address: int, count: int = 1, unit: int | None = None
    ) -> list[int]:
        """Holding registers ``address`` .. ``address+count-1``."""
        return list(
            self._call(
                "read", "read_holding_registers", address, count=count, unit=unit or self.unit
            ).registers
        )

    def read_input_registers(
        self, address: int, count: int = 1, unit: int | None = None
    ) -> list[int]:
        """Input registers."""
        return list(
            self._call(
                "read", "read_input_registers", address, count=count, unit=unit or self.unit
            ).registers
        )

    def read_coils(self, address: int, count: int = 1, unit: int | None = None) -> list[bool]:
        """Coils."""
        return [
            bool(b)
            for b in self._call(
                "read", "read_coils", address, count=count, unit=unit or self.unit
            ).bits[:count]
        ]

    def read_discrete_inputs(
        self, address: int, count: int = 1, unit: int | None = None
    ) -> list[bool]:
        """Discrete inputs."""
        return [
            bool(b)
            for b in self._call(
                "read", "read_discrete_inputs", address, count=count, unit=unit or self.unit
            ).bits[:count]
        ]

    def write_register(self, address: int, value: int, unit: int | None = None) -> None:
        """One holding register."""
        self._call("write", "write_register", address, int(value), unit=unit or self.unit)

    def write_registers(self, address: int, values: list[int], unit: int | None = None) -> None:
        """Several holding registers from ``address``."""
        self._call(
            "write", "write_registers", address, [int(v) for v in values], unit=unit or self.unit
        )

    def write_coil(self, address: int, value: bool, unit: int | None = None) -> None:
        """One coil."""
        self._call("write", "write_coil", address, bool(value), unit=unit or self.unit)

    def write_coils(self, address: int, values: list[bool], unit: int | None = None) -> None:
        """Several coils from ``address``."""
        self._call(
            "write", "write_coils", address, [bool(v) for v in values], unit=unit or self.unit
        )

    def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        self._client.close()


class DeviceModule:
    """``VWED.device.modbus(ip, port, register, value=None, unit=1)`` reads (or, with a
    value, writes) one holding register; ``VWED.device.modbus_client(ip, port)`` gives the
    full client. Connections are cached per device. ``opc(...)`` and ``plc(...)`` need
    the ``opc`` / ``plc`` extras."""

    def __init__(self) -> None:
        self._devices: dict[tuple[str, int, int], ModbusDevice] = {}
        self._lock = threading.Lock()

    def modbus_client(self, ip: str, port: int = 502, unit: int = 1) -> ModbusDevice:
        """The (cached) client of a Modbus TCP device."""
        key = (ip, int(port), int(unit))
        with self._lock:
            device = self._devices.get(key)
            if device is None:
                device = self._devices[key] = ModbusDevice(ip, int(port), int(unit))
        return device

    def modbus(
        self, ip: str, port: int = 502, register: int = 0, value: int | None = None, unit: int = 1
    ) -> int | None:
        """Read one holding register (returns its value), or write ``value`` to it."""
        device = self.modbus_client(ip, port, unit)
        if value is None:
            return device.read_holding_registers(register, 1)[0]
        device.write_register(register, value)
        return None

    def opc(self, server_url: str, node_id: str, value: Any = None) -> Any:
        """Read (or write) one OPC UA node. Needs the ``opc`` extra (asyncua)."""
        try:
            from asyncua.sync import Client
        except ImportError:
            raise DeviceError(
                "OPC UA needs the 'opc' extra: pip install 'vwed-script-engine[opc]'"
            ) from None
        with Client(server_url) as client:
            node = client.get_node(node_id)
            if value is None:
                return node.read_value()
            node.write_value(value)
            return None

    def plc(
        self,
        ip: str,
        rack: int = 0,
        slot: int = 1,
        db_number: int = 1,
        start: int = 0,
        size: int = 4,
        data: bytes | None = None,
    ) -> bytes | None:
        """Read ``size`` bytes of a Siemens S7 data block (or write ``data``). Needs the
        ``plc`` extra (python-snap7)."""
        try:
            import snap7
        except ImportError:
            raise DeviceError(
                "S7 PLCs need the 'plc' extra: pip install 'vwed-script-engine[plc]'"
            ) from None
        client = snap7.client.Client()
        client.connect(ip, rack, slot)
        try:
            if data is None:
                return bytes(client.db_read(db_number, start, size))
            client.db_write(db_number, start, bytearray(data))
            return None
        finally:
            client.disconnect()

    def close_all(self) -> None:
        """Close every cached device connection."""
        with self._lock:
            for device in self._devices.values():
                device.close()
            self._devices.clear()
