variable "endpoint" {
  description = "The agent's HTTP endpoint, e.g. http://127.0.0.1:3370."
  type        = string
}

variable "token" {
  description = "The agent's bearer token (the contents of its token_file)."
  type        = string
  sensitive   = true
}

# With Terraform 1.11 or later the passphrase can stay out of state: give it to the definition
# as `passphrase_wo = var.passphrase` instead of `passphrase`, and add `ephemeral = true` here
# (Terraform 1.10+). Without `ephemeral`, `terraform plan -out` still writes the value into the
# saved plan file. (This example keeps `passphrase` so it runs on Terraform 1.0 too.)
variable "passphrase" {
  description = "LUKS passphrase for the encrypted volume. Never shown in plans."
  type        = string
  sensitive   = true
}
