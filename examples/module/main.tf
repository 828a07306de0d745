# The module used twice: scratch volumes without encryption, and encrypted data volumes.
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

module "scratch" {
  source      = "./modules/volumes"
  prefix      = "scratch"
  nodes       = ["n1"]
  layer_stack = ["STORAGE"]
  volumes = [
    { name = "a", size = "32MiB" },
    { name = "b", size = "32MiB" },
  ]
}

module "secure" {
  source     = "./modules/volumes"
  prefix     = "secure"
  nodes      = ["n1"]
  passphrase = var.passphrase
  volumes = [
    { name = "db", size = "64MiB" },
  ]
  # Fast key derivation for a demo; drop for production (argon2id, 2 s unlock).
  props = {
    "Luks/pbkdf"     = "pbkdf2"
    "Luks/iter-time" = "100"
  }
}
