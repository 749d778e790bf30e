#!/usr/bin/env sh
# Installs the trust-protocol binary: builds dist/trust-protocol if needed, then copies it to
# ~/.local/bin (or --prefix DIR/bin). Safe to run again: it replaces the binary atomically.
set -eu

prefix="${HOME}/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    -h|--help) echo "usage: ./install.sh [--prefix DIR]   (installs DIR/bin/trust-protocol; default ~/.local)"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"
if [ ! -x dist/trust-protocol ] || [ -n "$(find src cmd package.json -newer dist/trust-protocol 2>/dev/null | head -n 1)" ]; then
  make build
fi

bin="${prefix}/bin"
mkdir -p "$bin"
tmp="${bin}/.trust-protocol.$$"
cp dist/trust-protocol "$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "${bin}/trust-protocol"
echo "installed ${bin}/trust-protocol ($("${bin}/trust-protocol" --version))"
case ":${PATH}:" in
  *":${bin}:"*) ;;
  *) echo "note: ${bin} is not on your PATH; add it, e.g.: export PATH=\"${bin}:\$PATH\"" ;;
esac
