#!/usr/bin/env bash
# Adopt a volume that was created outside Terraform:
#   1. create "legacy-data" (["STORAGE"], 64 MiB, in pool $POOL) straight through the agent's
#      HTTP API: PUT /v1/resources/legacy-data with a DesiredResource document;
#   2. terraform init, then
#        terraform import blockstor_resource_definition.legacy legacy-data
#   3. terraform plan -detailed-exitcode: exits 0, "No changes", nothing is replaced.
# Over SSH (no HTTP port), step 1 is the same document through the agent's stdio mode:
#   printf '{"op":"apply","resource":%s}\n' "$(cat desired.json)" |
#     blockstor-agent stdio --config /etc/blockstor/agent.toml
#
# Environment (defaults in brackets):
#   BLOCKSTOR_ENDPOINT    the agent [http://127.0.0.1:3370]
#   BLOCKSTOR_TOKEN_FILE  file holding the agent's token [/etc/blockstor/token]
#   POOL                  a pool from the agent's config [files]
#   TERRAFORM             the terraform binary [terraform]
#   TF_DIR                the Terraform working directory [this script's directory]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
endpoint=${BLOCKSTOR_ENDPOINT:-http://127.0.0.1:3370}
token_file=${BLOCKSTOR_TOKEN_FILE:-/etc/blockstor/token}
pool=${POOL:-files}
tf=${TERRAFORM:-terraform}
cd "${TF_DIR:-$here}"
export TF_IN_AUTOMATION=1 TF_INPUT=0

# The token goes to curl in a header file, never in argv (where `ps` would show it).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
printf 'Authorization: Bearer %s\n' "$(tr -d '\n' <"$token_file")" >"$work/auth"
cat >"$work/desired.json" <<JSON
{"name": "legacy-data",
 "layer_stack": ["STORAGE"],
 "volumes": [{"number": 0, "size_kib": 65536}],
 "storage": {"pool": "$pool"},
 "generation": 1}
JSON

echo "==> 1. create legacy-data through the agent (PUT $endpoint/v1/resources/legacy-data)"
curl -sS --fail-with-body -X PUT -H "Content-Type: application/json" -H "@$work/auth" \
    --data-binary "@$work/desired.json" "$endpoint/v1/resources/legacy-data"
echo

export TF_VAR_endpoint=$endpoint
TF_VAR_token=$(tr -d '\n' <"$token_file")
export TF_VAR_token

echo "==> 2. terraform import blockstor_resource_definition.legacy legacy-data"
"$tf" init -input=false -no-color >/dev/null
"$tf" import -input=false -no-color blockstor_resource_definition.legacy legacy-data

echo "==> 3. terraform plan -detailed-exitcode (expect: No changes)"
"$tf" plan -input=false -no-color -detailed-exitcode
