variable "prefix" {
  description = "Prefix of every resource definition name (<prefix>-<volume name>)."
  type        = string
}

variable "volumes" {
  description = "The volumes to create: a name (unique) and a size such as \"1GiB\"."
  type = list(object({
    name = string
    size = string
  }))
}

variable "nodes" {
  description = "Nodes (provider node block labels) to place every volume on."
  type        = list(string)
}

variable "layer_stack" {
  description = "Layer stack of every volume, topmost first."
  type        = list(string)
  default     = ["LUKS", "STORAGE"]
}

variable "passphrase" {
  description = "LUKS passphrase of every volume; required when layer_stack has LUKS."
  type        = string
  sensitive   = true
  default     = null
}

variable "props" {
  description = "Properties passed to the agents for every volume."
  type        = map(string)
  default     = {}
}
