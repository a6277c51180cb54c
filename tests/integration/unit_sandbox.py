"""Run a command under the kernel-level parts of a systemd unit's sandbox, without systemd.

    python unit_sandbox.py SPEC_JSON -- COMMAND [ARG...]

Started as root, it does what systemd does before ``ExecStart=``, in the same order: empties the
capability bounding set (``CapabilityBoundingSet=``), switches to ``uid``/``gid``
(``User=``, ``Group=``), sets no_new_privs (``NoNewPrivileges=``), loads seccomp filters for
``RestrictAddressFamilies=``, ``RestrictNamespaces=``, ``MemoryDenyWriteExecute=`` and
``SystemCallFilter=``, then execs COMMAND. tests/integration/test_deploy.py builds SPEC from the
unit file; the filters mirror systemd's (src/shared/seccomp-util.c):

- address families: ``socket()`` with another family fails with EAFNOSUPPORT;
- namespaces: ``clone``/``unshare``/``setns`` asking for another kind fail with EPERM, and
  ``clone3`` (whose flags a filter cannot see) fails with ENOSYS, so glibc falls back to clone;
- write+execute memory: ``mmap`` with PROT_WRITE|PROT_EXEC, ``mprotect``/``pkey_mprotect``
  adding PROT_EXEC and ``shmat`` with SHM_EXEC fail with EPERM;
- the system-call allow list: anything else ``deny`` says (``kill`` or an errno).

The mount-namespace settings (ProtectSystem=, PrivateTmp=, PrivateDevices=, ProtectHome=, ...)
need systemd itself and are not reproduced. Only the standard library is used: this file runs
as a script, before (and without) the project's own imports. libseccomp does the BPF.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import sys
from collections.abc import Iterable
from typing import Any

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
NAMESPACE_FLAGS = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "mnt": 0x00020000,
    "pid": 0x20000000,
    "user": 0x10000000,
    "uts": 0x04000000,
}


class Cmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def errno_action(number: int) -> int:
    """SCMP_ACT_ERRNO(number)."""
    return 0x00050000 | (number & 0xFFFF)


class Filter:
    """One seccomp filter built with libseccomp."""

    def __init__(self, lib: Any, default: int) -> None:
        self._lib = lib
        self._ctx = lib.seccomp_init(default)
        if not self._ctx:
            raise OSError("seccomp_init failed")

    def rule(self, action: int, name: str, *cmps: Cmp) -> None:
        number = self._lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a system call on this architecture (e.g. a 32-bit-only one)
            return
        array = (Cmp * len(cmps))(*cmps)
        if self._lib.seccomp_rule_add_array(self._ctx, action, number, len(cmps), array) != 0:
            raise OSError(f"seccomp_rule_add {name} failed")

    def load(self) -> None:
        if self._lib.seccomp_load(self._ctx) != 0:
            raise OSError("seccomp_load failed")


def _libseccomp() -> Any:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


def address_families(lib: Any, allowed: Iterable[int]) -> Filter:
    """socket() with a family not in ``allowed`` fails with EAFNOSUPPORT."""
    keep = set(allowed)
    refuse = Filter(lib, SCMP_ACT_ALLOW)
    for family in range(max(keep) + 1):
        if family not in keep:
            refuse.rule(errno_action(errno.EAFNOSUPPORT), "socket", Cmp(0, SCMP_CMP_EQ, family))
    refuse.rule(errno_action(errno.EAFNOSUPPORT), "socket", Cmp(0, SCMP_CMP_GT, max(keep)))
    return refuse


def namespaces(lib: Any, allowed: Iterable[str]) -> Filter:
    """Creating or joining a namespace of a kind not in ``allowed`` fails with EPERM."""
    refuse = Filter(lib, SCMP_ACT_ALLOW)
    for kind, flag in NAMESPACE_FLAGS.items():
        if kind in allowed:
            continue
        for name, arg in (("clone", 0), ("unshare", 0), ("setns", 1)):
            refuse.rule(errno_action(errno.EPERM), name, Cmp(arg, SCMP_CMP_MASKED_EQ, flag, flag))
    refuse.rule(errno_action(errno.ENOSYS), "clone3")
    return refuse


def write_execute(lib: Any) -> Filter:
    """No memory that is both writable and executable, and nothing made executable later."""
    refuse = Filter(lib, SCMP_ACT_ALLOW)
    eperm = errno_action(errno.EPERM)
    wx = PROT_WRITE | PROT_EXEC
    refuse.rule(eperm, "mmap", Cmp(2, SCMP_CMP_MASKED_EQ, wx, wx))
    refuse.rule(eperm, "mprotect", Cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    refuse.rule(eperm, "pkey_mprotect", Cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    refuse.rule(eperm, "shmat", Cmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
    return refuse


def system_calls(lib: Any, allowed: Iterable[str], deny: int) -> Filter:
    """Only ``allowed`` system calls; any other gets ``deny``."""
    only = Filter(lib, deny)
    for name in sorted(set(allowed)):
        only.rule(SCMP_ACT_ALLOW, name)
    return only


def drop_privileges(uid: int, gid: int) -> None:
    """An empty bounding set, then the unprivileged user, then no_new_privs."""
    libc = ctypes.CDLL(None, use_errno=True)
    cap = 0
    while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    command = argv[argv.index("--") + 1 :]
    lib = _libseccomp()
    deny = spec["deny"]
    filters = [
        system_calls(
            lib, spec["syscalls"], SCMP_ACT_KILL_PROCESS if deny == "kill" else errno_action(deny)
        )
    ]
    if spec.get("families"):
        filters.append(address_families(lib, spec["families"]))
    if spec.get("namespaces") is not None:
        filters.append(namespaces(lib, spec["namespaces"]))
    if spec.get("write_execute"):
        filters.append(write_execute(lib))
    drop_privileges(spec["uid"], spec["gid"])
    for built in reversed(filters):  # the allow list last: loading the others needs seccomp()
        built.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
