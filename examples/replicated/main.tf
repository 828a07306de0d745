# Two nodes reached over SSH, each running `blockstor-agent stdio` through sudo; a resource
# group with ["DRBD","LUKS","STORAGE"] and place_count 2; one replicated, encrypted volume.
# Every replica is encrypted at rest; DRBD replicates the plaintext above dm-crypt, so keep the
# replication addresses on a private network.
terraform {
  required_version = ">= 1.0"
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

provider "blockstor" {
  node "n1" {
    address = var.nodes["n1"].address
    ssh {
      host          = var.nodes["n1"].ssh_host
      user          = var.ssh_user
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
  node "n2" {
    address = var.nodes["n2"].address
    ssh {
      host          = var.nodes["n2"].ssh_host
      user          = var.ssh_user
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
}

resource "blockstor_resource_group" "replicated" {
  name         = "replicated"
  description  = "DRBD over LUKS, 2 replicas"
  place_count  = 2
  storage_pool = var.storage_pool
  layer_stack  = ["DRBD", "LUKS", "STORAGE"]
  passphrase   = var.passphrase
  props = {
    "DrbdOptions/Net/protocol" = "C"
  }
}

resource "blockstor_resource_definition" "data" {
  name           = "replicated-data"
  resource_group = blockstor_resource_group.replicated
  volume {
    number = 0
    size   = var.size
  }
}
