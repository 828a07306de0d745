//! Our side of the comparison: a workspace, one agent per node on loopback (optionally behind
//! a [`TimingProxy`]), and terraform configured to reach them.

use std::time::Duration;

use acceptance_tests::{AgentConfig, AgentProcess, Outcome, Terraform, Workspace};

use super::hcl;
use super::proxy::TimingProxy;
use super::stats::timed;

/// A user's seat for the bench. Field order is drop order: agents stop (and their loop
/// devices are detached) before the workspace directory goes.
pub struct OurSeat {
    /// One agent per node, in node order; held so they run until the seat drops.
    _agents: Vec<AgentProcess>,
    /// One proxy per agent when timing the agent's share, else empty.
    pub proxies: Vec<TimingProxy>,
    /// terraform in the workspace, `TF_VAR_token` set.
    pub tf: Terraform,
    /// The temporary directory holding everything.
    pub ws: Workspace,
    provider_hcl: String,
}

impl OurSeat {
    /// Starts one agent per name in `nodes` (shared token) and runs `terraform init` on a
    /// config with no resources yet.
    pub fn new(nodes: &[&str], with_proxy: bool) -> Self {
        let ws = Workspace::new();
        let token = format!("bench-{}", std::process::id());
        let agents: Vec<AgentProcess> = nodes
            .iter()
            .map(|n| {
                AgentProcess::start(
                    &ws.path().join(format!("agent-{n}")),
                    AgentConfig {
                        node_name: (*n).to_string(),
                        pool: "files".into(),
                        token: token.clone(),
                        linstor_res_dir: None,
                    },
                )
            })
            .collect();
        let proxies: Vec<TimingProxy> = if with_proxy {
            agents
                .iter()
                .map(|a| TimingProxy::start(super::http::addr_of(&a.endpoint())))
                .collect()
        } else {
            Vec::new()
        };
        let endpoints: Vec<(String, String)> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let endpoint = proxies
                    .get(i)
                    .map_or_else(|| a.endpoint(), |p| p.endpoint());
                (a.node_name().to_string(), endpoint)
            })
            .collect();
        let mut tf = ws.terraform();
        tf.var("token", token);
        let seat = OurSeat {
            _agents: agents,
            proxies,
            tf,
            ws,
            provider_hcl: hcl::provider(&endpoints),
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

    /// Forgets what the proxies recorded.
    pub fn reset_proxies(&self) {
        self.proxies.iter().for_each(TimingProxy::reset);
    }

    /// The agents' share since the last reset: the union over all proxies would need one
    /// clock; with one agent it is exact, with several the largest single share is returned.
    pub fn agent_busy(&self) -> (Duration, usize) {
        self.proxies
            .iter()
            .map(TimingProxy::busy)
            .fold((Duration::ZERO, 0), |(d, n), (bd, bn)| (d.max(bd), n + bn))
    }
}

/// Runs `terraform <args>`, panicking with its output on failure; returns the wall time.
pub fn run_ok(tf: &Terraform, args: &[&str]) -> Duration {
    let (d, out): (Duration, Outcome) = timed(|| tf.run(args));
    out.assert_success();
    d
}

/// `terraform plan` on the working directory as it is (fresh or with state, refresh included).
pub const PLAN: &[&str] = &["plan", "-input=false", "-no-color"];
/// `terraform apply -auto-approve`.
pub const APPLY: &[&str] = &["apply", "-input=false", "-no-color", "-auto-approve"];
/// `terraform destroy -auto-approve`.
pub const DESTROY: &[&str] = &["destroy", "-input=false", "-no-color", "-auto-approve"];
/// `terraform validate`.
pub const VALIDATE: &[&str] = &["validate", "-no-color"];
