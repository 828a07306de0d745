# One node, a loop-file pool, two resource definitions:
#   - "plain":     ["STORAGE"]         a 64 MiB loop device
#   - "encrypted": ["LUKS","STORAGE"]  the same, LUKS2-formatted and opened as
#                                      /dev/mapper/quickstart-secret-0-luks
terraform {
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

resource "blockstor_resource_definition" "plain" {
  name        = "quickstart-plain"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}

resource "blockstor_resource_definition" "encrypted" {
  name        = "quickstart-secret"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
  # Fast key derivation for a demo: drop these two props for production volumes
  # (cryptsetup's default is argon2id with a 2 s unlock time).
  props = {
    "Luks/pbkdf"     = "pbkdf2"
    "Luks/iter-time" = "100"
  }
}
