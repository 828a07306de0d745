//! The examples in `examples/` validate, and apply as their READMEs say as far as this host's
//! kernel allows: every example passes `terraform validate`; quickstart and module apply their
//! plain volumes and stop their LUKS ones at dm-crypt open on a kernel without device-mapper;
//! import adopts an agent-created volume with no changes left; the CI pipeline applies its
//! saved plan and then finds nothing to do; the replicated example (DRBD over LUKS on two
//! nodes over SSH) builds both LUKS headers and stops at the first kernel feature this host
//! lacks (dm-crypt open, DRBD up). The HCL examples in the docs (`provider/docs-src/*.tf`)
//! validate too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acceptance_tests::{
    binaries, host, loops, process, require, terraform, Outcome, Requirement, Scenario, Workspace,
};

/// Every example directory (each holds a root module), by name.
const EXAMPLES: &[&str] = &["quickstart", "replicated", "module", "import", "ci"];

fn example(name: &str) -> PathBuf {
    binaries::workspace_root().join("examples").join(name)
}

/// Copies an example, sub-directories (local modules) included, into the working directory.
fn copy_example(ws: &Workspace, name: &str) {
    copy_dir(&example(name), &ws.tf_dir());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Runs one of an example's scripts against the scenario's agent and terraform.
fn run_script(s: &Scenario, script: &str, args: &[&str], env: &[(&str, String)]) -> Outcome {
    let mut cmd = Command::new(s.ws.tf_dir().join(script));
    cmd.args(args)
        .env("TERRAFORM", terraform::locate().unwrap())
        .env("TF_DIR", s.ws.tf_dir())
        .env("TF_CLI_CONFIG_FILE", s.ws.cli_config())
        .env("CHECKPOINT_DISABLE", "1");
    for var in ["TF_LOG", "TF_LOG_PROVIDER", "TF_CLI_ARGS"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    process::run(
        cmd,
        format!("{script} {}", args.join(" ")),
        Duration::from_secs(600),
    )
}

/// A resource of a child module from `terraform show -json`.
fn module_resource(s: &Scenario, module: &str, address: &str) -> Option<serde_json::Value> {
    let state = s.tf.show_json();
    state["values"]["root_module"]["child_modules"]
        .as_array()?
        .iter()
        .filter(|m| m["address"] == module)
        .flat_map(|m| m["resources"].as_array().into_iter().flatten())
        .find(|r| r["address"] == address)
        .map(|r| r["values"].clone())
}

#[test]
fn every_example_validates_offline() {
    if !require(&[Requirement::Terraform, Requirement::ProviderBinary]) {
        return;
    }
    let on_disk: Vec<String> = std::fs::read_dir(binaries::workspace_root().join("examples"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for dir in &on_disk {
        assert!(
            EXAMPLES.contains(&dir.as_str()),
            "examples/{dir} is not in EXAMPLES: add it so it is validated"
        );
    }
    for name in EXAMPLES {
        assert!(
            example(name).join("README.md").is_file(),
            "examples/{name} has no README.md"
        );
        let ws = Workspace::new();
        copy_example(&ws, name);
        let tf = ws.terraform();
        tf.init().assert_success();
        let validate = tf.run(&["validate", "-no-color"]);
        assert!(
            validate.code() == 0 && validate.stdout.contains("The configuration is valid"),
            "examples/{name} does not validate:\n{validate}"
        );
    }
}

#[test]
fn quickstart_example_applies_shows_and_destroys() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    ws.copy_tf_files_from(&binaries::workspace_root().join("examples/quickstart"));
    let mut s = Scenario::with_workspace(ws);
    s.tf.var("passphrase", "quickstart-example-passphrase");
    s.tf.init().assert_success();

    let apply = s.tf.apply();
    if host::has_device_mapper() {
        apply.assert_success();
    } else {
        // The STORAGE volume is made; the LUKS one stops at dm-crypt open, with a message.
        apply.assert_failure();
        assert!(
            apply.combined().to_lowercase().contains("device-mapper"),
            "apply should name the missing kernel feature:\n{apply}"
        );
    }
    let plain =
        s.tf.state_resource("blockstor_resource_definition.plain")
            .expect("the STORAGE volume is in state");
    let device = plain["replicas"][0]["device_path"]
        .as_str()
        .expect("device_path");
    assert!(std::path::Path::new(device).exists(), "{device} missing");

    s.tf.destroy().assert_success();
    assert!(
        loops::attached_under(&s.agent.pool_dir()).is_empty(),
        "destroy left a loop device attached"
    );
    assert!(
        s.agent.pool_files("quickstart-plain").is_empty(),
        "destroy left the plain backing file"
    );
}

/// What a docs example may use without declaring it: the provider, the variables the prose
/// mentions, and the group the definition examples assign.
const DOCS_STUB: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

provider "blockstor" {}

variable "token" {
  type      = string
  sensitive = true
  default   = null
}

variable "passphrase" {
  type      = string
  sensitive = true
  default   = null
}

variable "rg_passphrase" {
  type      = string
  sensitive = true
  default   = null
}
"#;

const DOCS_STUB_GROUP: &str = r#"
resource "blockstor_resource_group" "encrypted" {
  name        = "encrypted"
  layer_stack = ["DRBD", "LUKS", "STORAGE"]
  passphrase  = var.rg_passphrase
}
"#;

#[test]
fn every_docs_example_validates() {
    if !require(&[Requirement::Terraform, Requirement::ProviderBinary]) {
        return;
    }
    let dir = binaries::workspace_root().join("provider/docs-src");
    let mut fragments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    fragments.sort();
    assert!(
        fragments.len() >= 5,
        "docs examples not found in {}",
        dir.display()
    );
    for fragment in fragments {
        let text = std::fs::read_to_string(&fragment).unwrap();
        let ws = Workspace::new();
        ws.write("example.tf", &text);
        if !text.contains("provider \"blockstor\"") {
            let mut stub = DOCS_STUB.to_owned();
            if text.contains("blockstor_resource_group.encrypted")
                && !text.contains("resource \"blockstor_resource_group\" \"encrypted\"")
            {
                stub.push_str(DOCS_STUB_GROUP);
            }
            ws.write("stub.tf", &stub);
        } else {
            // The provider example reads key and certificate files.
            for file in ["ca.pem", "id_ed25519", "known_hosts"] {
                ws.write(file, "");
            }
            ws.write(
                "stub.tf",
                "variable \"token\" {\n  type      = string\n  sensitive = true\n}\n",
            );
        }
        let tf = ws.terraform();
        tf.init().assert_success();
        let validate = tf.run(&["validate", "-no-color"]);
        assert!(
            validate.code() == 0,
            "{} does not validate:\n{validate}",
            fragment.display()
        );
    }
}

#[test]
fn module_example_makes_both_module_instances_and_stops_luks_at_dm_crypt_without_device_mapper() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    copy_example(&ws, "module");
    let mut s = Scenario::with_workspace(ws);
    s.tf.var("passphrase", "module-example-passphrase");
    s.tf.init().assert_success();

    let apply = s.tf.apply();
    apply.assert_not_contains_secret("module-example-passphrase");
    if host::has_device_mapper() {
        apply.assert_success();
    } else {
        apply.assert_failure();
        assert!(
            apply.combined().contains("device-mapper")
                && apply.combined().contains("linux-image-amd64"),
            "apply should name the missing kernel feature and its package:\n{apply}"
        );
    }
    for key in ["a", "b"] {
        let address = format!("module.scratch.blockstor_resource_definition.volume[\"{key}\"]");
        let rd = module_resource(&s, "module.scratch", &address)
            .unwrap_or_else(|| panic!("{address} is not in state"));
        let device = rd["replicas"][0]["device_path"]
            .as_str()
            .expect("device_path");
        assert!(Path::new(device).exists(), "{device} missing");
    }
    assert_eq!(
        s.agent.pool_files("secure-db").len(),
        1,
        "the LUKS volume's backing file"
    );

    s.tf.destroy().assert_success();
    assert!(
        loops::attached_under(&s.agent.pool_dir()).is_empty(),
        "destroy left a loop device attached"
    );
    for prefix in ["scratch-", "secure-"] {
        assert!(
            s.agent.pool_files(prefix).is_empty(),
            "destroy left {prefix}* files"
        );
    }
}

#[test]
fn import_example_adopts_a_volume_created_through_the_agent_and_plans_no_changes() {
    if !require(host::USER_SEAT) {
        return;
    }
    let ws = Workspace::new();
    copy_example(&ws, "import");
    let s = Scenario::with_workspace(ws);
    let token_file = s.ws.path().join("token");
    std::fs::write(&token_file, s.agent.token()).unwrap();

    let out = run_script(
        &s,
        "import.sh",
        &[],
        &[
            ("BLOCKSTOR_ENDPOINT", s.agent.endpoint()),
            ("BLOCKSTOR_TOKEN_FILE", token_file.display().to_string()),
            ("POOL", "files".into()),
        ],
    );
    out.assert_success()
        .assert_contains("Import successful")
        .assert_contains("No changes.")
        .assert_not_contains_secret(s.agent.token());
    let file = s.agent.pool_files("legacy-data");
    assert_eq!(file.len(), 1, "the agent made one backing file");
    let legacy =
        s.tf.state_resource("blockstor_resource_definition.legacy")
            .expect("imported into state");
    assert_eq!(
        legacy["effective_layer_stack"],
        serde_json::json!(["STORAGE"])
    );

    s.tf.destroy().assert_success();
    assert!(
        s.agent.pool_files("legacy-data").is_empty(),
        "destroy left the backing file"
    );
}

#[test]
fn ci_pipeline_applies_its_saved_plan_then_finds_no_changes() {
    if !require(host::USER_SEAT) {
        return;
    }
    let ws = Workspace::new();
    copy_example(&ws, "ci");
    let s = Scenario::with_workspace(ws);
    let env = [
        ("TF_VAR_endpoint", s.agent.endpoint()),
        ("TF_VAR_token", s.agent.token().to_owned()),
    ];

    let first = run_script(&s, "pipeline.sh", &[], &env);
    first
        .assert_success()
        .assert_contains("changes saved in plan.tfplan")
        .assert_contains("Apply complete! Resources: 1 added")
        .assert_not_contains_secret(s.agent.token());
    assert_eq!(s.agent.pool_files("ci-volume").len(), 1);
    assert!(
        !s.ws.tf_dir().join("plan.tfplan").exists(),
        "the applied plan is removed"
    );

    let second = run_script(&s, "pipeline.sh", &["plan"], &env);
    second
        .assert_success()
        .assert_contains("pipeline: no changes");

    s.tf.destroy().assert_success();
    assert!(s.agent.pool_files("ci-volume").is_empty());
}

/// The replicated example's resources (a group with `["DRBD","LUKS","STORAGE"]` and
/// `place_count = 2`, one definition) applied through two real agents, both reached over SSH
/// through one local `sshd`. Only the connection details differ from the example: a
/// `provider_override.tf` points each node at the local sshd port and its own agent config.
/// Apply stops at the first step this kernel lacks (dm-crypt open, or DRBD up), after the
/// LUKS headers were written on both nodes; destroy removes everything.
#[test]
fn replicated_example_builds_luks_under_drbd_on_two_nodes_over_ssh_as_far_as_the_kernel_allows() {
    use acceptance_tests::agent::{free_loopback_addr, write_config};
    use acceptance_tests::sshd::SshServer;
    use acceptance_tests::AgentConfig;

    let mut needs = host::USER_SEAT.to_vec();
    needs.extend([Requirement::Sshd, Requirement::Cryptsetup]);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    copy_example(&ws, "replicated");
    let sshd = SshServer::start(&ws.path().join("sshd"));
    let mut nodes = Vec::new();
    let mut overrides = String::from("provider \"blockstor\" {\n");
    for name in ["n1", "n2"] {
        let dir = ws.path().join(name);
        let config = write_config(
            &dir,
            &AgentConfig {
                node_name: name.into(),
                ..AgentConfig::default()
            },
            free_loopback_addr(),
        );
        overrides.push_str(&format!(
            r#"  node "{name}" {{
    address = "127.0.0.1"
    ssh {{
      host          = "127.0.0.1"
      port          = {port}
      user          = "root"
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = "{agent} stdio --config {config}"
    }}
  }}
"#,
            port = sshd.port(),
            agent = binaries::agent().display(),
            config = config.display(),
        ));
        nodes.push(dir);
    }
    overrides.push_str("}\n");
    ws.write("provider_override.tf", &overrides);
    let mut tf = ws.terraform();
    tf.var("ssh_private_key", sshd.client_private_key())
        .var("known_hosts", sshd.known_hosts())
        .var("passphrase", "replicated-example-passphrase")
        .var("size", "32MiB");
    tf.init().assert_success();

    let apply = tf.apply();
    apply.assert_not_contains_secret("replicated-example-passphrase");
    let drbd_loaded = Path::new("/proc/drbd").exists();
    if host::has_device_mapper() && drbd_loaded {
        apply.assert_success();
    } else {
        apply.assert_failure();
        let text = apply.combined();
        assert!(
            text.contains("device-mapper") || text.contains("drbd kernel module"),
            "apply should name the missing kernel feature:\n{apply}"
        );
        eprintln!("note: replicated example stopped at a kernel feature this host lacks");
    }
    for dir in &nodes {
        let files = loops::files_under(&dir.join("pools/files"));
        let backing = files
            .iter()
            .find(|p| p.to_string_lossy().contains("replicated-data"))
            .unwrap_or_else(|| panic!("no backing file under {}", dir.display()));
        let is_luks = Command::new("cryptsetup")
            .arg("isLuks")
            .arg(backing)
            .status()
            .unwrap();
        assert!(
            is_luks.success(),
            "{} has no LUKS header",
            backing.display()
        );
    }

    tf.destroy().assert_success();
    for dir in &nodes {
        assert!(
            loops::files_under(&dir.join("pools/files")).is_empty(),
            "destroy left files under {}",
            dir.display()
        );
        loops::detach_all_under(dir);
    }
}
