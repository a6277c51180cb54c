#!/usr/bin/env bash
# Install or upgrade Vigil on Debian or Ubuntu from the source directory this script lives in.
# Idempotent: each step first looks at what is there, and a second run says "already ..." and
# changes nothing. What each step does by hand: deploy/README.md, section 1. `--help` for usage.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [--dry-run] [--no-start] [--with-detoxify] [--prefix-root DIR]

Installs Vigil from the source directory this script is in (its parent directory):
Debian packages, the vigil user, /opt/vigil/.venv, /etc/vigil, `vigil db upgrade`, and
vigil.service, which it enables and starts. Run it again after updating the source to upgrade.

  --dry-run          print each command that would change something, run none of them
  --no-start         install the unit but do not enable or (re)start it
  --with-detoxify    also install the optional detoxify extra, with the CPU build of
                     torch==2.13.0 (never the CUDA build)
  --prefix-root DIR  treat DIR as the root file system (for tests): every path is under DIR.
                     With --dry-run, the steps that only write files under DIR still run
                     (so a second run finds them done); everything else is printed.
  -h, --help         this text
EOF
}

SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=/usr/bin/python3 # Debian's own, kept up to date by apt (never a pyenv or a /usr/local one)
TORCH_VERSION=2.13.0
TORCH_INDEX=https://download.pytorch.org/whl/cpu
PACKAGES=(python3 python3-venv sqlite3 chromium fonts-dejavu-core fonts-noto-color-emoji)

ROOT=""
DRY_RUN=0
START=1
DETOXIFY=0
CHANGED=0 # set when the installed code or a unit file changed: a running service restarts

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit "${2:-1}"
}

say() {
    printf '%s\n' "$*"
}

# Print a command the way it would be typed (quoting only where needed).
show() {
    local arg words=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            words+=("$arg")
        else
            words+=("$(printf '%q' "$arg")")
        fi
    done
    printf '+ %s\n' "${words[*]}"
}

# A command that changes the system: shown, and run unless --dry-run.
run() {
    show "$@"
    if ((!DRY_RUN)); then
        "$@"
    fi
}

# A command that only writes under the root: also run under --dry-run when the root is a
# --prefix-root, so that a second run finds its work done.
run_local() {
    show "$@"
    if ((!DRY_RUN)) || [[ -n $ROOT ]]; then
        "$@"
    fi
}

parse_args() {
    while (($#)); do
        case $1 in
        --dry-run) DRY_RUN=1 ;;
        --no-start) START=0 ;;
        --with-detoxify) DETOXIFY=1 ;;
        --prefix-root)
            (($# >= 2)) || die "--prefix-root needs a directory" 2
            [[ -d $2 ]] || die "--prefix-root $2: no such directory" 2
            ROOT=$(cd -- "$2" && pwd)
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option $1 (see --help)" 2 ;;
        esac
        shift
    done
}

check_preconditions() {
    [[ -f $SRC/pyproject.toml && -f $SRC/deploy/vigil.service ]] ||
        die "$SRC does not look like a Vigil source directory"
    if ((!DRY_RUN)) && [[ $(id -u) != 0 ]]; then
        die "must run as root (or with --dry-run to see what it would do)"
    fi
    if ((DRY_RUN)); then
        say "Dry run: commands that would change something are printed, not run."
    fi
}

# --- Steps -----------------------------------------------------------------------------

install_packages() {
    local wanted=("${PACKAGES[@]}") missing=() pkg
    if grep -qs '^ID=ubuntu' "$ROOT/etc/os-release"; then
        # Ubuntu's chromium is a snap, which NoNewPrivileges=yes cannot start (README, 1).
        wanted=("${wanted[@]/chromium/}")
        say 'note: Ubuntu has no Chromium package: set [evidence] renderer = "pillow"'
    fi
    for pkg in "${wanted[@]}"; do
        [[ -n $pkg ]] || continue
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        say "already installed: ${wanted[*]}"
        return
    fi
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

check_python() {
    if [[ -x $PYTHON ]] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        die "Vigil needs Python 3.11 or later; $PYTHON is older (Debian 12 or Ubuntu 24.04 have it)"
    fi
}

ensure_user() {
    if getent group vigil >/dev/null; then
        say "already there: group vigil"
    else
        run groupadd --system vigil
    fi
    if getent passwd vigil >/dev/null; then
        say "already there: user vigil"
    else
        run useradd --system --gid vigil --home-dir /var/lib/vigil --no-create-home \
            --shell /usr/sbin/nologin vigil
    fi
}

# A fingerprint of the source tree, so an unchanged tree is not reinstalled.
source_digest() {
    (
        cd -- "$SRC"
        find . \( -name .git -o -name .venv -o -name __pycache__ -o -name '*.egg-info' \
            -o -name .mypy_cache -o -name .ruff_cache -o -name .pytest_cache -o -path ./build \
            -o -path ./dist -o -path ./classifiers/models -o -path ./state \
            -o -path ./vigil-demo \) -prune -o -type f -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
    )
}

install_vigil() {
    local venv=$ROOT/opt/vigil/.venv extras="" wanted
    local stamp=$venv/.vigil-installed
    if ((DETOXIFY)); then
        extras="[detoxify]"
    fi
    wanted="source=$(source_digest) extras=$extras"
    if [[ -x $venv/bin/python ]]; then
        say "already there: $venv"
    else
        run "$PYTHON" -m venv "$venv"
        run "$venv/bin/pip" install --upgrade pip
    fi
    if [[ -f $stamp && $(<"$stamp") == "$wanted" ]]; then
        say "already installed: vigil$extras from $SRC (unchanged), its classifier trained"
        return
    fi
    if ((DETOXIFY)); then # the CPU build first, pinned; otherwise pip picks CUDA (GBs)
        run "$venv/bin/pip" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
    fi
    # The default upgrade strategy: dependencies are upgraded only when they must be.
    run "$venv/bin/pip" install --upgrade "$SRC$extras"
    run "$venv/bin/vigil" models train --if-stale
    if ((!DRY_RUN)); then
        printf '%s\n' "$wanted" >"$stamp"
    fi
    CHANGED=1
}

# Mode and owner of a path that is already there, as "0750 root:vigil".
describe() {
    stat -c '0%a %U:%G' -- "$1"
}

# Whether PATH has MODE and OWNER. A --prefix-root dry run never ran chown: mode only.
has_mode() {
    local found
    found=$(describe "$1")
    if [[ $found == "$2 $3" ]]; then
        return 0
    fi
    [[ -n $ROOT ]] && ((DRY_RUN)) && [[ ${found%% *} == "$2" ]]
}

# A directory with this mode and owner.
ensure_dir() {
    local path=$1 mode=$2 owner=$3
    if [[ -d $path ]] && has_mode "$path" "$mode" "$owner"; then
        say "already there: $path ($mode $owner)"
        return
    fi
    run_local install -d -m "$mode" "$path"
    run chown "$owner" "$path"
}

install_config() {
    local etc=$ROOT/etc/vigil
    ensure_dir "$etc" 0750 root:vigil
    if [[ -e $etc/config.toml ]] && has_mode "$etc/config.toml" 0640 root:vigil; then
        say "already there: $etc/config.toml (0640 root:vigil; never overwritten)"
    elif [[ -e $etc/config.toml ]]; then # the service must be able to read it, nobody else
        run chmod 0640 "$etc/config.toml"
        run chown root:vigil "$etc/config.toml"
    else
        run_local install -m 0640 "$SRC/config.example.toml" "$etc/config.toml"
        run chown root:vigil "$etc/config.toml"
    fi
    ensure_dir "$etc/credentials" 0700 root:root
    # systemd creates it at the first start; `vigil db upgrade` below needs it before that.
    ensure_dir "$ROOT/var/lib/vigil" 0750 vigil:vigil
}

# systemd is PID 1 here (not a container or a chroot).
systemd_running() {
    [[ $(systemctl is-system-running 2>/dev/null || true) != offline ]]
}

# Run a vigil command as the service would: the vigil user, its environment file and its
# LoadCredential= lines (deploy/README.md, "Running vigil commands as the service does").
as_vigil() {
    local vigil=$ROOT/opt/vigil/.venv/bin/vigil config=$ROOT/etc/vigil/config.toml
    if systemd_running; then
        local props=() line
        while IFS= read -r line; do
            props+=(-p "$line")
        done < <(grep -hs '^LoadCredential=' "$ROOT"/etc/systemd/system/vigil.service.d/*.conf || true)
        run systemd-run --quiet --pipe --wait --collect --service-type=exec \
            -p User=vigil -p Group=vigil -p StateDirectory=vigil -p UMask=0027 \
            -p "EnvironmentFile=-$ROOT/etc/vigil/vigil.env" "${props[@]}" \
            "$vigil" "$@" --config "$config"
    else # no systemd running (a container): secrets can only come from this environment
        run runuser -u vigil -- "$vigil" "$@" --config "$config"
    fi
}

upgrade_database() {
    as_vigil db upgrade
}

# Install deploy/NAME if it differs from the installed copy.
install_unit() {
    local name=$1 target=$ROOT/etc/systemd/system/$1
    if [[ -f $target ]] && cmp -s "$SRC/deploy/$name" "$target"; then
        say "already up to date: $target"
        return
    fi
    run_local install -D -m 0644 "$SRC/deploy/$name" "$target"
    UNITS_CHANGED=1
}

install_units() {
    UNITS_CHANGED=0
    install_unit vigil.service
    # vigil-web.service only where it is already installed (it is optional: README, 4).
    if [[ -f $ROOT/etc/systemd/system/vigil-web.service ]]; then
        install_unit vigil-web.service
    fi
    if ((UNITS_CHANGED)); then
        CHANGED=1
        if ((DRY_RUN)) || systemd_running; then
            run systemctl daemon-reload
        fi
    fi
}

# Enable and start, or restart after a change; never start on the unedited example config.
start_service() {
    if ((!START)); then
        say "not started (--no-start)"
        return
    fi
    local config=$ROOT/etc/vigil/config.toml
    if [[ ! -e $config ]] || cmp -s "$SRC/config.example.toml" "$config"; then
        say "not started: $config is still the example (next steps below)"
        return
    fi
    if ((!DRY_RUN)) && ! systemd_running; then
        say "not started: systemd is not running here"
        return
    fi
    if ! systemctl is-enabled --quiet vigil 2>/dev/null ||
        ! systemctl is-active --quiet vigil 2>/dev/null; then
        run systemctl enable --now vigil
    elif ((CHANGED)); then
        run systemctl restart vigil
    else
        say "already enabled and running: vigil.service"
    fi
    if ((CHANGED)) && systemctl is-active --quiet vigil-web 2>/dev/null; then
        run systemctl restart vigil-web
    fi
}

next_steps() {
    cat <<EOF

Next steps (deploy/README.md):
  - edit $ROOT/etc/vigil/config.toml: school, staff, [email], sources (section 2);
  - secrets go in $ROOT/etc/vigil/credentials/, named in \`systemctl edit vigil\` (section 2);
  - vigil-admin check, then vigil-admin db upgrade again if you changed [database];
  - systemctl enable --now vigil (if it was not started above), then add users (section 4).
EOF
}

main() {
    parse_args "$@"
    check_preconditions
    install_packages
    check_python
    ensure_user
    install_vigil
    install_config
    upgrade_database
    install_units
    start_service
    next_steps
}

main "$@"
