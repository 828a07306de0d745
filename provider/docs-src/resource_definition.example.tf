# One encrypted volume on one node.
resource "blockstor_resource_definition" "secret" {
  name        = "secret"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "1GiB"
  }
}

# Replicated and encrypted on two nodes, settings inherited from a group.
resource "blockstor_resource_definition" "db" {
  name           = "db-data"
  resource_group = blockstor_resource_group.encrypted
  nodes          = ["n1", "n2"]
  volume {
    number = 0
    size   = "10GiB" # grow in place by raising it; shrinking is an error
  }
  volume {
    number = 1
    size   = "1GiB"
  }
  timeouts {
    create = "30m"
  }
}

output "db_devices" {
  value = { for r in blockstor_resource_definition.db.replicas : r.node => r.device_path }
}
