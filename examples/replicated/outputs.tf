output "devices" {
  description = "The replicated device on each node (/dev/drbd<minor>)."
  value       = { for r in blockstor_resource_definition.data.replicas : r.node => r.device_path }
}

output "effective_layer_stack" {
  description = "The stack the definition inherited from the group."
  value       = blockstor_resource_definition.data.effective_layer_stack
}
