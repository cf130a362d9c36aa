"""Waveshare-style Modbus RTU relay boards: coils 0..7.

FC05 writes one coil, FC01 reads them, FC0F (15) writes several at once. Every
write is read back.
"""

from __future__ import annotations

from collections.abc import Sequence

from hil_rig.instruments.transport import ModbusConnection


class ModbusRelayBoard:
    """A relay board with ``channels`` coils starting at coil 0."""

    def __init__(self, conn: ModbusConnection, *, name: str, channels: int = 8) -> None:
        if not 1 <= channels <= 32:
            raise ValueError(f"relay board {name!r}: channels must be 1..32, got {channels}")
        self.name = name
        self.conn = conn
        self.channels = channels
        conn.coil_names.update({c: f"CH{c}" for c in range(channels)})

    def _check(self, channel: int) -> None:
        if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < self.channels:
            raise ValueError(
                f"relay board {self.name!r}: channel {channel!r} is not in 0..{self.channels - 1}"
            )

    def set_channel(self, channel: int, on: bool) -> None:
        """FC05 and read-back."""
        self._check(channel)
        self.conn.write_coil(channel, bool(on))

    def get_channel(self, channel: int) -> bool:
        """FC01."""
        self._check(channel)
        return self.conn.read_coils(channel, 1)[0]

    def get_all(self) -> list[bool]:
        return self.conn.read_coils(0, self.channels)

    def set_all(self, states: Sequence[bool]) -> None:
        """FC0F over every channel, and read-back."""
        states = [bool(s) for s in states]
        if len(states) != self.channels:
            raise ValueError(
                f"relay board {self.name!r}: expected {self.channels} states, got {len(states)}"
            )
        self.conn.write_coils(0, states)

    def close(self) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"ModbusRelayBoard({self.name!r}, {self.channels} channels, {self.conn.endpoint.url()})"
