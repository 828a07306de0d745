output "devices" {
  description = "Device path of each volume on its first node, by volume name."
  value       = { for k, rd in blockstor_resource_definition.volume : k => rd.replicas[0].device_path }
}

output "names" {
  description = "The resource definition names."
  value       = [for rd in blockstor_resource_definition.volume : rd.name]
}
