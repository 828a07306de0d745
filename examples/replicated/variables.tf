variable "nodes" {
  description = "The two nodes: DRBD replication address and SSH host of each."
  type = map(object({
    address  = string
    ssh_host = string
  }))
  default = {
    n1 = { address = "10.0.0.1", ssh_host = "10.0.0.1" }
    n2 = { address = "10.0.0.2", ssh_host = "10.0.0.2" }
  }
}

variable "ssh_user" {
  description = "SSH login user on both nodes; allowed to sudo the agent (see docs/index.md)."
  type        = string
  default     = "blockstor"
}

variable "ssh_private_key" {
  description = "Private key for ssh_user (file contents). Null: BLOCKSTOR_SSH_PRIVATE_KEY."
  type        = string
  sensitive   = true
  default     = null
}

variable "known_hosts" {
  description = "known_hosts content with both nodes' host keys, e.g. from ssh-keyscan."
  type        = string
}

variable "agent_command" {
  description = "Command the provider runs on each node over SSH."
  type        = string
  default     = "sudo -n /usr/local/bin/blockstor-agent stdio --config /etc/blockstor/agent.toml"
}

variable "storage_pool" {
  description = "Pool name from the agents' config, present on both nodes."
  type        = string
  default     = "files"
}

variable "size" {
  description = "Size of the replicated volume."
  type        = string
  default     = "1GiB"
}

variable "passphrase" {
  description = "LUKS passphrase of every replica. Never shown in plans."
  type        = string
  sensitive   = true
}
