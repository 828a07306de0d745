output "scratch_devices" {
  description = "Scratch volumes by name."
  value       = module.scratch.devices
}

output "secure_names" {
  description = "The encrypted volumes' definition names."
  value       = module.secure.names
}
