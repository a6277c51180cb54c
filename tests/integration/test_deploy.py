"""deploy/: both systemd units, the daemon inside the unit's sandbox, the watchdog, install.sh.

- The units are parsed and checked for every directive the deployment needs, and run through
  ``systemd-analyze verify`` and ``systemd-analyze security`` where those work.
- The daemon (with the real headless Chromium) and the web app run as an unprivileged user
  under the kernel-level half of each unit's sandbox (tests/integration/unit_sandbox.py:
  capability bounding set, no_new_privs, the system-call, address-family, namespace and
  write+execute filters). The mount-namespace settings need systemd itself and are not tested.
- WATCHDOG=1 comes from the event loop (the supervised ``heartbeat`` task), and a running
  ``vigil run`` given WATCHDOG_USEC sends it to a fake NOTIFY_SOCKET.
- install.sh runs against a fake root, with fake system commands first on PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import DaemonSettings, Settings
from monitor.daemon import Daemon
from monitor.sdnotify import Notifier
from monitor.store.migrate import upgrade
from tests.conftest import ROOT, Clock
from tests.integration.test_daemon_process import (
    free_port,
    healthz,
    wait_for,
    write_config,
    write_posts,
)

DEPLOY = ROOT / "deploy"
UNITS = ("vigil.service", "vigil-web.service")
INSTALL = DEPLOY / "install.sh"
HELPER = Path(__file__).with_name("unit_sandbox.py")
CHROMIUM = Path("/usr/bin/chromium")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
TIMEOUT = 120.0

Section = dict[str, list[str]]


def parse_unit(path: Path) -> dict[str, Section]:
    """Section → key → every value in order (keys may repeat); comment lines skipped."""
    unit: dict[str, Section] = {}
    section: Section | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert section is not None and equals, f"{path.name}: not KEY=value: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def service(name: str) -> Section:
    return parse_unit(DEPLOY / name)["Service"]


def seconds(value: str) -> float:
    """A systemd time span such as ``120``, ``90s`` or ``2min``."""
    number, unit = re.fullmatch(r"(\d+)\s*(s|min)?", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "min" else 1)


def size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * int(1024 ** " KMG".index(unit or " "))


# --- The units, read as text ---------------------------------------------------------------

SHARED_HARDENING = {
    "NoNewPrivileges": ["yes"],
    "CapabilityBoundingSet": [""],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectHostname": ["yes"],
    "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "LockPersonality": ["yes"],
    "SystemCallArchitectures": ["native"],
    "SystemCallErrorNumber": ["EPERM"],
    "User": ["vigil"],
    "Group": ["vigil"],
    "StateDirectory": ["vigil"],
    "UMask": ["0027"],
    "EnvironmentFile": ["-/etc/vigil/vigil.env"],
    "Restart": ["on-failure"],
    "LimitCORE": ["0"],
}


@pytest.mark.parametrize("name", UNITS)
def test_both_units_run_as_vigil_and_are_hardened(name: str) -> None:
    unit = service(name)
    assert {key: unit.get(key) for key in SHARED_HARDENING} == SHARED_HARDENING
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert not any(entry.startswith("~") for entry in unit["SystemCallFilter"])
    assert 0 < size(unit["MemoryMax"][0]) <= 4 * 1024**3
    assert unit["ExecStart"][0].startswith("/opt/vigil/.venv/bin/vigil ")
    assert unit["ExecStart"][0].endswith(" --config /etc/vigil/config.toml")
    # Secrets by LoadCredential=, shown commented out because each site names its own.
    assert "\n#LoadCredential=" in (DEPLOY / name).read_text()


def test_the_daemon_unit_is_notify_with_a_watchdog_and_room_to_drain() -> None:
    unit = service("vigil.service")
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    # The daemon pings every min(WatchdogSec / 2, 30 s): at least two pings per timeout.
    assert seconds(unit["WatchdogSec"][0]) >= 60
    grace = DaemonSettings().shutdown_grace
    assert seconds(unit["TimeoutStopSec"][0]) > 2 * grace + 10
    assert unit["ExecStart"][0].split()[1] == "run"


def test_the_daemon_unit_gives_chromium_what_it_needs_and_no_more() -> None:
    unit = service("vigil.service")
    assert "MemoryDenyWriteExecute" not in unit  # V8 and Playwright's Node.js need W+X memory
    assert unit["RestrictNamespaces"] == ["user pid net"]  # Chromium's sandbox, nothing else
    allowed = " ".join(unit["SystemCallFilter"]).split()
    assert {"@pkey", "chroot", "seccomp", "landlock_create_ruleset"} <= set(allowed)
    assert unit["Environment"] == [
        "PYTHONUNBUFFERED=1",
        "XDG_CACHE_HOME=/var/cache/vigil",
        "XDG_CONFIG_HOME=/tmp/.config",
    ]
    assert unit["CacheDirectory"] == ["vigil"] and unit["OOMPolicy"] == ["continue"]


def test_the_web_unit_takes_the_settings_the_daemon_cannot() -> None:
    unit = service("vigil-web.service")
    assert unit["Type"] == ["simple"] and unit["ExecStart"][0].split()[1] == "web"
    assert unit["MemoryDenyWriteExecute"] == ["yes"] and unit["RestrictNamespaces"] == ["yes"]
    assert unit["SystemCallFilter"] == ["@system-service"]


# --- systemd-analyze -------------------------------------------------------------------------


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def installable_copy(name: str, directory: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's `vigil` (verify checks it exists)."""
    vigil = Path(sys.executable).with_name("vigil")
    if not vigil.exists():
        pytest.skip(f"no `vigil` script beside {sys.executable} to stand in for ExecStart=")
    copy = directory / name
    copy.write_text((DEPLOY / name).read_text().replace("/opt/vigil/.venv/bin/vigil", str(vigil)))
    return copy


@pytest.fixture(scope="module")
def analyze_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless systemd-analyze is installed and verifies a trivial unit cleanly here."""
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    probe = tmp_path_factory.mktemp("probe") / "probe.service"
    probe.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    result = _analyze("verify", "--man=no", str(probe))
    if result.returncode != 0 or result.stderr.strip():
        pytest.skip(f"systemd-analyze verify does not work here: {result.stderr.strip()[:200]}")


@pytest.mark.usefixtures("analyze_works")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_finds_nothing(name: str, tmp_path: Path) -> None:
    unit = installable_copy(name, tmp_path)
    result = _analyze("verify", "--man=no", str(unit))
    # verify exits 0 even for unknown keys and bad values: its warnings name the file.
    complaints = [line for line in result.stderr.splitlines() if name in line]
    assert result.returncode == 0 and complaints == [], result.stderr


@pytest.mark.usefixtures("analyze_works")
# systemd 252 rates them 2.5 and 1.8; without their system-call filters, 3.7 and 3.2.
@pytest.mark.parametrize(("name", "ceiling"), [("vigil.service", 3.0), ("vigil-web.service", 2.5)])
def test_systemd_analyze_security_exposure(name: str, ceiling: float, tmp_path: Path) -> None:
    result = _analyze(
        "security", "--offline=yes", "--no-pager", str(installable_copy(name, tmp_path))
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline is not supported: {result.stderr[:200]}")
    assert float(found.group(1)) <= ceiling, result.stdout


# --- The unit's sandbox, without systemd ---------------------------------------------------


def syscall_groups() -> dict[str, list[str]]:
    """``systemd-analyze syscall-filter``: each @group → its entries (calls and @groups)."""
    groups: dict[str, list[str]] = {}
    entries: list[str] = []
    for line in _analyze("syscall-filter", "--no-pager").stdout.splitlines():
        if line.startswith("@"):
            entries = groups.setdefault(line.split()[0], [])
        elif line.strip() and not line.strip().startswith("#"):
            entries.append(line.strip())
    return groups


def expand(entries: list[str], groups: dict[str, list[str]]) -> set[str]:
    """System-call names, with every @group (and the groups inside it) spelled out."""
    calls: set[str] = set()
    pending, seen = list(entries), set()
    while pending:
        entry = pending.pop()
        if not entry.startswith("@"):
            calls.add(entry)
        elif entry not in seen:
            seen.add(entry)
            pending.extend(groups[entry])
    return calls


def sandbox_spec(unit: Section, uid: int, gid: int) -> dict[str, Any]:
    """unit_sandbox.py's SPEC for this [Service] section.

    Refused system calls kill the process, as with no SystemCallErrorNumber=. That is stricter
    than the units (EPERM), so a call Chromium or Python needs but the unit refuses shows up
    as a crash rather than as a quietly degraded browser.
    """
    namespaces = unit.get("RestrictNamespaces", ["no"])[0]
    return {
        "uid": uid,
        "gid": gid,
        "syscalls": sorted(expand(" ".join(unit["SystemCallFilter"]).split(), syscall_groups())),
        "deny": "kill",
        "families": [int(getattr(socket, f)) for f in unit["RestrictAddressFamilies"][0].split()],
        "namespaces": {"no": None, "yes": []}.get(namespaces, namespaces.split()),
        "write_execute": unit.get("MemoryDenyWriteExecute") == ["yes"],
    }


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """An unprivileged user, a Python it can run with this checkout importable, and a place."""

    uid: int
    gid: int
    python: str
    base: Path

    def workdir(self, name: str) -> Path:
        path = self.base / name
        path.mkdir()
        os.chown(path, self.uid, self.gid)
        return path

    def own(self, path: Path) -> None:
        for entry in [path, *path.rglob("*")]:
            os.chown(entry, self.uid, self.gid, follow_symlinks=False)

    def command(self, spec: dict[str, Any], *args: str) -> list[str]:
        return [sys.executable, str(HELPER), json.dumps(spec), "--", self.python, *args]


def _importable_by(python: str, uid: int, gid: int) -> bool:
    probe = [python, "-c", "import monitor, playwright"]
    try:
        result = subprocess.run(
            probe, user=uid, group=gid, extra_groups=[], capture_output=True, timeout=60
        )
    except OSError:
        return False
    return result.returncode == 0


def _shim_python(base: Path) -> str | None:
    """A venv of the system Python that sees this interpreter's packages.

    For when this interpreter lives where the unprivileged user cannot go (e.g. pyenv under
    /root); only the same minor version can load the same compiled extensions.
    """
    system = Path("/usr/bin/python3")
    version = f"import sys; print(sys.version_info[:2] == {tuple(sys.version_info[:2])})"
    if (
        not system.exists()
        or subprocess.run(
            [system, "-c", version], capture_output=True, text=True, check=False
        ).stdout.strip()
        != "True"
    ):
        return None
    venv = base / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(paths))
    (venv / "lib" / minor / "site-packages" / "vigil-checkout.pth").write_text(lines)
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop to an unprivileged user as systemd does")
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (it lists the system-call groups)")
    if subprocess.run(
        [sys.executable, "-c", "import ctypes.util as u; assert u.find_library('seccomp')"],
        check=False,
    ).returncode:
        pytest.skip("libseccomp is not installed")
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="vigil-sandbox-"))
    base.chmod(0o755)  # pytest's tmp_path is root-only
    try:
        python: str | None = sys.executable
        if not _importable_by(sys.executable, nobody.pw_uid, nobody.pw_gid):
            python = _shim_python(base)
        if python is None or not _importable_by(python, nobody.pw_uid, nobody.pw_gid):
            pytest.skip("no Python the unprivileged user can run with this checkout importable")
        yield Sandbox(uid=nobody.pw_uid, gid=nobody.pw_gid, python=python, base=base)
    finally:
        shutil.rmtree(base)


def unit_environment(unit: Section, paths: dict[str, Path]) -> dict[str, str]:
    """The unit's Environment= values, with its paths moved to where the test keeps them."""
    env: dict[str, str] = {}
    for line in unit.get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            for real, stand_in in paths.items():
                if value == real or value.startswith(real + "/"):
                    value = str(stand_in) + value[len(real) :]
            env[key] = value
    return env


@dataclass(frozen=True, kw_only=True)
class Place:
    """Where a sandboxed run keeps its config, state, private /tmp, cache and (read-only) home."""

    work: Path
    config: Path
    env: dict[str, str]
    home: Path


def place(box: Sandbox, name: str, unit: Section, **config: Any) -> Place:
    work = box.workdir(name)
    posts = work / "posts.jsonl"
    write_posts(posts, 60)
    path = write_config(work, posts, **config)
    path.write_text(path.read_text().replace('renderer = "pillow"', 'renderer = "chromium"'))
    private_tmp, cache, home = work / "tmp", work / "cache", work / "home"
    for directory in (private_tmp, cache, home):
        directory.mkdir()
    box.own(work)
    os.chown(home, 0, 0)  # HOME stays read-only: the unit must not need it
    env = unit_environment(unit, {"/tmp": private_tmp, "/var/cache/vigil": cache})
    env |= {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(private_tmp)}
    return Place(work=work, config=path, env=env, home=home)


def run_sandboxed(
    box: Sandbox, spec: dict[str, Any], where: Place, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        box.command(spec, *args),
        env=where.env,
        cwd=where.work,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def events(stderr: str) -> list[str]:
    return [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium is not installed")
def test_the_daemon_and_its_chromium_work_inside_the_unit_sandbox(sandbox: Sandbox) -> None:
    unit = service("vigil.service")
    spec = sandbox_spec(unit, sandbox.uid, sandbox.gid)
    where = place(sandbox, "daemon", unit)
    config = str(where.config)
    migrated = run_sandboxed(
        sandbox, spec, where, "-m", "monitor", "db", "upgrade", "--config", config
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]

    ran = run_sandboxed(sandbox, spec, where, "-m", "monitor", "run", "--once", "--config", config)

    assert ran.returncode == 0, ran.stderr[-2000:]  # -31 would be SIGSYS: a refused system call
    seen = events(ran.stderr)
    assert "run_once_finished" in seen
    assert not {"card_renderer_fallback", "item_failed", "action_failed"} & set(seen)
    renderers = [
        json.loads(path.read_text())["renderer"]
        for path in (where.work / "state").rglob("metadata.json")
    ]
    assert renderers and all(name.startswith("chromium-") for name in renderers)
    # Chromium's per-user files went where the unit's XDG_* point, and nothing needed HOME.
    assert (where.work / "tmp" / ".config" / "chromium").is_dir()
    assert list(where.home.iterdir()) == []


@pytest.mark.slow
def test_the_web_app_works_inside_its_unit_sandbox(sandbox: Sandbox) -> None:
    unit = service("vigil-web.service")
    spec = sandbox_spec(unit, sandbox.uid, sandbox.gid)
    port = free_port()
    where = place(sandbox, "web", unit, web_port=port)
    config = str(where.config)
    migrated = run_sandboxed(
        sandbox, spec, where, "-m", "monitor", "db", "upgrade", "--config", config
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    proc = subprocess.Popen(
        sandbox.command(spec, "-m", "monitor", "web", "--config", config),
        env=where.env,
        cwd=where.work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: healthz(port) == 200, proc, "the web app answering /healthz")
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert login.status_code == 200 and "<form" in login.text
    assert proc.returncode in (0, -signal.SIGTERM), stderr[-2000:]


# --- The watchdog ----------------------------------------------------------------------------


class WhereFrom(Notifier):
    """Records which thread and task send each WATCHDOG=1; stops the daemon after three."""

    def __init__(self, stop: Callable[[], None]) -> None:
        super().__init__({"WATCHDOG_USEC": "20000"})  # a ping every 10 ms
        self.senders: list[tuple[int, str]] = []
        self._stop = stop

    def watchdog(self) -> None:
        task = asyncio.current_task()  # RuntimeError outside a running event loop
        self.senders.append((threading.get_ident(), task.get_name() if task else "-"))
        if len(self.senders) == 3:
            self._stop()
        super().watchdog()


async def test_watchdog_pings_come_from_the_event_loop(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    """A blocked loop sends no ping, so systemd's WatchdogSec= restarts a stuck daemon."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("")
    settings = make_settings(
        sources=[{"name": "replay", "platform": "replay", "kind": "own",
                  "options": {"path": str(posts)}}],
    )  # fmt: skip
    await upgrade(settings.database_url())
    daemon: Daemon | None = None
    notifier = WhereFrom(lambda: daemon.request_stop() if daemon else None)
    daemon = Daemon(settings, clock=clock, notifier=notifier)
    assert await asyncio.wait_for(daemon.run(), timeout=60) == 0
    assert notifier.watchdog_interval() == 0.01
    assert notifier.senders == [(threading.main_thread().ident, "heartbeat")] * 3


@pytest.mark.slow
def test_a_running_daemon_sends_watchdog_pings_to_notify_socket(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, 10)
    config = write_config(tmp_path, posts, shutdown_grace=5)
    migrated = subprocess.run(
        [sys.executable, "-m", "monitor", "db", "upgrade", "--config", str(config)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(TIMEOUT)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
            "WATCHDOG_USEC": "200000",  # as systemd passes WatchdogSec=0.2s: a ping every 0.1 s
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            received = _until_three_pings(notify)
            proc.send_signal(signal.SIGTERM)
            received += _until(notify, "STOPPING=1")
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert received[0] == "READY=1"
    assert received.count("WATCHDOG=1") >= 3 and received[-1] == "STOPPING=1"


def _until(notify: socket.socket, message: str) -> list[str]:
    received: list[str] = []
    while message not in received:
        received.append(notify.recv(4096).decode())
    return received


def _until_three_pings(notify: socket.socket) -> list[str]:
    received: list[str] = []
    while received.count("WATCHDOG=1") < 3:
        received += _until(notify, "WATCHDOG=1")
    return received


# --- install.sh --------------------------------------------------------------------------------

# Fake system commands: each logs its arguments and keeps what it changed under $FAKE, so a
# second run sees the first run's work. Everything else (install, cmp, find, ...) is real.
FAKE_COMMANDS = {
    "id": '[[ ${1-} == -u ]] && echo "${FAKE_UID:-0}" || exec /usr/bin/id "$@"',
    "getent": 'grep -qsx "$2" "$FAKE/$1"',
    "groupadd": 'echo "${@: -1}" >> "$FAKE/group"',
    "useradd": 'echo "${@: -1}" >> "$FAKE/passwd"',
    "dpkg-query": 'grep -qsx "${@: -1}" "$FAKE/packages" && printf installed',
    "apt-get": (
        '[[ $1 != install ]] || for p in "${@:2}"; do'
        ' [[ $p == -* ]] || echo "$p" >> "$FAKE/packages"; done'
    ),
    "chown": 'echo "$2 $1" >> "$FAKE/owners"',
    "stat": (
        'if [[ $2 == "0%a %U:%G" ]]; then'
        ' owner=$(grep -s "^$4 " "$FAKE/owners" | tail -1 | cut -d" " -f2);'
        ' echo "$(/usr/bin/stat -c 0%a "$4") ${owner:-$(/usr/bin/stat -c %U:%G "$4")}";'
        ' else exec /usr/bin/stat "$@"; fi'
    ),
    "systemctl": (
        "unit=${@: -1}; case $1 in is-system-running) echo running ;;"
        ' is-enabled|is-active) [[ -e "$FAKE/$1.$unit" ]] ;;'
        ' enable) touch "$FAKE/is-enabled.$unit" "$FAKE/is-active.$unit" ;; esac'
    ),
    "systemd-run": "true",
    "runuser": "true",
    "pip": "true",
    "vigil": "true",
}


def fake_commands(directory: Path, state: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in FAKE_COMMANDS.items():
        path = directory / name
        path.write_text(
            f'#!/bin/bash\necho "{name} $*" >> "{state}/calls"\nFAKE="{state}"\n{body}\n'
        )
        path.chmod(0o755)


@dataclass(frozen=True, kw_only=True)
class Installer:
    """install.sh in a copy of the source, a fake root, and fake system commands on PATH."""

    src: Path
    root: Path
    state: Path
    env: dict[str, str]

    def __call__(self, *args: str, uid: int = 0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.src / "deploy/install.sh"), "--prefix-root", str(self.root), *args],
            env={**self.env, "FAKE_UID": str(uid)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    @property
    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def installer(tmp_path: Path) -> Installer:
    src, root, state = tmp_path / "src", tmp_path / "root", tmp_path / "fake"
    for relative in ("pyproject.toml", "config.example.toml", *(f"deploy/{u}" for u in UNITS)):
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, src / relative)
    shutil.copy(INSTALL, src / "deploy" / "install.sh")
    root.mkdir()
    state.mkdir()
    fake_commands(tmp_path / "bin", state)
    venv = root / "opt" / "vigil" / ".venv" / "bin"
    fake_commands(venv, state)  # a virtualenv already made (/usr/bin/python3 is not faked)
    (venv / "python").symlink_to(venv / "vigil")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return Installer(src=src, root=root, state=state, env=env)


def commands(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def test_install_sh_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], check=False).returncode == 0
    assert os.stat(INSTALL).st_mode & stat.S_IXUSR


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_sh_passes_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(INSTALL)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_sh_refuses_to_run_without_root_unless_dry_run(installer: Installer) -> None:
    refused = installer(uid=1000)
    assert refused.returncode == 1 and "must run as root" in refused.stderr
    assert refused.stdout == "" and installer.calls == ["id -u"]
    assert installer("--dry-run", uid=1000).returncode == 0


def test_install_sh_dry_run_prints_every_step_and_a_second_run_finds_its_files(
    installer: Installer,
) -> None:
    first = installer("--dry-run")
    assert first.returncode == 0, first.stderr
    r, s = installer.root, installer.src
    venv = f"{r}/opt/vigil/.venv/bin"
    db_upgrade = (
        "systemd-run --quiet --pipe --wait --collect --service-type=exec -p User=vigil "
        "-p Group=vigil -p StateDirectory=vigil -p UMask=0027 "
        f"-p EnvironmentFile=-{r}/etc/vigil/vigil.env {venv}/vigil db upgrade "
        f"--config {r}/etc/vigil/config.toml"
    )
    host = [  # outside the fake root: printed on every dry run
        "apt-get update",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv sqlite3 "
        "chromium fonts-dejavu-core fonts-noto-color-emoji",
        "groupadd --system vigil",
        "useradd --system --gid vigil --home-dir /var/lib/vigil --no-create-home "
        "--shell /usr/sbin/nologin vigil",
        f"{venv}/pip install --upgrade {s}",
        f"{venv}/vigil models train --if-stale",
    ]
    assert commands(first.stdout) == [
        *host,
        f"install -d -m 0750 {r}/etc/vigil",
        f"chown root:vigil {r}/etc/vigil",
        f"install -m 0640 {s}/config.example.toml {r}/etc/vigil/config.toml",
        f"chown root:vigil {r}/etc/vigil/config.toml",
        f"install -d -m 0700 {r}/etc/vigil/credentials",
        f"chown root:root {r}/etc/vigil/credentials",
        f"install -d -m 0750 {r}/var/lib/vigil",
        f"chown vigil:vigil {r}/var/lib/vigil",
        db_upgrade,
        f"install -D -m 0644 {s}/deploy/vigil.service {r}/etc/systemd/system/vigil.service",
        "systemctl daemon-reload",
    ]
    assert "not started: " in first.stdout and "is still the example" in first.stdout
    assert (r / "etc/vigil/config.toml").read_text() == (s / "config.example.toml").read_text()
    assert stat.S_IMODE((r / "etc/vigil/credentials").stat().st_mode) == 0o700
    # A dry run ran nothing that changes the host: only the fakes that look.
    assert {call.split()[0] for call in installer.calls} <= {
        "id",
        "getent",
        "dpkg-query",
        "stat",
        "systemctl",
    }

    second = installer("--dry-run")
    assert commands(second.stdout) == [*host, db_upgrade]
    for path in ("etc/vigil", "etc/vigil/config.toml", "etc/vigil/credentials", "var/lib/vigil"):
        assert f"already there: {r}/{path} (" in second.stdout
    assert f"already up to date: {r}/etc/systemd/system/vigil.service" in second.stdout


def test_install_sh_with_detoxify_pins_the_cpu_build_of_torch(installer: Installer) -> None:
    result = installer("--dry-run", "--with-detoxify")
    venv = f"{installer.root}/opt/vigil/.venv/bin"
    pip = [c for c in commands(result.stdout) if c.startswith(f"{venv}/pip ")]
    assert pip == [
        f"{venv}/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
        rf"{venv}/pip install --upgrade {installer.src}\[detoxify\]",
    ]


def test_install_sh_twice_for_real_changes_nothing_the_second_time(installer: Installer) -> None:
    config = installer.root / "etc" / "vigil" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# edited by the admin\n")  # so that the service is started
    first = installer()
    assert first.returncode == 0, first.stderr
    done = commands(first.stdout)
    assert "systemctl enable --now vigil" in done and "useradd" in " ".join(done)
    assert f"chmod 0640 {config}" in done  # the admin's file is kept, its mode fixed
    assert config.read_text() == "# edited by the admin\n"

    second = installer()
    assert second.returncode == 0, second.stderr
    assert [c.split()[0] for c in commands(second.stdout)] == ["systemd-run"]  # db upgrade
    assert "already enabled and running: vigil.service" in second.stdout
    assert "already installed: vigil from" in second.stdout
    assert second.stdout.count("already ") == 11

    (installer.src / "deploy" / "vigil.service").write_text(
        (installer.src / "deploy" / "vigil.service").read_text() + "\n# changed\n"
    )
    upgraded = installer()
    assert {"systemctl daemon-reload", "systemctl restart vigil"} <= set(commands(upgraded.stdout))
    assert (
        f"{installer.root}/opt/vigil/.venv/bin/pip install --upgrade {installer.src}"
        in commands(upgraded.stdout)
    )
