#!/bin/sh
# Installs this XtremWeb-Py bundle (written by `xwserver installer`) on this machine:
# a Python virtual environment with the project's wheel, the deployment's config with its
# CA (and public signing key) next to it, and, for a worker, its service (systemd on Linux
# as root, launchd on macOS). Everything it adds is listed in PREFIX/.xtremweb-bundle,
# which uninstall.sh removes.
#
#   sh install.sh [--prefix DIR] [--no-service] [--python PYTHON3]
#
# Default PREFIX: /opt/xtremweb-NAME as root, else ~/.local/share/xtremweb/NAME.
# Dependencies come from the package index (pip's usual one, or PIP_INDEX_URL).
set -eu

KIND="@KIND@"          # worker or client
NAME="@NAME@"          # KIND-HOST-PORT of the deployment
EXTRAS="@EXTRAS@"      # pip extras of the wheel
CONFIG="@CONFIG@"      # the config file's name
FILES="@FILES@"        # what goes to PREFIX/etc besides the config

HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
SERVICE=yes
if [ "$(id -u)" = 0 ]; then PREFIX="/opt/xtremweb-$NAME"; else PREFIX="${HOME}/.local/share/xtremweb/$NAME"; fi

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --no-service) SERVICE=no; shift ;;
        --python) PYTHON=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "install.sh: XtremWeb-Py needs Python 3.11 or newer; give one with --python" >&2; exit 1; }
MANIFEST="$PREFIX/.xtremweb-bundle"
if [ -e "$MANIFEST" ]; then
    echo "install.sh: already installed in $PREFIX; run $PREFIX/uninstall.sh first" >&2; exit 1
fi

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
MANIFEST="$PREFIX/.xtremweb-bundle"
: > "$MANIFEST"
added() { echo "$1" >> "$MANIFEST"; }

echo "Installing the XtremWeb-Py $KIND for $NAME in $PREFIX"
"$PYTHON" -m venv "$PREFIX/venv"
added "dir $PREFIX/venv"
WHEEL=$(ls "$HERE"/wheels/xtremweb_py-*.whl | head -n 1)
"$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --find-links "$HERE/wheels" "$WHEEL$EXTRAS"

mkdir -p "$PREFIX/etc"
chmod 0700 "$PREFIX/etc"
added "dir $PREFIX/etc"
cp "$HERE/$CONFIG" "$PREFIX/etc/$CONFIG"
chmod 0600 "$PREFIX/etc/$CONFIG"        # it holds a password
for f in $FILES; do
    cp "$HERE/$f" "$PREFIX/etc/$f"
    chmod 0644 "$PREFIX/etc/$f"
done
cp "$HERE/uninstall.sh" "$PREFIX/uninstall.sh"
chmod 0755 "$PREFIX/uninstall.sh"
added "file $PREFIX/uninstall.sh"

if [ "$KIND" = client ]; then
    cat > "$PREFIX/env.sh" <<ENV
# . $PREFIX/env.sh : the XtremWeb-Py client commands, with this deployment's config
export XWCONFIG="$PREFIX/etc/$CONFIG"
PATH="$PREFIX/venv/bin:\$PATH"
export PATH
ENV
    added "file $PREFIX/env.sh"
    echo "Done. Use it with:  . $PREFIX/env.sh && xwping"
    exit 0
fi

# the worker's service
if [ "$SERVICE" = no ]; then
    echo "Done (no service). Run the worker with:"
    echo "  $PREFIX/venv/bin/xwworker start --xwconfig $PREFIX/etc/$CONFIG"
    exit 0
fi
case "$(uname -s)" in
Linux)
    if [ "$(id -u)" != 0 ] || ! command -v systemctl >/dev/null 2>&1; then
        echo "Done. No system service (it needs root and systemd); run the worker with:"
        echo "  $PREFIX/venv/bin/xwworker start --xwconfig $PREFIX/etc/$CONFIG"
        exit 0
    fi
    if ! id xwworker >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/xwworker --no-create-home \
            --shell /usr/sbin/nologin xwworker
        added "user xwworker"
    fi
    chgrp xwworker "$PREFIX/etc" "$PREFIX/etc/$CONFIG"
    chmod 0750 "$PREFIX/etc"
    chmod 0640 "$PREFIX/etc/$CONFIG"
    UNIT=/etc/systemd/system/xwworker.service
    if [ -e "$UNIT" ]; then
        echo "install.sh: $UNIT exists (another worker?); not replaced" >&2; exit 1
    fi
    sed -e "s|^ExecStart=.*|ExecStart=$PREFIX/venv/bin/xwworker console --xwconfig $PREFIX/etc/$CONFIG|" \
        "$HERE/xwworker.service" > "$UNIT"
    added "systemd $UNIT"
    systemctl daemon-reload
    systemctl enable --now xwworker
    echo "Done. The worker runs as the service xwworker: systemctl status xwworker"
    ;;
Darwin)
    AGENT="$HOME/Library/LaunchAgents/org.xtremweb.xwworker.plist"
    mkdir -p "$HOME/Library/LaunchAgents"
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@CONFIG@|$CONFIG|g" "$HERE/org.xtremweb.xwworker.plist" > "$AGENT"
    added "launchd $AGENT"
    launchctl load -w "$AGENT"
    echo "Done. The worker runs as the launchd agent org.xtremweb.xwworker"
    ;;
*)
    echo "Done. No service for $(uname -s); run the worker with:"
    echo "  $PREFIX/venv/bin/xwworker start --xwconfig $PREFIX/etc/$CONFIG"
    ;;
esac
