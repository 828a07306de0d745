# The Terraform side of import.sh: a resource that matches the volume the script creates
# through the agent, so that after `terraform import` the plan shows no changes.
terraform {
  required_version = ">= 1.0"
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

provider "blockstor" {
  node "n1" {
    address = "127.0.0.1"
    http {
      endpoint = var.endpoint
      token    = var.token
    }
  }
}

# Import with: terraform import blockstor_resource_definition.legacy legacy-data
resource "blockstor_resource_definition" "legacy" {
  name        = "legacy-data"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
