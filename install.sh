#!/usr/bin/env sh
# Installs the trust-protocol binary: builds dist/trust-protocol if needed, then copies it to
# ~/.local/bin (or --prefix DIR/bin). Safe to run again: it replaces the binary atomically.
#
# --system (as root) sets up the dedicated-user deployment (README, "A dedicated user"): a system
# user that owns the state, a group whose members (the agents' users) may reach serve's socket,
# the state and socket directories, and the binary in /usr/local/bin. Safe to run again too.
set -eu

usage="usage: ./install.sh [--prefix DIR]   (installs DIR/bin/trust-protocol; default ~/.local)
       ./install.sh --from RELEASE_DIR --pubkey KEY.pub [--prefix DIR]
         (installs a release built by \`make release\`, after checking SHA256SUMS.minisig with
          minisign and the binary against SHA256SUMS; downloads nothing)
       ./install.sh --system [--prefix DIR] [--user NAME] [--agents-group NAME]
                    [--state-dir DIR] [--socket-dir DIR]
         (as root; defaults /usr/local, trust-protocol, trust-protocol-agents,
          /var/lib/trust-protocol, /run/trust-protocol)"

system=0
prefix=""
from=""
pubkey=""
user="trust-protocol"
agents="trust-protocol-agents"
state="/var/lib/trust-protocol"
sockets="/run/trust-protocol"
while [ $# -gt 0 ]; do
  case "$1" in
    --system) system=1; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --from) from="${2:?--from needs a release directory}"; shift 2 ;;
    --pubkey) pubkey="${2:?--pubkey needs a minisign public key file}"; shift 2 ;;
    --user) user="${2:?--user needs a name}"; shift 2 ;;
    --agents-group) agents="${2:?--agents-group needs a name}"; shift 2 ;;
    --state-dir) state="${2:?--state-dir needs a directory}"; shift 2 ;;
    --socket-dir) sockets="${2:?--socket-dir needs a directory}"; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  if [ "$system" = 1 ]; then prefix="/usr/local"; else prefix="${HOME}/.local"; fi
fi
if [ "$system" = 1 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: --system must run as root (it creates a user and group)" >&2
  exit 2
fi

if [ -n "$from" ]; then
  # A release: the signature over SHA256SUMS first, then the binary against it. Nothing is
  # installed unless both check.
  if [ -z "$pubkey" ]; then
    echo "install.sh: --from needs --pubkey KEY.pub (the release key's minisign public key)" >&2
    exit 2
  fi
  command -v minisign >/dev/null || {
    echo "install.sh: checking a release needs minisign (apt-get install minisign)" >&2
    exit 2
  }
  minisign -q -Vm "$from/SHA256SUMS" -p "$pubkey" || {
    echo "install.sh: SHA256SUMS in $from is not signed by $pubkey; nothing installed" >&2
    exit 1
  }
  (cd "$from" && sha256sum --quiet --strict -c SHA256SUMS) || {
    echo "install.sh: $from/trust-protocol does not match SHA256SUMS; nothing installed" >&2
    exit 1
  }
  binary="$from/trust-protocol"
else
  cd "$(dirname "$0")"
  if [ ! -x dist/trust-protocol ] || [ -n "$(find src cmd package.json -newer dist/trust-protocol 2>/dev/null | head -n 1)" ]; then
    make build
  fi
  binary="dist/trust-protocol"
fi

bin="${prefix}/bin"
mkdir -p "$bin"
tmp="${bin}/.trust-protocol.$$"
cp "$binary" "$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "${bin}/trust-protocol"
echo "installed ${bin}/trust-protocol ($("${bin}/trust-protocol" --version))"

if [ "$system" = 1 ]; then
  getent group "$agents" >/dev/null || groupadd --system "$agents"
  getent passwd "$user" >/dev/null ||
    useradd --system --user-group --home-dir "$state" --no-create-home \
      --shell /usr/sbin/nologin "$user"
  # serve hands its socket to the agents' group: it must be a member to do so.
  usermod --append --groups "$agents" "$user"
  install -d -m 0700 -o "$user" -g "$user" "$state"
  install -d -m 0750 -o "$user" -g "$agents" "$sockets"
  cat <<EOF
set up the dedicated user "$user": state in $state, serve's socket in $sockets (group $agents)
next steps (as root):
  sudo -u $user -H ${bin}/trust-protocol --home $state init
  sudo -u $user -H ${bin}/trust-protocol --home $state credential add ...   (agent register, grant, ...)
  ${bin}/trust-protocol serve --user $user --home $state \\
      --socket $sockets/serve.sock --socket-group $agents --password-file FILE
  usermod --append --groups $agents AGENT_USER   (each user an agent runs as)
agents then run \`trust-protocol exec\` with their token; it finds $sockets/serve.sock by itself
(only for the default /run/trust-protocol; elsewhere pass --server unix:PATH).
note: $sockets is emptied at boot when it is under /run: run this again, or use systemd's
RuntimeDirectory=trust-protocol with RuntimeDirectoryMode=0750 and Group=$agents.
EOF
  exit 0
fi
case ":${PATH}:" in
  *":${bin}:"*) ;;
  *) echo "note: ${bin} is not on your PATH; add it, e.g.: export PATH=\"${bin}:\$PATH\"" ;;
esac
