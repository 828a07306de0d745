#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, builds the release
# binaries the acceptance tests drive (terraform runs the provider; tests start the agent),
# then runs every test of the workspace. Extra arguments go to the test runner.
#
# Two steps: first every test except the tier-4 VM tests (acceptance-tests/tests/vm_*.rs),
# then the VM tests on their own with their output shown, so their phase timings reach the
# log. BLOCKSTOR_VM_TESTS=skip runs only the first step, =only only the second.
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
vm_tests="${BLOCKSTOR_VM_TESTS:-yes}"

echo "[test] cargo build --release -p terraform-provider-blockstor -p blockstor-agent" >&2
cargo build --release -p terraform-provider-blockstor -p blockstor-agent

rc=0
if cargo nextest --version >/dev/null 2>&1; then
    if [[ $vm_tests != only ]]; then
        echo "[test] cargo nextest run --workspace (all but the VM tests)" >&2
        cargo nextest run --workspace --no-fail-fast -E 'not binary(/^vm_/)' "$@" || rc=$?
    fi
    if [[ $vm_tests != skip ]]; then
        echo "[test] cargo nextest run -p acceptance-tests -E 'binary(/^vm_/)' (tier 4: QEMU VMs)" >&2
        cargo nextest run -p acceptance-tests --no-fail-fast --no-capture \
            -E 'binary(/^vm_/)' "$@" || rc=$?
    fi
else
    echo "[test] cargo test --workspace (cargo-nextest not installed)" >&2
    cargo test --workspace --no-fail-fast "$@" || rc=$?
fi
exit "$rc"
