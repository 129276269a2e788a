#!/usr/bin/env bash
# Installs the Debian packages the project needs, and only those that are missing,
# from the machine's own configured apt sources. Safe to run again: a no-op when all are present.
set -euo pipefail

packages=(
  postgresql-15 postgresql-server-dev-15   # the database and the headers to build TimescaleDB
  cmake gcc g++ make dpkg-dev              # TimescaleDB build; dpkg-dev provides `apt-get source`
  mosquitto mosquitto-clients              # MQTT broker for phones (tests and demo)
  nats-server                              # JetStream between gateways and processors (distributed mode)
  python3 python3-venv python3-dev         # the virtualenv
  chromium fonts-wqy-microhei              # browser tests of the dispatcher page (Chinese labels need a CJK font)
  ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A pyenv/other python3 with its own venv module is fine: python3-venv/dev are only needed for Debian's.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in python3|python3-venv|python3-dev) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's packages start their own services where an init system runs; the project uses private instances.
