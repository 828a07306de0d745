#!/usr/bin/env bash
# The node agent as a Debian package, built with Debian's own tools (dpkg-deb, dpkg-shlibdeps).
#
#   scripts/build-deb.sh [OUT_DIR]            (default: dist/)
#
# Writes OUT_DIR/blockstor-agent_<version>_<arch>.deb holding:
#   /usr/bin/blockstor-agent
#   /lib/systemd/system/blockstor-agent.service   agent/packaging's unit, paths set to /usr/bin
#   /etc/blockstor/agent.toml                     agent/packaging's example (a conffile: dpkg
#                                                 keeps local edits; directory mode 0700)
#   /usr/share/doc/blockstor-agent/copyright
# Depends: the shared libraries the binary links (dpkg-shlibdeps). Recommends/Suggests: the
# tools `blockstor-agent check` asks for; none is needed for loop-file pools, so none is a
# hard dependency. The agent runs as root (losetup, cryptsetup, lvm, zfs, drbdadm need it):
# no system user. The unit is not enabled on install: the bearer token must exist first.
# `dpkg --purge` also removes /etc/blockstor/token (the token the postinst note tells to
# create); /var/lib/blockstor is left alone when it holds data (pools, the journal).
#
# Environment: BLOCKSTOR_AGENT_BINARY uses this already built binary instead of building.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/dist}
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

package=blockstor-agent
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[[ -n $version ]] || { echo "build-deb: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)

binary=${BLOCKSTOR_AGENT_BINARY:-}
if [[ -z $binary ]]; then
    (cd "$repo" && cargo build --release --locked -p "$package" >&2)
    binary=${CARGO_TARGET_DIR:-$repo/target}/release/$package
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -D -m 0755 "$binary" "$root/usr/bin/blockstor-agent"
strip --strip-unneeded "$root/usr/bin/blockstor-agent" 2>/dev/null || true
install -d -m 0755 "$root/lib/systemd/system"
# The unit without its manual-install header, and with the packaged binary's path.
{
    echo "# systemd unit of the blockstor-agent package (from agent/packaging/blockstor-agent.service)."
    echo "# Before enabling: edit /etc/blockstor/agent.toml and create /etc/blockstor/token."
    sed -n '/^\[Unit\]/,$p' "$repo/agent/packaging/blockstor-agent.service" |
        sed 's|/usr/local/bin/blockstor-agent|/usr/bin/blockstor-agent|g'
} >"$root/lib/systemd/system/blockstor-agent.service"
chmod 0644 "$root/lib/systemd/system/blockstor-agent.service"
install -d -m 0700 "$root/etc/blockstor"
install -m 0600 "$repo/agent/packaging/agent.toml.example" "$root/etc/blockstor/agent.toml"
install -d -m 0755 "$root/usr/share/doc/$package"
printf 'blockstor-agent, part of blockstor (https://github.com/cozystack/blockstor).\nLicense: Apache-2.0\nOn Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n' \
    >"$root/usr/share/doc/$package/copyright"
chmod 0644 "$root/usr/share/doc/$package/copyright"

# Shared-library dependencies, as Debian computes them (needs a debian/control to run in).
mkdir -p "$stage/shlibs/debian"
touch "$stage/shlibs/debian/control"
shlibs=$(cd "$stage/shlibs" && dpkg-shlibdeps -O -e "$root/usr/bin/blockstor-agent" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[[ -n $shlibs ]] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<EOF
Package: $package
Version: $version
Architecture: $arch
Maintainer: blockstor developers <blockstor@cozystack.io>
Installed-Size: $size
Depends: $shlibs
Recommends: cryptsetup-bin, lvm2, drbd-utils
Suggests: zfsutils-linux
Section: admin
Priority: optional
Homepage: https://github.com/cozystack/blockstor
Description: blockstor node agent: STORAGE, LUKS and DRBD block devices
 Builds the layered block devices that the blockstor Terraform provider
 plans: volumes in loop-file, LVM, LVM-thin or ZFS pools, LUKS2 on top, and
 DRBD replication between nodes. Serves the provider over HTTP(S) as a
 systemd service, or per request over SSH ("blockstor-agent stdio").
 "blockstor-agent check" lists the tools and kernel modules this node has.
EOF
echo /etc/blockstor/agent.toml >"$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    if [ ! -e /etc/blockstor/token ]; then
        echo "blockstor-agent: edit /etc/blockstor/agent.toml, create the token with"
        echo "  (umask 077; head -c 32 /dev/urandom | base64 > /etc/blockstor/token)"
        echo "then: systemctl enable --now blockstor-agent   (run 'blockstor-agent check' first)"
    fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop blockstor-agent.service >/dev/null 2>&1 || true
    systemctl disable blockstor-agent.service >/dev/null 2>&1 || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -f /etc/blockstor/token
    rmdir /etc/blockstor 2>/dev/null || true
    # The store and the pools hold the user's volumes: removed only when empty.
    rmdir /var/lib/blockstor 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
