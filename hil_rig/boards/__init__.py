"""Payload boards the rig powers itself: QEMU-emulated arm64 boards.

- :mod:`hil_rig.boards.image`: the board's disk image (a Debian arm64 root file
  system holding Python, pyserial, numpy and the board agent, nothing more of the
  project), built once and cached by a hash of the agent and the recipe;
- :mod:`hil_rig.boards.qemu`: one board as a QEMU process: power on is a boot,
  power off is killing the process, the disk persists; its host CPU use is its load.
"""
