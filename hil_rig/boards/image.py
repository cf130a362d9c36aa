"""The disk image of a QEMU arm64 payload board (``hil board image``).

A Debian bookworm arm64 root file system built with ``mmdebstrap`` (foreign
architecture through ``qemu-user-static`` and binfmt_misc) holding Python,
pyserial, numpy, a kernel, systemd and the board agent package
``firmware_bridge`` alone, at ``/opt/orbit-hil`` as the shipped systemd unit
(``firmware_bridge/systemd/orbit-hil-agent.service``) expects. The unit itself is
installed and enabled, with one drop-in that names the board's UART (the PL011 of
QEMU's ``virt`` machine, ``/dev/ttyAMA0``) and adds ``--test-mode`` when the
kernel command line asks for it (``systemd.setenv=ORBIT_HIL_AGENT_TEST_MODE=...``).
No getty, no network: at run time the board needs nothing from outside.

Two layers, each cached:

- the **base** root file system (Debian's packages, the kernel, users, masked
  units): ``<cache>/base-<key>/``,
  keyed by a hash of the base recipe (``_base_recipe()``); the slow part (about
  4 minutes and 200 MB of downloads, the only time the build uses the network);
- the **board image**: the base plus the agent, its unit and drop-in, the boot
  trimmed (``BOARD_MASKED``, ``BOARD_GENERATORS``), as an ext4 disk, and the board's
  own initrd (``_board_initrd``: klibc and eight modules, no udev): keyed by a hash of
  the agent (every file of ``firmware_bridge``), of this module's source and of the
  base key; about 20-40 s from a cached base.

So the image is rebuilt only when the agent or the recipe changes.
An image is a directory ``<cache>/qemu-arm64-<key>/`` holding
``vmlinuz``, ``initrd.img``, ``disk.img`` (ext4, never booted itself: each board
boots its own copy) and ``manifest.json`` (key, sizes and SHA-256 of the files,
build time, bytes downloaded). It is written under a temporary name and renamed
when complete, so a half-built image is never found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import firmware_bridge

KIND = "qemu-arm64"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://security.debian.org/debian-security"
PACKAGES = ("python3", "python3-serial", "python3-numpy", "linux-image-arm64", "initramfs-tools",
            "zstd", "systemd-sysv", "udev")
#: modules the initrd needs to mount the root disk and show the console (MODULES=list: the
#: default MODULES=most runs mkinitramfs under qemu-user for ~7 min, twice)
INITRD_MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "ext4", "crc32c_generic")
DISK_SIZE = "1536M"
AGENT_DIR = "/opt/orbit-hil"
UART = "/dev/ttyAMA0"
UART_BAUD = 115200
#: Debian packages the build needs on the host (``apt-get install``)
HOST_PACKAGES = ("mmdebstrap", "qemu-user-static", "binfmt-support", "arch-test", "e2fsprogs",
                 "qemu-system-arm")
BUILD_COMMAND = "hil board image"
#: units a payload board does without (masked in the board layer): each costs seconds of
#: boot under TCG and none serves the agent (no logins, no utmp, no kernel debug mounts)
BOARD_MASKED = (
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service", "systemd-journal-flush.service",
    "systemd-random-seed.service", "systemd-sysusers.service", "kmod-static-nodes.service",
    "modprobe@.service", "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "dev-hugepages.mount",
    "dev-mqueue.mount", "sys-fs-fuse-connections.mount", "sys-kernel-config.mount",
    "proc-sys-fs-binfmt_misc.automount", "systemd-binfmt.service", "getty-static.service",
    "systemd-pstore.service", "systemd-hwdb-update.service", "systemd-machine-id-commit.service",
    "ldconfig.service", "systemd-journal-catalog-update.service", "systemd-update-done.service",
    "systemd-tmpfiles-clean.timer", "systemd-ask-password-console.path", "systemd-ask-password-wall.path",
    "systemd-fsckd.socket", "systemd-initctl.socket", "systemd-journald-audit.socket",
    "systemd-user-sessions.service", "dpkg-db-backup.timer",
    # measured in a boot's console (docs/boards.md "Boot time"): seconds of the one vCPU each,
    # and nothing the agent uses: no modules to load (the board's initrd loaded them), no
    # sysctl, the root is mounted read-write by the initrd, no tmpfiles to create; udev whole
    # (its coldplug held sysinit.target; the agent's unit sets its UART's group itself)
    "systemd-modules-load.service", "systemd-sysctl.service", "systemd-remount-fs.service",
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    # the journal: its start took 7 s of the one vCPU beside the agent's in a loaded boot;
    # the agent writes to the console itself (StandardOutput=console in the drop-in), the
    # kernel does too, and the console is the board's log the rig reads
    "systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket",
)
#: systemd's generators a payload board needs: the fstab one (its root); the others (sysv
#: scripts, getty, cryptsetup, gpt-auto, ...) each cost a fork and exec under TCG at every boot
BOARD_GENERATORS = ("systemd-fstab-generator",)
#: the board's own initrd (``_board_initrd``): these modules in this order (dependencies
#: first), from the base's kernel; klibc's sh, insmod, mount and run-init; no udev
INITRD_LOAD = ("crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "virtio_mmio", "virtio_console",
               "virtio_blk")
INITRD_TOOLS = ("sh", "insmod", "mount", "umount", "run-init", "sleep")
ENV_CACHE = "ORBIT_HIL_IMAGE_CACHE"
#: share of a paced job step a QEMU board's agent keeps its vCPU busy (``--hold-pace``): at
#: throttle 1 half a host core per board, so that two boards and the rig fit a 2-core host
HOLD_SHARE = 0.5
#: an image used (found) this recently is kept when another is built into the same cache
KEEP_USED_S = 24 * 3600

_DROPIN = f"""\
# orbit-hil QEMU arm64 board: the shipped unit, on the emulated board's UART (PL011).
# ORBIT_HIL_AGENT_TEST_MODE (--test-mode) and ORBIT_HIL_AGENT_PACE (--rated-flops=N) come from
# the kernel command line (systemd.setenv=): the bench file's choices, no rebuild.
# --hold-pace: the board's draw is read from its CPU use, so a paced job keeps it busy for
# HOLD_SHARE of each step (hil_rig/boards/image.py; docs/boards.md "Draw").
# Started early: no default dependencies (sysinit.target, basic.target), only the shipped
# unit's local-fs.target; the UART is given to the agent's user here, not by udev (masked:
# one exec, a fork of systemd costs tenths of a second under TCG); its output goes to the
# console's tty (the board has no journal; /dev/console is unusable, the virtio console
# appears after the kernel opened it), where the rig reads its start line.
[Unit]
DefaultDependencies=no
[Service]
ExecStartPre=+/bin/chown orbit-hil {UART}
StandardOutput=tty
TTYPath=/dev/hvc0
ExecStart=
ExecStart=/usr/bin/python3 -m firmware_bridge.agent --port {UART} --baud {UART_BAUD} --state-dir /var/lib/orbit-hil-agent --hold-pace {HOLD_SHARE} $ORBIT_HIL_AGENT_TEST_MODE $ORBIT_HIL_AGENT_PACE
"""

#: the board's initrd's /init (klibc's sh): load the modules, wait for the root disk, mount
#: it read-write and hand over to systemd. A failure says so on the console and stops there
#: (the rig's boot budget then names the board with the console's tail).
_INIT = """\
#!/bin/sh
# orbit-hil QEMU arm64 board initrd (hil_rig/boards/image.py): no udev, no scripts
fail() {{ echo "orbit-hil initrd: $*" > /dev/console; while :; do sleep 3600; done; }}
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
for m in {modules}; do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1))
    [ $n -le 600 ] || fail "no root disk /dev/vda after 30 s"
    sleep 0.05
done
mount -t ext4 -o rw /dev/vda /root || fail "mount /dev/vda"
umount /dev
exec run-init /root /sbin/init
"""


class ImageError(Exception):
    """No image, a stale or corrupt one, or a build that failed: the message names the fix."""


@dataclasses.dataclass(frozen=True)
class BoardImage:
    """A built, verified image."""

    path: pathlib.Path
    key: str
    manifest: dict

    @property
    def kernel(self) -> pathlib.Path:
        return self.path / "vmlinuz"

    @property
    def initrd(self) -> pathlib.Path:
        return self.path / "initrd.img"

    @property
    def disk(self) -> pathlib.Path:
        return self.path / "disk.img"


def default_cache_dir() -> pathlib.Path:
    """``$ORBIT_HIL_IMAGE_CACHE``, else ``$XDG_CACHE_HOME/orbit-hil/boards`` (``~/.cache/...``)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return pathlib.Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "orbit-hil" / "boards"


def agent_dir() -> pathlib.Path:
    return pathlib.Path(firmware_bridge.__file__).parent


def _agent_files() -> list[pathlib.Path]:
    root = agent_dir()
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def _base_recipe() -> str:
    """Everything the base layer depends on, as text: its hash is the base's key."""
    return "\n".join([SUITE, MIRROR, SECURITY, ",".join(PACKAGES), ",".join(INITRD_MODULES),
                      _setup_script(), _base_customize_script()])


def base_key() -> str:
    return hashlib.sha256(_base_recipe().encode()).hexdigest()[:16]


def _agent_snapshot() -> dict[str, bytes]:
    """The agent package's files (relative path -> content), read once: the key and the
    image are made from the same bytes even if the tree changes during a build."""
    root = agent_dir()
    return {str(p.relative_to(root)): p.read_bytes() for p in _agent_files()}


def cache_key(agent: dict[str, bytes] | None = None) -> str:
    """A hash of the agent package, of this recipe and of the base (16 hex digits)."""
    h = hashlib.sha256()
    for rel, data in sorted((agent if agent is not None else _agent_snapshot()).items()):
        h.update(rel.encode() + b"\0" + data + b"\0")
    h.update(pathlib.Path(__file__).read_bytes())
    h.update(base_key().encode())
    return h.hexdigest()[:16]


def image_dir(cache: pathlib.Path | None = None, key: str | None = None) -> pathlib.Path:
    return (cache or default_cache_dir()) / f"{KIND}-{key or cache_key()}"


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def find_image(cache: pathlib.Path | None = None, *, full: bool = False, key: str | None = None) -> BoardImage:
    """The image for the current agent and recipe, verified; else an :class:`ImageError`
    naming the command that builds it. ``full`` also hashes the disk (~1 s), not only its
    size, the kernel's and the initrd's hashes."""
    cache = cache or default_cache_dir()
    key = key or cache_key()
    d = image_dir(cache, key)
    cmd = BUILD_COMMAND + (f" --cache {cache}" if cache != default_cache_dir() else "")
    rebuild = f"build it with `{cmd}`"
    if not d.is_dir():
        others = sorted(p.name for p in cache.glob(f"{KIND}-*")) if cache.is_dir() else []
        if others:
            raise ImageError(f"the {KIND} board image in {cache} is stale (built for another agent or "
                             f"recipe: {', '.join(others)}; this one is {key}): {rebuild}")
        raise ImageError(f"no {KIND} board image in {cache}: {rebuild}")
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"the {KIND} board image {d} is corrupt (manifest.json: {exc}): "
                         f"rebuild it with `{cmd} --force`") from None
    img = BoardImage(d, key, manifest)
    for name, meta in manifest.get("files", {}).items():
        p = d / name
        try:
            size = p.stat().st_size
        except OSError:
            size = None
        bad = size != meta["size"] or ((full or name != "disk.img") and _sha256(p) != meta["sha256"])
        if bad:
            raise ImageError(f"the {KIND} board image {d} is corrupt ({name} does not match its manifest): "
                             f"rebuild it with `{cmd} --force`")
    if set(manifest.get("files", {})) != {"vmlinuz", "initrd.img", "disk.img"}:
        raise ImageError(f"the {KIND} board image {d} is corrupt (manifest lists {sorted(manifest.get('files', {}))}): "
                         f"rebuild it with `{cmd} --force`")
    try:  # in use: its time is the last use, so a build elsewhere does not drop it (build_image)
        os.utime(d)
    except OSError:
        pass
    return img


def missing_host_tools() -> list[str]:
    """Debian packages the build needs that are not installed (by the command each provides)."""
    tools = {"mmdebstrap": "mmdebstrap", "qemu-aarch64-static": "qemu-user-static",
             "update-binfmts": "binfmt-support", "arch-test": "arch-test", "mke2fs": "e2fsprogs"}
    return sorted({pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None})


def _enable_binfmt() -> None:
    """Make arm64 binaries run through qemu-user (mmdebstrap's foreign-architecture chroot)."""
    bm = pathlib.Path("/proc/sys/fs/binfmt_misc")
    if not (bm / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(bm)], check=True)
    if not (bm / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=True)
    if not (bm / "qemu-aarch64").exists():
        raise ImageError("binfmt_misc has no qemu-aarch64 entry after update-binfmts --enable qemu-aarch64: "
                         "is qemu-user-static installed?")


def _setup_script() -> str:
    """Before any package: initramfs-tools with MODULES=list and only what the virt machine
    needs (kept by dpkg's force-confold)."""
    return ('set -eu\nmkdir -p "$1/etc/initramfs-tools/conf.d"\n'
            'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/orbit-hil.conf"\n'
            f'printf "%s\\n" {" ".join(INITRD_MODULES)} > "$1/etc/initramfs-tools/modules"\n')


def _base_customize_script() -> str:
    """Run on the host with the root file system as ``$1`` (mmdebstrap customize hook)."""
    return """set -eu
R="$1"
# how much apt downloaded: the packages (still in the archive cache here) and the indices
find "$R/var/cache/apt/archives" -name '*.deb' -printf '%s\\n' | awk '{s+=$1} END {print s+0}' > "$R/../debs_bytes"
du -sb "$R/var/lib/apt/lists" | cut -f1 > "$R/../lists_bytes"
chroot "$R" useradd --system --no-create-home --groups dialout orbit-hil
for u in getty@.service serial-getty@.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \\
         e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-networkd.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"
done
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' > "$R/etc/fstab"
echo 'qemu-arm64' > "$R/etc/hostname"
# the journal (the agent's start line among it) on the console log, which the rig reads
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\\nForwardToConsole=yes\\nTTYPath=/dev/hvc0\\nMaxLevelConsole=info\\n' \\
    > "$R/etc/systemd/journald.conf.d/console.conf"
rm -rf "$R/var/lib/apt/lists"/* "$R/usr/share/doc"/* "$R/usr/share/man"/* "$R/usr/share/locale"/*
"""


def _install_agent(rootfs: pathlib.Path, agent: dict[str, bytes], log: pathlib.Path) -> None:
    """The agent package alone at AGENT_DIR, the shipped unit enabled with the board's drop-in,
    and the boot trimmed to what a payload board needs (``BOARD_MASKED``)."""
    dst = rootfs / AGENT_DIR.lstrip("/") / "firmware_bridge"
    for rel, data in agent.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
    _run(["chroot", str(rootfs), "python3", "-m", "compileall", "-q", f"{AGENT_DIR}/firmware_bridge"],
         log, "compileall (arm64 python3 through qemu-user)")
    system = rootfs / "etc/systemd/system"
    (system / "orbit-hil-agent.service").write_bytes(agent["systemd/orbit-hil-agent.service"])
    for unit in BOARD_MASKED:
        (system / unit).unlink(missing_ok=True)
        os.symlink("/dev/null", system / unit)
    generators = rootfs / "etc/systemd/system-generators"
    generators.mkdir(parents=True, exist_ok=True)
    for g in sorted((rootfs / "usr/lib/systemd/system-generators").iterdir()):
        if g.name not in BOARD_GENERATORS:
            os.symlink("/dev/null", generators / g.name)
    (system / "orbit-hil-agent.service.d").mkdir(exist_ok=True)
    (system / "orbit-hil-agent.service.d" / "qemu-board.conf").write_text(_DROPIN)
    (system / "multi-user.target.wants").mkdir(exist_ok=True)
    os.symlink("/etc/systemd/system/orbit-hil-agent.service",
               system / "multi-user.target.wants" / "orbit-hil-agent.service")


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed ``newc`` cpio archive (the kernel's initramfs format) of (path, mode,
    content) entries: a directory's content is empty, a symlink's is its target."""
    out = bytearray()

    def add(ino: int, name: str, mode: int, data: bytes) -> None:
        nb = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        out.extend(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, 1):
        add(ino, name, mode, data)
    add(0, "TRAILER!!!", 0, b"")
    return bytes(out)


def _board_initrd(rootfs: pathlib.Path, kernel: str) -> bytes:
    """The board's initrd, from the base's klibc and kernel modules: ``INITRD_LOAD`` loaded
    by klibc's ``insmod``, the root disk mounted, systemd started with ``run-init``. About
    2 MB uncompressed, against the base's initramfs-tools initrd (5.4 MB of zstd, udev
    and its coldplug inside): the kernel neither decompresses it nor waits for udev."""
    entries: list[tuple[str, int, bytes]] = [(d, 0o40755, b"") for d in ("bin", "dev", "lib", "lib/modules", "root")]
    klibc = sorted((rootfs / "usr/lib").glob("klibc-*.so"))
    if len(klibc) != 1:
        raise ImageError(f"expected one klibc-*.so in {rootfs / 'usr/lib'} (klibc-utils), found {klibc}")
    entries.append((f"lib/{klibc[0].name}", 0o100755, klibc[0].read_bytes()))
    for tool in INITRD_TOOLS:
        entries.append((f"bin/{tool}", 0o100755, (rootfs / "usr/lib/klibc/bin" / tool).read_bytes()))
    mods = rootfs / "lib/modules" / kernel
    paths = {pathlib.Path(line.split(":", 1)[0]).stem: line.split(":", 1)[0]
             for line in (mods / "modules.dep").read_text().splitlines()}
    for m in INITRD_LOAD:
        if m not in paths:
            raise ImageError(f"kernel {kernel} has no module {m} (modules.dep)")
        entries.append((f"lib/modules/{m}.ko", 0o100644, (mods / paths[m]).read_bytes()))
    entries.append(("init", 0o100755, _INIT.format(modules=" ".join(INITRD_LOAD)).encode()))
    return _cpio_newc(entries)


def _run(cmd: list[str], log: pathlib.Path, what: str) -> None:
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ImageError(f"{what} failed (exit {r.returncode}); log {log}:\n{tail}")


def _build_base(cache: pathlib.Path, progress) -> pathlib.Path:  # type: ignore[no-untyped-def]
    """The base root file system, built unless cached: ``<cache>/base-<key>/``."""
    key = base_key()
    final = cache / f"base-{key}"
    if (final / "manifest.json").exists():
        return final
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".base-{key}-", dir=cache))
    log = work / "build.log"
    t0 = time.monotonic()
    try:
        rootfs = work / "rootfs"
        (work / "setup.sh").write_text(_setup_script())
        (work / "customize.sh").write_text(_base_customize_script())
        progress(f"building the base root file system {key} with mmdebstrap (log: {log}); "
                 "about 4 min and 200 MB of downloads")
        _run(["mmdebstrap", "--mode=root", "--arch=arm64", "--variant=minbase",
              f"--include={','.join(PACKAGES)}", "--dpkgopt=force-confold",
              f"--setup-hook=sh {work / 'setup.sh'} \"$1\"",
              f"--customize-hook=sh {work / 'customize.sh'} \"$1\"",
              SUITE, str(rootfs),
              f"deb {MIRROR} {SUITE} main", f"deb {MIRROR} {SUITE}-updates main",
              f"deb {SECURITY} {SUITE}-security main"], log, "mmdebstrap")
        downloaded = sum(int((work / f).read_text().strip() or 0) for f in ("debs_bytes", "lists_bytes"))
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        manifest = {"key": key, "suite": SUITE, "packages": list(PACKAGES),
                    "kernel": kernels[0].name.removeprefix("vmlinuz-") if kernels else None,
                    "build_s": round(time.monotonic() - t0, 1), "downloaded_bytes": downloaded,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        os.rename(work, final)
    finally:
        if work.exists():
            if log.exists():
                shutil.copyfile(log, cache / f".failed-base-{key}.log")
            shutil.rmtree(work, ignore_errors=True)
    for old in cache.glob("base-*"):  # one base is enough
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def build_image(cache: pathlib.Path | None = None, *, force: bool = False,
                progress=print) -> tuple[BoardImage, bool]:  # type: ignore[no-untyped-def]
    """Build the image unless a good one for this agent and recipe is cached.
    Returns (image, built). Needs root and the Debian packages in ``HOST_PACKAGES``.
    ``force`` rebuilds the board image (not the base, whose key names what it holds)."""
    cache = cache or default_cache_dir()
    agent = _agent_snapshot()
    key = cache_key(agent)
    final = image_dir(cache, key)
    if not force:
        try:
            return find_image(cache, key=key), False
        except ImageError:
            pass
    missing = missing_host_tools()
    if missing:
        raise ImageError(f"building the {KIND} image needs Debian packages not installed: "
                         f"apt-get install {' '.join(missing)}")
    if os.geteuid() != 0:
        raise ImageError(f"building the {KIND} image needs root (mmdebstrap --mode=root, binfmt_misc)")
    _enable_binfmt()
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    base = _build_base(cache, progress)
    base_manifest = json.loads((base / "manifest.json").read_text())
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
    log = work / "build.log"
    try:
        progress(f"building the {KIND} board image {key} (log: {log})")
        rootfs = work / "rootfs"
        _run(["cp", "-a", str(base / "rootfs"), str(rootfs)], log, "copying the base")
        _install_agent(rootfs, agent, log)
        boot = rootfs / "boot"
        kernels = sorted(boot.glob("vmlinuz-*"))
        initrds = sorted(boot.glob("initrd.img-*"))
        if len(kernels) != 1 or len(initrds) != 1:
            raise ImageError(f"expected one kernel and one initrd in {boot}, found {kernels + initrds}")
        shutil.copyfile(kernels[0], work / "vmlinuz")
        (work / "initrd.img").write_bytes(_board_initrd(rootfs, kernels[0].name.removeprefix("vmlinuz-")))
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "orbit-hil-root", "-d", str(rootfs),
              str(work / "disk.img"), DISK_SIZE], log, "mke2fs")
        shutil.rmtree(rootfs)
        files = {n: {"size": (work / n).stat().st_size, "sha256": _sha256(work / n)}
                 for n in ("vmlinuz", "initrd.img", "disk.img")}
        manifest = {"kind": KIND, "key": key, "base": base_manifest,
                    "kernel": kernels[0].name.removeprefix("vmlinuz-"), "files": files,
                    "build_s": round(time.monotonic() - t0, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(work, final)
    finally:
        if work.exists():
            if log.exists():
                shutil.copyfile(log, cache / f".failed-{key}.log")
            shutil.rmtree(work, ignore_errors=True)
    drop_old_images(cache, final)
    return find_image(cache, full=True, key=key), True


def drop_old_images(cache: pathlib.Path, keep: pathlib.Path) -> list[pathlib.Path]:
    """After a build: keep ``keep``, the two newest other images (other branches' agents)
    and any used (found) in the last KEEP_USED_S, since a shared cache may have another
    worktree's boards booting from it; drop the rest (~700 MB each). Returns the dropped."""
    others = sorted((p for p in cache.glob(f"{KIND}-*") if p != keep), key=lambda p: p.stat().st_mtime)
    dropped = [p for p in others[:-2] if time.time() - p.stat().st_mtime > KEEP_USED_S]
    for old in dropped:
        shutil.rmtree(old, ignore_errors=True)
    return dropped
