# The configuration the pipeline applies: one plain volume. Replace with your own; the
# pipeline only needs TF_VAR_endpoint and TF_VAR_token (CI secrets) to reach the agent.
terraform {
  required_version = ">= 1.0"
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
  # In CI keep state in a shared, encrypted backend, e.g.:
  # backend "s3" { bucket = "tf-state" key = "blockstor/ci.tfstate" encrypt = true }
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

resource "blockstor_resource_definition" "ci" {
  name        = "ci-volume"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "32MiB"
  }
}

variable "endpoint" {
  description = "The agent's endpoint (a CI variable)."
  type        = string
}

variable "token" {
  description = "The agent's bearer token (a masked CI secret)."
  type        = string
  sensitive   = true
}
