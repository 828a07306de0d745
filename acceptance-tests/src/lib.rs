//! Harness for blockstor's acceptance tests: the real `terraform` 1.0.3 binary, the built
//! `terraform-provider-blockstor`, and a real `blockstor-agent` on a loopback port with a
//! loop-file pool.
//!
//! The pieces, one job each:
//! - [`binaries`]: where cargo put the release binaries.
//! - [`terraform`]: finding terraform 1.0.3 and running it in a working directory.
//! - [`workspace`]: a temporary working directory with a CLI config (dev_overrides plus a
//!   filesystem mirror, so `terraform init` works offline).
//! - [`agent`]: an agent process with its own config, pool and token, killed on drop.
//! - [`host`]: what this host can do (root, loop devices, device-mapper, cryptsetup), and the
//!   skip-or-fail rule for tests that need it.
//! - [`http`]: the one HTTP/1.1 test client for the agent's API (also used by the agent's tests).
//! - [`loops`]: loop devices backed by files under a directory, detached on cleanup.
//! - [`drbd_res`]: what a rendered `.res` says, read through `drbdadm dump`.
//! - [`drbd_standin`]: a stand-in for the DRBD kernel module this host lacks.
//!
//! Tests build nothing themselves: `scripts/test.sh` runs
//! `cargo build --release -p terraform-provider-blockstor -p blockstor-agent` first.

pub mod agent;
pub mod binaries;
pub mod drbd_res;
pub mod drbd_standin;
pub mod host;
pub mod http;
pub mod loops;
pub mod luks;
pub mod output;
pub mod process;
pub mod scenario;
pub mod sshd;
pub mod terraform;
pub mod vm;
pub mod workspace;

pub use agent::{AgentConfig, AgentProcess};
pub use host::{require, Requirement};
pub use output::Outcome;
pub use scenario::{Scenario, PROVIDER_HCL};
pub use terraform::Terraform;
pub use workspace::Workspace;
