//! One user's seat: a workspace, an agent on loopback, and terraform configured to reach it.

use crate::agent::{AgentConfig, AgentProcess};
use crate::terraform::Terraform;
use crate::workspace::Workspace;

/// The `terraform`, `provider` and `variable` blocks every acceptance config starts with:
/// one node `n1` reached over HTTP at `var.endpoint` with `var.token` (both passed as
/// `TF_VAR_…`, so no secret lands in a file or argv).
pub const PROVIDER_HCL: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

provider "blockstor" {
  node "n1" {
    address = "127.0.0.1"
    http {
      endpoint = var.endpoint
      token    = var.token
    }
  }
}
"#;

/// A workspace, a running agent and a terraform runner whose `endpoint`/`token` variables point
/// at it. Dropped in field order: the agent stops (and its loop devices are detached) before
/// the workspace directory goes.
#[derive(Debug)]
pub struct Scenario {
    /// The node agent `n1`.
    pub agent: AgentProcess,
    /// terraform, in [`Workspace::tf_dir`], with `TF_VAR_endpoint`/`TF_VAR_token` set.
    pub tf: Terraform,
    /// The temporary directory holding everything.
    pub ws: Workspace,
}

impl Scenario {
    /// Starts an agent and writes `main.tf` = [`PROVIDER_HCL`] + `resources`.
    pub fn new(resources: &str) -> Self {
        let ws = Workspace::new();
        ws.write("main.tf", &format!("{PROVIDER_HCL}\n{resources}"));
        Self::with_workspace(ws)
    }

    /// Starts an agent for an already populated workspace.
    pub fn with_workspace(ws: Workspace) -> Self {
        Self::with_agent_config(ws, AgentConfig::default())
    }

    /// Starts an agent with `config` for an already populated workspace.
    pub fn with_agent_config(ws: Workspace, config: AgentConfig) -> Self {
        let agent = AgentProcess::start(&ws.path().join("agent"), config);
        let mut tf = ws.terraform();
        tf.var("endpoint", agent.endpoint())
            .var("token", agent.token());
        Scenario { agent, tf, ws }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Best effort, while the agent still runs: close what apply opened (dm-crypt
            // mappings on kernels that have them) so no device outlives the test.
            let _ = self.tf.destroy();
        }
    }
}
