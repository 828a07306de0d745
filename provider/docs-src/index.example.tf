terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

provider "blockstor" {
  # HTTP(S): the agent serves its API; the token comes from var.token or BLOCKSTOR_TOKEN.
  node "n1" {
    address = "10.0.0.1" # DRBD replication address
    http {
      endpoint    = "https://10.0.0.1:3370"
      token       = var.token
      ca_cert_pem = file("ca.pem") # trust the agent's CA in addition to the system roots
    }
  }

  # SSH: the provider runs the agent's stdio mode; nothing listens on the node.
  node "n2" {
    address = "10.0.0.2"
    ssh {
      host          = "10.0.0.2"
      user          = "blockstor"
      private_key   = file("id_ed25519")   # or use_agent = true, or BLOCKSTOR_SSH_PRIVATE_KEY
      known_hosts   = file("known_hosts")  # or host_key = "ssh-ed25519 AAAA..."; one is required
      agent_command = "sudo -n /usr/local/bin/blockstor-agent stdio --config /etc/blockstor/agent.toml"
      bastion {
        host     = "jump.example.com"
        user     = "ops"
        host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampl"
      }
    }
  }
}
