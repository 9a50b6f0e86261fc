# Sourced by tests/run and bench/*.sh: installs the Debian packages of the
# real peers (SIPp, Kamailio) when their commands are missing.
# Usage: ensure_packages "command package" ...

ensure_packages() {
  local missing=() entry cmd pkg
  for entry in "$@"; do
    read -r cmd pkg <<<"$entry"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  fi
}
