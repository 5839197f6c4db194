#!/bin/sh
# Removes what install.sh added (listed in PREFIX/.xtremweb-bundle): the worker's service,
# the user it made for it, the virtual environment, the config, and the folder itself if
# nothing else is left in it. The worker's cache and state (its path.tmpdir) are kept.
#
#   sh uninstall.sh [--prefix DIR]     (default: the folder this script is in)
set -eu
PREFIX=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
MANIFEST="$PREFIX/.xtremweb-bundle"
if [ ! -f "$MANIFEST" ]; then
    echo "uninstall.sh: no XtremWeb-Py bundle installed in $PREFIX" >&2; exit 1
fi
# services first, so nothing runs from what is removed next; then the rest, last added first
grep -E '^(systemd|launchd) ' "$MANIFEST" | while read -r kind path; do
    case "$kind" in
        systemd) systemctl disable --now xwworker || true; rm -f "$path"; systemctl daemon-reload || true ;;
        launchd) launchctl unload -w "$path" || true; rm -f "$path" ;;
    esac
done
sed '1!G;h;$!d' "$MANIFEST" | while read -r kind path; do
    case "$kind" in
        dir) rm -rf "$path" ;;
        file) rm -f "$path" ;;
        user) userdel "$path" 2>/dev/null || true ;;
    esac
done
rm -f "$MANIFEST"
rmdir "$PREFIX" 2>/dev/null || echo "uninstall.sh: $PREFIX kept (it holds files the bundle did not add)"
echo "XtremWeb-Py removed from $PREFIX"
