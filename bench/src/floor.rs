//! The echo floor's side of item 2: our configuration, planned and applied by the
//! `echo-floor-provider` build (our schema, no work, no agent), so the table can say how far
//! our plan is above what Terraform itself spends on our schema.

use std::path::PathBuf;

use acceptance_tests::{binaries, Terraform, Workspace};

use crate::hcl;

/// A workspace whose `terraform-provider-blockstor` is the echo floor.
pub struct FloorSeat {
    pub tf: Terraform,
    pub ws: Workspace,
    provider_hcl: String,
}

impl FloorSeat {
    /// Installs the echo floor and runs `terraform init` on a config with no resources yet.
    pub fn new() -> Self {
        let binary = binary();
        assert!(
            binary.is_file(),
            "needs the echo floor build {} (scripts/bench.sh builds it: cargo build --release -p blockstor-bench)",
            binary.display()
        );
        let ws = Workspace::with_provider(&binary);
        let mut tf = ws.terraform();
        tf.var("token", "echo-floor");
        // The same provider block as ours; nothing listens there and nothing is asked.
        let nodes = [("n1".to_string(), "http://127.0.0.1:9".to_string())];
        let seat = FloorSeat {
            tf,
            ws,
            provider_hcl: hcl::provider(&nodes),
        };
        seat.set_resources("");
        seat.tf.init().assert_success();
        seat
    }

    /// Rewrites `main.tf`: the provider blocks plus `resources`.
    pub fn set_resources(&self, resources: &str) {
        self.ws
            .write("main.tf", &format!("{}\n{resources}", self.provider_hcl));
    }
}

/// Where cargo puts the echo floor binary (next to the release provider).
pub fn binary() -> PathBuf {
    binaries::release_dir().join("echo-floor-provider")
}
