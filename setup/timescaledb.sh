#!/usr/bin/env bash
# Builds the TimescaleDB extension (Apache-2 edition) for PostgreSQL 15 from Debian's source
# package (suite trixie) and installs it into PostgreSQL's extension directory.
# The download and the build tree are cached under var/build; a second run is a no-op once the
# extension is installed. The machine's apt configuration is never changed: the deb-src entry
# lives in a private sources file with its own state directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
sharedir=$("$pg_config" --sharedir)
pkglibdir=$("$pg_config" --pkglibdir)

installed_version() {
  local control="$sharedir/extension/timescaledb.control"
  [ -f "$control" ] || return 1
  local v
  v=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$control")
  [ -n "$v" ] && [ -f "$pkglibdir/timescaledb-$v.so" ] && echo "$v"
}

if v=$(installed_version); then
  exit 0
fi

work="$root/var/build/timescaledb"
apt_dir="$work/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$work/src"

# The mirror the machine already uses for Debian's main archive (deb822 or one-line format).
mirror=""
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  mirror=$(awk '
    /^[[:space:]]*$/ { if (uri != "" && suites !~ /-security/ && types ~ /deb/) { print uri; exit } uri=""; suites=""; types=""; next }
    /^URIs:/   { uri=$2 }
    /^Suites:/ { suites=$0 }
    /^Types:/  { types=$0 }
    END { if (uri != "" && suites !~ /-security/) print uri }
  ' /etc/apt/sources.list.d/*.sources | head -n 1)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $3 !~ /-security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' /etc/apt/sources.list | head -n 1)
fi
if [ -z "$mirror" ]; then
  echo "timescaledb: cannot find the Debian mirror in the machine's apt sources" >&2
  exit 1
fi

echo "deb-src $mirror trixie main" > "$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Sandbox::User=root"
)

# TimescaleDB's build asks git for a revision; keep it from finding this repository.
export GIT_CEILING_DIRECTORIES="$work/src"
cd "$work/src"
if ! compgen -G "timescaledb_*.dsc" >/dev/null; then
  echo "timescaledb: fetching the Debian source package (trixie)"
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" source --download-only timescaledb
fi
dsc=$(ls timescaledb_*.dsc | head -n 1)
srcdir=$(ls -d timescaledb-*/ 2>/dev/null | head -n 1 || true)
if [ -z "$srcdir" ]; then
  dpkg-source --no-check -x "$dsc" >/dev/null
  srcdir=$(ls -d timescaledb-*/ | head -n 1)
fi
cd "$srcdir"
if [ ! -f build/Makefile ]; then
  ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DTAP_CHECKS=OFF \
    -DPG_CONFIG="$pg_config" >/dev/null
fi
echo "timescaledb: building (a minute on two cores)"
make -s -C build -j"$(nproc)" >/dev/null
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo make -s -C build install >/dev/null
v=$(installed_version) || { echo "timescaledb: install did not produce the extension" >&2; exit 1; }
echo "timescaledb $v installed"
