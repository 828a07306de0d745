data "blockstor_resource_definition" "legacy" {
  name = "legacy-data"
}

output "legacy_devices" {
  value = [for r in data.blockstor_resource_definition.legacy.replicas : r.device_path]
}
