resource "blockstor_resource_group" "encrypted" {
  name         = "encrypted"
  description  = "LUKS under DRBD, 2 replicas"
  place_count  = 2
  storage_pool = "thin"
  layer_stack  = ["DRBD", "LUKS", "STORAGE"]
  passphrase   = var.rg_passphrase
  props = {
    "DrbdOptions/Net/protocol" = "C"
  }
}

resource "blockstor_resource_definition" "db" {
  name           = "db-data"
  resource_group = blockstor_resource_group.encrypted # inherits stack, pool, count, passphrase
  volume {
    number = 0
    size   = "10GiB"
  }
}
