data "blockstor_nodes" "all" {}

output "free_kib_per_node" {
  value = { for n in data.blockstor_nodes.all.nodes : n.name => sum([for p in n.pools : p.free_kib]) }
}
