"""Errors raised by instrument drivers and the bench.

Every message names the instrument, and where one is involved the register and
the Modbus exception, so that a bench operator can act on it without a stack
trace: ``supply 'psu0' register 8 (V-SET): IllegalDataValue (exception code 3)``.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """An instrument did not do what it was asked (I/O, exception response, read-back)."""


class InstrumentTimeout(InstrumentError):
    """No (valid) answer within the bounded timeout and retries."""


class InstrumentUnreachable(InstrumentTimeout):
    """Nothing answers at the instrument's URL: no connection in any attempt
    (a TCP port with nothing listening, a serial port that cannot be opened)."""


class ModbusExceptionResponse(InstrumentError):
    """The instrument answered with a Modbus exception response."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ReadBackMismatch(InstrumentError):
    """A write was acknowledged but reading the register back gave another value."""


class LimitError(InstrumentError, ValueError):
    """A setpoint outside the bench file's limits; refused before anything is sent."""


class UnknownModelError(InstrumentError):
    """The model ID read from the instrument is not in its register-map profile."""


class ConfigError(ValueError):
    """A bad bench file or profile: the message names the file and the key."""
