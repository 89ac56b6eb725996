"""Build the gateway's image from deploy/Containerfile with buildah, without a container daemon.

    python3 deploy/image.py build [--base IMAGE | --local-base] [--tag NAME]

``--base`` is passed as the Containerfile's BASE build argument (its default, the official Python
slim image, when left out). ``--local-base`` builds on a Debian bookworm base made here by
debootstrap from the mirror apt already uses, for machines that reach Debian's packages but no
image registry. That base is cached as a tarball in FRONTDESK_IMAGE_CACHE
(/var/cache/frontdesk-image) and imported once into the local image storage, so a rebuild only
re-runs the Containerfile's steps (buildah's layer cache skips the unchanged ones).

This machine's pip settings (an index, a CA bundle for an intercepting proxy) reach the build as
build secrets: mounted into the one pip step, never stored in a layer, never written into the
Containerfile. A build elsewhere passes none and pip uses its defaults.

Standard library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
IGNOREFILE = ROOT / "deploy" / "Containerfile.dockerignore"
DEFAULT_TAG = "localhost/frontdesk:latest"
LOCAL_BASE = "localhost/debian-base:bookworm"
CACHE = Path(os.environ.get("FRONTDESK_IMAGE_CACHE", "/var/cache/frontdesk-image"))
_SUITE = "bookworm"  # the Debian release of python:3.11-slim, so both bases give the same Python 3.11
_DEBOOTSTRAP_INCLUDE = "python3,python3-venv,ca-certificates"
# pip settings passed on to the build; anything else (constraints, local find-links, file:// indexes)
# names paths that do not exist inside the build.
_PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries")


def log(message: str) -> None:
    """One progress line on stderr."""
    print(f"image: {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, echoing it; raise on failure."""
    log("$ " + " ".join(command))
    return subprocess.run(command, check=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path: two builds (a developer's and CI's) never make the base at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    candidates = sorted((sources / "sources.list.d").glob("*.sources")) + [sources / "sources.list"]
    candidates += sorted((sources / "sources.list.d").glob("*.list"))
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "debian" in line and "security" not in line:
                return next(word for word in words[1:] if "://" in word)
    raise SystemExit("image: no Debian mirror found in apt's sources; set FRONTDESK_DEBIAN_MIRROR")


def _image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def ensure_local_base() -> str:
    """The debootstrapped Debian base in local image storage, made (or imported from the cache) when missing."""
    with _locked(CACHE / "base.lock"):
        if _image_exists(LOCAL_BASE):
            return LOCAL_BASE
        tarball = CACHE / f"debian-{_SUITE}-minbase.tar"
        if not tarball.exists():
            started = time.monotonic()
            mirror = os.environ.get("FRONTDESK_DEBIAN_MIRROR") or debian_mirror()
            with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as rootfs:
                run(["debootstrap", "--variant=minbase", f"--include={_DEBOOTSTRAP_INCLUDE}", _SUITE, rootfs, mirror],
                    stdout=subprocess.DEVNULL)
                # apt's lists and package cache are not part of an image (the slim image has none either).
                for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                    shutil.rmtree(Path(rootfs) / leftover, ignore_errors=True)
                partial = tarball.with_suffix(".tar.partial")
                run(["tar", "-C", rootfs, "--numeric-owner", "-cf", str(partial), "."])
                partial.rename(tarball)
            log(f"debootstrap base made in {time.monotonic() - started:.0f} s")
        run(["podman", "import", str(tarball), LOCAL_BASE], stdout=subprocess.DEVNULL)
        return LOCAL_BASE


def pip_settings() -> tuple[str, str | None]:
    """This machine's pip settings as a pip.conf for the build, and the CA bundle pip trusts (or None)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    values: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.rpartition(".")[2]] = value.strip().strip("'\"")  # global.cert, :env:.cert -> cert
    for name, variable in (("cert", "PIP_CERT"), ("index-url", "PIP_INDEX_URL")):
        if os.environ.get(variable):
            values[name] = os.environ[variable]
    lines = ["[global]"]
    for key in _PIP_KEYS:
        kept = [word for word in values.get(key, "").split() if not word.startswith("file:")]
        if kept:
            lines.append(f"{key} = {' '.join(kept)}")
    cert = values.get("cert")
    if cert and Path(cert).is_file():
        lines.append("cert = /run/secrets/pip-ca")  # where the Containerfile's pip step mounts it
    else:
        cert = None
    return "\n".join(lines) + "\n", cert


def build(tag: str, base: str | None, *, local_base: bool) -> float:
    """Build the image; the seconds it took."""
    started = time.monotonic()
    if local_base:
        base = ensure_local_base()
    conf, cert = pip_settings()
    with tempfile.TemporaryDirectory(prefix="frontdesk-image-") as scratch:
        conf_path = Path(scratch) / "pip.conf"
        conf_path.write_text(conf)
        command = ["buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers",
                   "--file", str(CONTAINERFILE), "--ignorefile", str(IGNOREFILE), "--tag", tag,
                   "--secret", f"id=pip.conf,src={conf_path}"]
        if cert:
            command += ["--secret", f"id=pip-ca,src={cert}"]
        if base:
            command += ["--build-arg", f"BASE={base}"]
        run(command + [str(ROOT)], stdout=sys.stderr)
    elapsed = time.monotonic() - started
    log(f"built {tag} in {elapsed:.0f} s")
    return elapsed


def main(argv: list[str]) -> int:
    """The command line: ``build``."""
    parser = argparse.ArgumentParser(prog="deploy/image.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build the image")
    bases = build_parser.add_mutually_exclusive_group()
    bases.add_argument("--base", help="the BASE build argument (default: the Containerfile's)")
    bases.add_argument("--local-base", action="store_true", help=f"build on {LOCAL_BASE}, made here by debootstrap")
    build_parser.add_argument("--tag", default=os.environ.get("IMAGE", DEFAULT_TAG))
    args = parser.parse_args(argv)
    for tool in ["buildah"] + (["podman", "debootstrap"] if args.local_base else []):
        if shutil.which(tool) is None:
            raise SystemExit(f"image: {tool} not found (apt-get install buildah podman debootstrap)")
    build(args.tag, args.base, local_base=args.local_base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
