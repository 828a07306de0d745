# A reusable set of volumes: one blockstor_resource_definition per entry of var.volumes, all
# with the same layer stack, nodes and (sensitive) passphrase.
terraform {
  required_version = ">= 1.0"
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

resource "blockstor_resource_definition" "volume" {
  for_each = { for v in var.volumes : v.name => v }

  name        = "${var.prefix}-${each.key}"
  layer_stack = var.layer_stack
  passphrase  = var.passphrase
  nodes       = var.nodes
  props       = var.props
  volume {
    number = 0
    size   = each.value.size
  }
}
