"""``hil board``: the QEMU arm64 payload board's disk image.

``hil board image [--cache DIR] [--force] [--check] [--json]`` builds the image
a ``qemu-arm64`` board boots (Debian bookworm arm64, Python, pyserial, numpy and
the board agent ``firmware_bridge`` alone, started by the shipped systemd unit on
the board's UART), unless one for the current agent and recipe is cached; it
prints where it is, its key, how long the build took and how much it downloaded.
``--check`` only verifies the cached image (its disk hashed in full): a missing,
stale or corrupt image is exit 2 naming the command that builds it. The cache is
``--cache``, else ``$ORBIT_HIL_IMAGE_CACHE``, else ``~/.cache/orbit-hil/boards``.
Building needs root and Debian's mmdebstrap, qemu-user-static, binfmt-support and
arch-test (see docs/boards.md).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from hil_rig.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("board", help="QEMU arm64 payload boards: build their disk image",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="board_command", metavar="SUBCOMMAND")
    img = bsub.add_parser("image", help="build (or check) the cached qemu-arm64 board image")
    img.add_argument("--cache", help="the image cache directory (default $ORBIT_HIL_IMAGE_CACHE or "
                                     "~/.cache/orbit-hil/boards)")
    img.add_argument("--force", action="store_true", help="rebuild the board image even if cached")
    img.add_argument("--check", action="store_true", help="only verify the cached image; build nothing")
    img.add_argument("--json", action="store_true", help="print the result as one JSON object")
    img.set_defaults(func=_image)
    p.set_defaults(func=lambda a: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_usage(sys.stderr)
    print("hil: error: give a board subcommand (hil board image)", file=sys.stderr)
    return 2


def _image(a: argparse.Namespace) -> int:
    from hil_rig.boards import image as I

    cache = pathlib.Path(a.cache) if a.cache else I.default_cache_dir()
    if cache.exists() and not cache.is_dir():
        raise UsageError(f"--cache {cache}: not a directory")
    try:
        if a.check:
            img, built = I.find_image(cache, full=True), False
        else:
            img, built = I.build_image(cache, force=a.force,
                                       progress=lambda m: print(f"hil board image: {m}", file=sys.stderr, flush=True))
    except I.ImageError as exc:
        raise UsageError(str(exc)) from None
    m = img.manifest
    out = {"kind": I.KIND, "key": img.key, "path": str(img.path), "built": built,
           "kernel": m.get("kernel"), "disk_bytes": m["files"]["disk.img"]["size"],
           "build_s": m.get("build_s"), "base_build_s": m.get("base", {}).get("build_s"),
           "downloaded_bytes": m.get("base", {}).get("downloaded_bytes")}
    if a.json:
        print(json.dumps(out, sort_keys=True))
    else:
        state = "built" if built else "cached"
        print(f"{I.KIND} image {img.key} ({state}): {img.path}")
        print(f"  kernel {out['kernel']}; built in {out['build_s']} s (base root file system "
              f"{out['base_build_s']} s, {(out['downloaded_bytes'] or 0) / 1e6:.0f} MB downloaded)")
    return 0
