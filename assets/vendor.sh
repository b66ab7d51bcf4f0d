#!/bin/sh
# Copy the browser libraries Shahr serves itself from assets/node_modules (installed by
# `npm ci` from the committed package-lock.json) into a vendor folder, one sub-folder per
# npm package, keeping each library's relative paths (Leaflet's images/, Vazirmatn's fonts/)
# so their CSS works as shipped. Plain sh + cp: it runs in the Makefile and in the
# Dockerfile's node stage alike.
#   usage: assets/vendor.sh NODE_MODULES_DIR VENDOR_DIR
set -eu
src=${1:?node_modules folder}
dst=${2:?vendor folder}
tmp="$dst.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT

copy() {  # copy PACKAGE FILE... : files relative to the package, kept at the same place
    pkg=$1; shift
    for f in "$@"; do
        [ -e "$src/$pkg/$f" ] || { echo "vendor.sh: missing $src/$pkg/$f (run npm ci)" >&2; exit 1; }
        mkdir -p "$tmp/$pkg/$(dirname "$f")"
        cp -R "$src/$pkg/$f" "$tmp/$pkg/$f"
    done
}
flat() {  # flat PACKAGE FILE... : files copied to the package folder's top level
    pkg=$1; shift
    mkdir -p "$tmp/$pkg"
    for f in "$@"; do
        [ -e "$src/$pkg/$f" ] || { echo "vendor.sh: missing $src/$pkg/$f (run npm ci)" >&2; exit 1; }
        cp -R "$src/$pkg/$f" "$tmp/$pkg/"
    done
}

flat leaflet dist/leaflet.js dist/leaflet.css dist/images LICENSE
flat leaflet.markercluster dist/leaflet.markercluster.js dist/MarkerCluster.css \
     dist/MarkerCluster.Default.css MIT-LICENCE.txt
flat leaflet.vectorgrid dist/Leaflet.VectorGrid.bundled.min.js package.json
flat leaflet.heat dist/leaflet-heat.js LICENSE
flat jquery dist/jquery.min.js LICENSE.txt
copy vazirmatn Vazirmatn-font-face.css fonts/webfonts OFL.txt

rm -rf "$dst"
mv "$tmp" "$dst"
trap - EXIT
