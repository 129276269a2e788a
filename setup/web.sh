#!/usr/bin/env bash
# Installs the map page's browser libraries (web/package.json, locked by web/package-lock.json) with the
# machine's own npm configuration, and copies only the files the page loads into var/web/vendor/, which the
# server serves at /vendor/. `npm ci` runs in var/web/npm/<hash of the lock file>; the copy is redone when the
# lock file or this script changed, and a run with nothing changed only compares a hash. To change a version:
# edit web/package.json, then in web/
#   npm install --package-lock-only --omit-lockfile-registry-resolved
# (the lock file keeps no download addresses: every machine installs from the registry it is set up with).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/web"
out="$root/var/web"
vendor="$out/vendor"
lock_key=$(sha256sum <"$web/package-lock.json" | cut -c1-16)
key=$(cat "$web/package-lock.json" "$0" | sha256sum | cut -c1-16)
[ -f "$vendor/.installed" ] && [ "$(cat "$vendor/.installed")" = "$key" ] && exit 0

command -v npm >/dev/null || { echo "web: npm not found (Node.js 20 or later is needed)" >&2; exit 1; }

cache="$out/npm/$lock_key"
if [ ! -f "$cache/.done" ]; then
  rm -rf "$cache"
  mkdir -p "$cache"
  cp "$web/package.json" "$web/package-lock.json" "$cache/"
  echo "web: installing the page's npm packages"
  # No install scripts: the page uses these packages' prebuilt dist files only.
  (cd "$cache" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$out/npm-cache")
  touch "$cache/.done"
fi
find "$out/npm" -mindepth 1 -maxdepth 1 ! -name "$lock_key" -exec rm -rf {} +  # installs for older lock files

# source in node_modules -> name under /vendor/ (maplibre-gl.mjs loads its worker from beside itself)
files=(
  maplibre-gl/dist/maplibre-gl.mjs:maplibre-gl.mjs
  maplibre-gl/dist/maplibre-gl-worker.mjs:maplibre-gl-worker.mjs
  maplibre-gl/dist/maplibre-gl.css:maplibre-gl.css
  maplibre-gl/LICENSE.txt:LICENSE.maplibre-gl.txt
  pmtiles/dist/esm/index.js:pmtiles.mjs
  fflate/esm/browser.js:fflate.mjs
  fflate/LICENSE:LICENSE.fflate.txt
  @protomaps/basemaps/dist/esm/index.js:protomaps-basemaps.mjs
)
tmp=$(mktemp -d "$out/vendor.XXXXXX")
for pair in "${files[@]}"; do
  cp "$cache/node_modules/${pair%%:*}" "$tmp/${pair##*:}"
done
echo "$key" >"$tmp/.installed"
chmod 755 "$tmp"
rm -rf "$vendor"
mv "$tmp" "$vendor"
echo "web: vendored files in var/web/vendor"
