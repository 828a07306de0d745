#!/usr/bin/env bash
# Release artifacts of the provider, as the Terraform registry and provider mirrors expect them.
#
#   scripts/release.sh [OUT_DIR]            (default: dist/)
#
# From a clean checkout it builds the release binary for every platform the installed Rust
# toolchain can target (linux_amd64; linux_arm64 only when `rustup target list --installed`
# has aarch64-unknown-linux-gnu and a cross linker is configured: no toolchain is downloaded)
# and writes into OUT_DIR:
#
#   terraform-provider-blockstor_<version>_linux_amd64.zip   the binary, named
#                                                           terraform-provider-blockstor_v<version>
#   terraform-provider-blockstor_<version>_manifest.json     registry manifest: protocol versions
#   terraform-provider-blockstor_<version>_SHA256SUMS        sha256sum lines of the zips + manifest
#   mirror/registry.terraform.io/cozystack/blockstor/index.json         network mirror protocol:
#   mirror/registry.terraform.io/cozystack/blockstor/<version>.json     versions, then archives
#   mirror/registry.terraform.io/cozystack/blockstor/<zip>              with h1: and zh: hashes
#   hashes.txt                                              "<platform> h1:... zh:..." per zip
#
# OUT_DIR/mirror is a complete network mirror: serve it over HTTPS with any static file server
# (JSON as application/json) and point `provider_installation { network_mirror { url } }` at it.
#
# The two hashes Terraform records in .terraform.lock.hcl:
#   zh:<hex>     sha256 of the zip file itself ("zip hash", what SHA256SUMS says).
#   h1:<base64>  Terraform's directory hash (golang.org/x/mod/sumdb/dirhash Hash1) of the
#                unpacked zip: for every file, sorted by path in byte order, the line
#                "<sha256 hex of the file>  <path relative to the root, '/'-separated>\n";
#                h1 = base64(sha256(concatenation of those lines)). It is exactly the output of
#                `sha256sum` over the sorted file list, hashed once more.
#
# Environment:
#   BLOCKSTOR_PROVIDER_BINARY  use this already built linux_amd64 binary instead of building
#                              (the release test passes the one `scripts/test.sh` built).
#   SOURCE_DATE_EPOCH          timestamp stored in the zips (default: the HEAD commit's time),
#                              so the same binary gives the same zip and the same zh: hash.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/dist}
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

name=terraform-provider-blockstor
namespace=cozystack
type=blockstor
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[[ -n $version ]] || { echo "release: no [workspace.package] version in Cargo.toml" >&2; exit 1; }

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 315532800)
fi

# rust target triple -> Terraform platform
declare -A platforms=([x86_64-unknown-linux-gnu]=linux_amd64 [aarch64-unknown-linux-gnu]=linux_arm64)

# Path of the release binary for $1 (a target triple), built if needed.
build() {
    local triple=$1
    if [[ $triple == x86_64-unknown-linux-gnu && -n ${BLOCKSTOR_PROVIDER_BINARY:-} ]]; then
        echo "$BLOCKSTOR_PROVIDER_BINARY"
        return
    fi
    local target_dir=${CARGO_TARGET_DIR:-$repo/target}
    if [[ $triple == "$(rustc -vV | sed -n 's/^host: //p')" ]]; then
        # The host target without --target: reuses target/release, which the tests build.
        (cd "$repo" && cargo build --release --locked -p "$name" >&2)
        echo "$target_dir/release/$name"
    else
        (cd "$repo" && cargo build --release --locked -p "$name" --target "$triple" >&2)
        echo "$target_dir/$triple/release/$name"
    fi
}

# Whether the installed toolchain can build for $1 without downloading anything.
can_build() {
    local triple=$1
    [[ $triple == x86_64-unknown-linux-gnu ]] && return 0
    command -v rustup >/dev/null || return 1
    rustup target list --installed 2>/dev/null | grep -qx "$triple" || return 1
    # Linking needs a cross linker; cargo finds it through this variable or .cargo/config.
    local var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER"
    [[ -n ${!var:-} ]] || command -v aarch64-linux-gnu-gcc >/dev/null
}

# h1: hash of the directory $1 (see the header).
dirhash_h1() {
    (cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) |
        openssl dgst -sha256 -binary | openssl base64 -A | sed 's/^/h1:/'
}

# Only what this script writes: OUT_DIR may hold other files.
rm -rf "$out/mirror" "$out/hashes.txt" "$out/${name}_${version}"_*
mirror="$out/mirror/registry.terraform.io/$namespace/$type"
mkdir -p "$mirror"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

archives=()
: >"$out/hashes.txt"
for triple in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    platform=${platforms[$triple]}
    if ! can_build "$triple"; then
        echo "release: skipping $platform: no installed Rust target/cross linker for $triple" >&2
        continue
    fi
    binary=$(build "$triple")
    zip_name="${name}_${version}_${platform}.zip"
    mkdir -p "$stage/$platform"
    install -m 0755 "$binary" "$stage/$platform/${name}_v${version}"
    touch -d "@$SOURCE_DATE_EPOCH" "$stage/$platform/${name}_v${version}"
    # -X: no extra attributes (uid/gid, extended timestamps), so the zip is reproducible.
    (cd "$stage/$platform" && zip -q -X "$out/$zip_name" "${name}_v${version}")
    h1=$(dirhash_h1 "$stage/$platform")
    zh="zh:$(sha256sum "$out/$zip_name" | cut -d' ' -f1)"
    echo "$platform $h1 $zh" >>"$out/hashes.txt"
    cp "$out/$zip_name" "$mirror/"
    archives+=("\"$platform\":{\"url\":\"$zip_name\",\"hashes\":[\"$h1\",\"$zh\"]}")
    echo "release: $zip_name $h1 $zh" >&2
done
[[ ${#archives[@]} -gt 0 ]] || { echo "release: nothing built" >&2; exit 1; }

# The registry reads the protocol versions from this manifest (the provider serves 5 and 6).
printf '{"version":1,"metadata":{"protocol_versions":["5.0","6.0"]}}\n' \
    >"$out/${name}_${version}_manifest.json"
(cd "$out" && sha256sum "${name}_${version}"_*.zip "${name}_${version}_manifest.json" \
    >"${name}_${version}_SHA256SUMS")

# Provider network mirror protocol: index.json lists versions, <version>.json the archives.
printf '{"versions":{"%s":{}}}\n' "$version" >"$mirror/index.json"
(
    IFS=,
    printf '{"archives":{%s}}\n' "${archives[*]}"
) >"$mirror/$version.json"

echo "release: wrote $out" >&2
