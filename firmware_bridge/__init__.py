"""The link to the payload boards: protocol, serial link, board agent, emulator.

This package imports nothing else of the project: its agent runs alone on a
Jetson or Raspberry Pi with only Python, pyserial and numpy.
"""
