#!/usr/bin/env bash
# blockstor in one command, as root on Debian 12:
#   installs dependencies, builds the provider and the agent, starts an agent on 127.0.0.1
#   with a loop-file pool in a temporary directory, applies examples/quickstart with the real
#   terraform 1.0.3 (a plain ["STORAGE"] volume and a ["LUKS","STORAGE"] volume, 64 MiB each),
#   shows what was made, destroys it and stops the agent. Nothing is left behind.
#
# Exit status:
#   0  everything applied and was destroyed; or the kernel has no device-mapper, so the LUKS
#      volume stopped at `cryptsetup open` with the agent's message saying so, its header was
#      written and verified, the plain volume fully worked, and everything was destroyed
#      (a banner says which of the two happened);
#   1  anything else failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Installing dependencies (idempotent)"
tf=$("$repo/scripts/install-deps.sh" | tail -n1)
"$tf" version | sed -n 1p  # sed reads it all: head could SIGPIPE terraform under pipefail

say "Building release binaries"
cargo build --release -p terraform-provider-blockstor -p blockstor-agent
target=${CARGO_TARGET_DIR:-$repo/target}
[[ $target = /* ]] || target="$repo/$target"
bin="$target/release"

work=$(mktemp -d /tmp/blockstor-quickstart.XXXXXX)
agent_pid=""
applied=0
cleanup() {
    local rc=$?
    set +e
    if ((applied)) && [[ -n $agent_pid ]] && kill -0 "$agent_pid" 2>/dev/null; then
        say "Cleaning up after an error: terraform destroy"
        (cd "$work/tf" && "$tf" destroy -auto-approve -no-color >/dev/null 2>&1)
    fi
    if [[ -n $agent_pid ]]; then
        kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    fi
    # Detach any loop device still backed by our pool (only after a failure).
    for f in "$work"/pool/*; do
        [[ -f $f ]] || continue
        for dev in $(losetup -l -n -O NAME -j "$f" 2>/dev/null); do losetup -d "$dev"; done
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "blockstor-agent check  (kernel features and tools on this machine)"
"$bin/blockstor-agent" check

say "Starting blockstor-agent on 127.0.0.1"
mkdir -p "$work/pool" "$work/state" "$work/tf"
umask 077
head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$work/token"
umask 022
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/agent.toml" <<TOML
node_name = "n1"
state_dir = "$work/state"

[http]
listen     = "127.0.0.1:$port"
token_file = "$work/token"

[[pool]]
name      = "files"
backend   = "loopfile"
directory = "$work/pool"
TOML
"$bin/blockstor-agent" serve --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
agent_pid=$!
# Ready when GET /v1/node answers 200 with the token (read from the file, never argv).
ready=0
for _ in $(seq 1 100); do
    if ! kill -0 "$agent_pid" 2>/dev/null; then break; fi
    if TOKEN_FILE="$work/token" python3 - "$port" <<'PY' 2>/dev/null; then ready=1; break; fi
import os, sys, urllib.request
token = open(os.environ["TOKEN_FILE"]).read().strip()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/node",
                             headers={"Authorization": f"Bearer {token}"})
sys.exit(0 if urllib.request.urlopen(req, timeout=2).status == 200 else 1)
PY
    sleep 0.2
done
if ((!ready)); then
    echo "blockstor-agent did not become ready; its log:" >&2
    cat "$work/agent.log" >&2
    exit 1
fi
echo "agent pid $agent_pid listening on 127.0.0.1:$port, pool $work/pool"

# Terraform runs the provider straight from target/release: no registry, no init needed.
cat >"$work/cli.tfrc" <<HCL
provider_installation {
  dev_overrides {
    "cozystack/blockstor" = "$bin"
  }
  direct {}
}
HCL
export TF_CLI_CONFIG_FILE="$work/cli.tfrc"
cp "$repo"/examples/quickstart/*.tf "$work/tf/"
export TF_VAR_endpoint="http://127.0.0.1:$port"
TF_VAR_token=$(cat "$work/token")
TF_VAR_passphrase=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
export TF_VAR_token TF_VAR_passphrase
cd "$work/tf"

say "terraform apply -auto-approve  (examples/quickstart)"
applied=1
set +e
"$tf" apply -auto-approve -no-color 2>&1 | tee "$work/apply.log"
apply_rc=${PIPESTATUS[0]}
set -e
dm_missing=0
if ((apply_rc != 0)); then
    if grep -qi 'device-mapper' "$work/apply.log"; then
        dm_missing=1
    else
        echo "terraform apply failed (see above)" >&2
        exit 1
    fi
fi

say "What was made"
"$tf" state list
"$tf" output -no-color || true
echo
echo "Loop devices backed by the pool:"
losetup -l -O NAME,SIZELIMIT,BACK-FILE | awk -v d="$work/pool" 'NR==1 || index($0, d)'

luks_file=$(find "$work/pool" -maxdepth 1 -type f -name 'quickstart-secret*' | head -n1)
if [[ -n $luks_file ]]; then
    echo
    if cryptsetup isLuks "$luks_file"; then
        echo "cryptsetup isLuks $(basename "$luks_file"): yes. luksDump summary:"
        # Header facts only: version, UUID, cipher, key slot types. No key material is printed.
        cryptsetup luksDump "$luks_file" |
            grep -E '^(Version|UUID):|^[[:space:]]+(cipher|Cipher|PBKDF|[0-9]+: luks2)' |
            sed 's/^/    /' | sort -u
    else
        echo "cryptsetup isLuks $(basename "$luks_file"): NO LUKS header found" >&2
        exit 1
    fi
fi

say "terraform destroy -auto-approve"
"$tf" destroy -auto-approve -no-color
applied=0

if ((dm_missing)); then
    cat <<'BANNER'

======================================================================
 Quickstart finished: STOPPED AT dm-crypt OPEN.
 This kernel lacks device-mapper, so `cryptsetup open` cannot map the
 LUKS volume (the agent's message above names what is missing). The
 LUKS2 header was written and verified; the ["STORAGE"] volume worked
 end to end; everything was destroyed. On a kernel with dm-crypt the
 same command opens /dev/mapper/quickstart-secret-0-luks.
 Missing: kernel feature device-mapper (dm-crypt). Fix: `modprobe
 dm_crypt` (Debian package linux-image-amd64; in a container, load it
 on the host), then run ./scripts/quickstart.sh again.
======================================================================
BANNER
else
    cat <<'BANNER'

======================================================================
 Quickstart finished: both volumes applied, shown and destroyed.
======================================================================
BANNER
fi
