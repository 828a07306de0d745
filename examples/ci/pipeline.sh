#!/usr/bin/env bash
# A CI step for blockstor: plan once, save the plan, apply exactly that plan.
#   terraform plan -detailed-exitcode -out plan.tfplan   exit 0: no changes, stop
#                                                        exit 2: changes, saved in plan.tfplan
#                                                        exit 1: error, fail the job
#   terraform apply plan.tfplan                          applies what was reviewed, nothing else
# Non-interactive: TF_IN_AUTOMATION=1 and -input=false (a missing variable fails instead of
# prompting). Secrets come from the CI's secret store as TF_VAR_token (and TF_VAR_passphrase,
# BLOCKSTOR_SSH_PRIVATE_KEY, ...), never from files in the repository or argv.
#
# Usage: pipeline.sh [plan|apply|all]   (default all; split plan/apply across jobs with an
#        approval in between by passing plan.tfplan as an artifact)
# Environment: TERRAFORM (the binary, default terraform), TF_DIR (default this directory).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tf=${TERRAFORM:-terraform}
cd "${TF_DIR:-$here}"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
stage=${1:-all}

plan() {
    "$tf" init -input=false -no-color
    "$tf" validate -no-color
    set +e
    "$tf" plan -input=false -no-color -detailed-exitcode -out plan.tfplan
    local rc=$?
    set -e
    case $rc in
        0) echo "pipeline: no changes"; rm -f plan.tfplan; return 0 ;;
        2) echo "pipeline: changes saved in plan.tfplan"; return 0 ;;
        *) echo "pipeline: plan failed" >&2; return 1 ;;
    esac
}

apply() {
    if [[ ! -f plan.tfplan ]]; then
        echo "pipeline: nothing to apply"
        return 0
    fi
    "$tf" apply -input=false -no-color plan.tfplan
    rm -f plan.tfplan
}

case $stage in
    plan) plan ;;
    apply) apply ;;
    all) plan && apply ;;
    *) echo "usage: $0 [plan|apply|all]" >&2; exit 64 ;;
esac
