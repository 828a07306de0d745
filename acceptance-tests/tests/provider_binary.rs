//! What a user sees when running the provider binary directly instead of through Terraform.

use std::process::Command;
use std::time::Duration;

use acceptance_tests::{binaries, process, require, Requirement};

#[test]
fn provider_started_by_hand_explains_and_exits_nonzero() {
    if !require(&[Requirement::ProviderBinary]) {
        return;
    }
    let mut cmd = Command::new(binaries::provider());
    // As from a shell: none of the variables Terraform sets for its plugins.
    for var in [
        "TF_PLUGIN_MAGIC_COOKIE",
        "PLUGIN_PROTOCOL_VERSIONS",
        "PLUGIN_CLIENT_CERT",
        "PLUGIN_MIN_PORT",
        "PLUGIN_MAX_PORT",
    ] {
        cmd.env_remove(var);
    }
    let out = process::run(cmd, binaries::PROVIDER.to_string(), Duration::from_secs(10));
    out.assert_failure();
    let text = out.combined();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line explanation:\n{out}");
    assert!(
        lines[0].to_lowercase().contains("terraform"),
        "the explanation should say it is a Terraform plugin:\n{out}"
    );
}
