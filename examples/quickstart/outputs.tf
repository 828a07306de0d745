output "plain_device" {
  description = "The plain volume's block device on n1."
  value       = blockstor_resource_definition.plain.replicas[0].device_path
}

output "encrypted_layer_stack" {
  description = "The resolved stack of the encrypted volume."
  value       = blockstor_resource_definition.encrypted.effective_layer_stack
}

output "encrypted_passphrase_fingerprint" {
  description = "A fingerprint of the passphrase (not the passphrase)."
  value       = blockstor_resource_definition.encrypted.passphrase_fingerprint
}
