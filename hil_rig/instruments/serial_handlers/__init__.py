"""pyserial URL handlers of the virtual bench (see :mod:`serial_handlers.protocol_hilptmx`)."""
