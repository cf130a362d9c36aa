"""Python flight software: executive, modes, FDIR, payload manager, TM/TC.

Uses ``native`` and ``firmware_bridge``; never imports ``hil_rig``.
"""
