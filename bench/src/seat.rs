//! Our side of the comparison: a workspace, one agent per node on loopback (optionally behind
//! a [`TimingProxy`]), and terraform configured to reach them.

use std::time::Duration;

use acceptance_tests::{AgentConfig, AgentProcess, Outcome, Terraform, Workspace};

use crate::hcl;
use crate::proxy::TimingProxy;
use crate::stats::timed;

/// A user's seat for the bench. Field order is drop order: agents stop (and their loop
/// devices are detached) before the workspace directory goes.
pub struct OurSeat {
    /// One agent per node, in node order; held so they run until the seat drops.
    agents: Vec<AgentProcess>,
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
                        drbd_standin: false,
                    },
                )
            })
            .collect();
        let proxies: Vec<TimingProxy> = if with_proxy {
            agents
                .iter()
                .map(|a| TimingProxy::start(acceptance_tests::http::addr_of(&a.endpoint())))
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
            agents,
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

    /// CPU time (user + system) the agents used so far, summed.
    pub fn agents_cpu(&self) -> Duration {
        self.agents.iter().map(|a| cpu_of(a.pid())).sum()
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

/// CPU time (user + system) of a live process, from `/proc/<pid>/stat`.
pub fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // state ... cmajflt; utime and stime are fields 14 and 15
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// CPU time (user + system) of every child process the bench has waited for, with their own
/// waited-for children: terraform and the provider processes it started.
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `terraform <args>` with the CPU it used: (wall, terraform + providers, agents of `seat`).
pub fn run_ok_cpu(seat: &OurSeat, args: &[&str]) -> (Duration, Duration, Duration) {
    let (tf0, ag0) = (children_cpu(), seat.agents_cpu());
    let wall = run_ok(&seat.tf, args);
    (
        wall,
        children_cpu().saturating_sub(tf0),
        seat.agents_cpu().saturating_sub(ag0),
    )
}
