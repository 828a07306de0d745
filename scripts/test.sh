#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, builds the release
# binaries the acceptance tests drive (terraform runs the provider; tests start the agent),
# then runs every test of the workspace. Extra arguments go to the test runner.
#
# Run as root on Debian 12. With CI=true, acceptance tests fail instead of skipping when
# something they need (root, loop devices, terraform 1.0.3, the binaries) is missing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

tf=$("$repo/scripts/install-deps.sh" | tail -n1)
export TERRAFORM="$tf"
export CHECKPOINT_DISABLE=1

echo "[test] cargo build --release -p terraform-provider-blockstor -p blockstor-agent" >&2
cargo build --release -p terraform-provider-blockstor -p blockstor-agent

if cargo nextest --version >/dev/null 2>&1; then
    echo "[test] cargo nextest run --workspace" >&2
    exec cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "[test] cargo test --workspace (cargo-nextest not installed)" >&2
    exec cargo test --workspace --no-fail-fast "$@"
fi
