"""`make up`'s check of the libvirt host before Pulumi starts: the stack's
`hakube:libvirt.uri` must answer (`virsh -c URI uri`), or `make up` stops
and says how to get one, or what runs without one.

    python -m ops.hostcheck STACK      (exit 0: it answers; 2: it does not)
"""
from __future__ import annotations

import shutil
import subprocess
import sys

from config.stackfile import load_or_say

WITHOUT = ("Without a libvirt host you can still read what a change would do (make review), check a stack "
           "file (make check-config STACK=...), or run the whole program on containers of this machine "
           "(make lab, as root: README, \"Testing\").")


def problem(uri: str, timeout: float = 20) -> str | None:
    """Why the libvirt host at `uri` cannot be used, in words a person can act on; None when it answers."""
    if shutil.which("virsh") is None:
        return (f"virsh is not on PATH, so nothing here can reach libvirt at {uri}. On Debian or Ubuntu: "
                "apt install libvirt-clients (and, for VMs on this machine, libvirt-daemon-system qemu-system-x86).")
    try:
        res = subprocess.run(["virsh", "-c", uri, "uri"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"libvirt at {uri} did not answer in {timeout:.0f} s (virsh -c {uri} uri)."
    if res.returncode != 0:
        said = " ".join((res.stderr or res.stdout).split())
        local = "" if "+ssh" in uri else (
            " If it is this machine: systemctl start libvirtd (apt install libvirt-daemon-system qemu-system-x86), "
            "and run as root or a member of the libvirt group.")
        return (f"libvirt at {uri} does not answer (virsh said: {said}).{local} To use another host, set "
                "hakube:libvirt.uri (e.g. qemu+ssh://admin@kvm-host/system) in the stack file.")
    return None


def main(argv: list[str]) -> int:
    stack = argv[0] if argv else "dev"
    spec = load_or_say(stack)
    if spec is None:
        return 2
    why = problem(spec.libvirt.uri)
    if why:
        print(f"make up STACK={stack}: the stack's VMs go to libvirt at {spec.libvirt.uri}, and it cannot be "
              f"used.\n{why}\n{WITHOUT}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
