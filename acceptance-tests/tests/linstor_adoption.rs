//! User story "adopt what LINSTOR built": a LINSTOR-shaped chain is laid out on this
//! host the way LINSTOR's satellite leaves it (a FILE-pool volume `<rd>_00000.img` attached to
//! a loop device; a LUKS2 header formatted with a random per-volume key; a `.res` in LINSTOR's
//! layout, checked by `drbdadm -c FILE dump`), then `terraform import` reads it, the next plan
//! replaces nothing, and apply adopts it without reformatting:
//!
//! * LUKS+STORAGE: a passphrase the header does not hold (LINSTOR's master passphrase, say) is
//!   refused with `luks_passphrase_mismatch` and the hint to add a keyslot; after following the
//!   hint the same apply verifies the key and leaves the header's UUID and keyslots alone.
//!   Opening the mapping needs device-mapper: without it apply stops there, by design.
//! * DRBD+STORAGE on two nodes: state takes LINSTOR's node ids, minors and port, and apply
//!   refuses to take DRBD over (`linstor_drbd_active`) while LINSTOR's `.res` is in place,
//!   saying blockstor's settings match LINSTOR's; nothing on the nodes changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use acceptance_tests::{
    host, luks, require, AgentConfig, AgentProcess, Requirement, Scenario, Workspace,
};

/// LINSTOR's volume key for the LUKS case: random text, as LINSTOR generates per volume.
const LINSTOR_VOLUME_KEY: &str = "q7Hd2LxV9mRt4KcW8pZs";
/// What a user would try first: LINSTOR's master passphrase, which is no key of the header.
const MASTER_PASSPHRASE: &str = "linstor-master-passphrase";
/// The passphrase the user gives blockstor, added to a keyslot by following the hint.
const BLOCKSTOR_PASSPHRASE: &str = "acc9-blockstor-adopted-key";

fn needs() -> Vec<Requirement> {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    needs
}

/// Runs a command that must succeed; `stdin` (a key) goes to its standard input.
fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// LINSTOR's FILE provider: `<pool dir>/<rd>_00000.img`, fully allocated, attached to a loop
/// device. Returns the loop device.
fn linstor_file_volume(pool_dir: &Path, rd: &str, mib: u64) -> PathBuf {
    let file = pool_dir.join(format!("{rd}_00000.img"));
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(mib << 20).unwrap();
    PathBuf::from(run(
        Command::new("losetup").args(["-f", "--show"]).arg(&file),
        None,
    ))
}

fn luks_uuid(dev: &Path) -> String {
    run(Command::new("cryptsetup").arg("luksUUID").arg(dev), None)
}

const LUKS_RD: &str = r#"
variable "passphrase" {
  type      = string
  sensitive = true
}

resource "blockstor_resource_definition" "adopted" {
  name        = "pvc-luks"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

fn assert_no_replacement(plan: &acceptance_tests::Outcome) {
    assert!(plan.code() == 0 || plan.code() == 2, "plan failed:\n{plan}");
    for bad in [
        "must be replaced",
        "forces replacement",
        "will be destroyed",
    ] {
        assert!(
            !plan.combined().contains(bad),
            "plan after import says {bad:?}:\n{plan}"
        );
    }
}

#[test]
fn linstor_luks_volume_is_imported_and_adopted_without_reformatting() {
    if !require(&needs()) {
        return;
    }
    let ws = Workspace::new();
    ws.write(
        "main.tf",
        &format!("{}\n{LUKS_RD}", acceptance_tests::scenario::PROVIDER_HCL),
    );
    let linstor_dir = ws.path().join("linstor.d");
    std::fs::create_dir_all(&linstor_dir).unwrap();
    let mut s = Scenario::with_agent_config(
        ws,
        AgentConfig {
            linstor_res_dir: Some(linstor_dir),
            ..AgentConfig::default()
        },
    );
    // As LINSTOR leaves it: the volume attached, LUKS2 formatted with the volume key.
    let dev = linstor_file_volume(&s.agent.pool_dir(), "pvc-luks", 64);
    run(
        Command::new("cryptsetup")
            .args(["luksFormat", "--type", "luks2", "--batch-mode"])
            .args(["--pbkdf", "pbkdf2", "--iter-time", "1", "--key-file=-"])
            .arg(&dev),
        Some(LINSTOR_VOLUME_KEY),
    );
    let uuid = luks_uuid(&dev);
    let header = luks::dump(&dev).unwrap();

    s.tf.init().assert_success();
    s.tf.var("passphrase", MASTER_PASSPHRASE);
    s.tf.run(&[
        "import",
        "-input=false",
        "-no-color",
        "blockstor_resource_definition.adopted",
        "pvc-luks",
    ])
    .assert_success()
    .assert_contains("Import successful");
    let state =
        s.tf.state_resource("blockstor_resource_definition.adopted")
            .expect("imported state");
    let values = &state;
    assert_eq!(
        values["layer_stack"],
        serde_json::json!(["LUKS", "STORAGE"])
    );
    assert_eq!(values["volume"][0]["size"], "64MiB");
    assert_eq!(values["nodes"], serde_json::json!(["n1"]));
    assert_no_replacement(&s.tf.plan());

    // LINSTOR's master passphrase is no key of the header: refused, with the way out.
    let apply = s.tf.apply();
    apply.assert_failure();
    let text = apply.combined();
    assert!(
        text.contains("luks_passphrase_mismatch") && text.contains("luksAddKey"),
        "a wrong key must be refused with the hint:\n{apply}"
    );
    assert!(text.contains("LINSTOR"), "the hint names LINSTOR:\n{apply}");
    assert_eq!(luks_uuid(&dev), uuid, "a refused apply changed the header");
    assert_eq!(luks::dump(&dev).unwrap(), header, "keyslots changed");

    // Follow the hint: add the blockstor passphrase with a key the header holds.
    run(
        Command::new("cryptsetup")
            .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2"])
            .args(["--iter-time", "1"])
            .arg(&dev),
        Some(&format!("{LINSTOR_VOLUME_KEY}\n{BLOCKSTOR_PASSPHRASE}\n")),
    );
    s.tf.var("passphrase", BLOCKSTOR_PASSPHRASE);
    let apply = s.tf.apply();
    if host::has_device_mapper() {
        apply.assert_success();
    } else {
        // The key was verified; only opening the mapping needs the kernel.
        apply.assert_failure();
        let text = apply.combined().to_lowercase();
        assert!(
            text.contains("kernel_feature_missing") && !text.contains("mismatch"),
            "only the missing device-mapper may stop it:\n{apply}"
        );
        eprintln!(
            "skipped: opening the LUKS mapping needs device-mapper (dm-crypt), absent on this kernel"
        );
    }
    assert_eq!(luks_uuid(&dev), uuid, "adoption reformatted the header");
    assert!(
        luks::passphrase_unlocks(&dev, LINSTOR_VOLUME_KEY),
        "LINSTOR's key still opens"
    );
    assert!(luks::passphrase_unlocks(&dev, BLOCKSTOR_PASSPHRASE));
    let (code, body) = s.agent.get("/v1/resources/pvc-luks").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&uuid), "{body}");
}

/// LINSTOR's `.res` for `pvc-drbd` as its satellite writes it on node `local` (LINSTOR names
/// nodes by host name: `alpha`, `beta`, not blockstor's `n1`, `n2`).
fn linstor_res(local: &str) -> String {
    let disk = |host: &str, dev: &str| {
        if host == local {
            dev.to_owned()
        } else {
            "/dev/drbd/this/is/not/used".to_owned()
        }
    };
    format!(
        r#"# This file was generated by linstor(1.24.2), do not edit manually.
# Local node: {local}
# Host name : {local}

resource "pvc-drbd"
{{
    net
    {{
        cram-hmac-alg     sha1;
        shared-secret     "Jq3xkY2b8ZvNfT0rLw5e";
        protocol C;
    }}

    on "alpha"
    {{
        volume 0
        {{
            disk        {a};
            meta-disk   internal;
            device      minor 1005;
        }}
        node-id    1;
    }}

    on "beta"
    {{
        volume 0
        {{
            disk        {b};
            meta-disk   internal;
            device      minor 1005;
        }}
        node-id    0;
    }}

    connection
    {{
        host "alpha" address ipv4 127.0.0.1:7005;
        host "beta" address ipv4 127.0.0.2:7005;
    }}
}}
"#,
        a = disk("alpha", "LOOP"),
        b = disk("beta", "LOOP"),
    )
}

const DRBD_TF: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

variable "endpoint1" {
  type = string
}
variable "endpoint2" {
  type = string
}
variable "token1" {
  type      = string
  sensitive = true
}
variable "token2" {
  type      = string
  sensitive = true
}

provider "blockstor" {
  node "n1" {
    address = "127.0.0.1"
    http {
      endpoint = var.endpoint1
      token    = var.token1
    }
  }
  node "n2" {
    address = "127.0.0.2"
    http {
      endpoint = var.endpoint2
      token    = var.token2
    }
  }
}

resource "blockstor_resource_definition" "adopted" {
  name        = "pvc-drbd"
  layer_stack = ["DRBD", "STORAGE"]
  nodes       = ["n1", "n2"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn linstor_drbd_chain_is_imported_with_its_ids_and_not_taken_over_while_linstor_has_it() {
    if !require(&needs()) {
        return;
    }
    let drbdadm = host::which("drbdadm");
    let ws = Workspace::new();
    ws.write("main.tf", DRBD_TF);
    let mut agents = Vec::new();
    let mut res_files = Vec::new();
    for (node, linstor_host) in [("n1", "alpha"), ("n2", "beta")] {
        let dir = ws.path().join(node);
        let linstor_dir = dir.join("linstor.d");
        std::fs::create_dir_all(&linstor_dir).unwrap();
        let agent = AgentProcess::start(
            &dir,
            AgentConfig {
                node_name: node.into(),
                linstor_res_dir: Some(linstor_dir.clone()),
                ..AgentConfig::default()
            },
        );
        let dev = linstor_file_volume(&agent.pool_dir(), "pvc-drbd", 64);
        let res = linstor_dir.join("pvc-drbd.res");
        let text = linstor_res(linstor_host).replace("LOOP", &dev.display().to_string());
        std::fs::write(&res, &text).unwrap();
        match &drbdadm {
            Some(bin) => {
                run(
                    Command::new(bin)
                        .arg("-c")
                        .arg(&res)
                        .arg("dump")
                        .env("__DRBD_NODE__", linstor_host),
                    None,
                );
            }
            None => eprintln!("skipped: `drbdadm -c FILE dump` needs drbd-utils"),
        }
        res_files.push((res, text));
        agents.push(agent);
    }
    let mut tf = ws.terraform();
    tf.var("endpoint1", agents[0].endpoint())
        .var("token1", agents[0].token())
        .var("endpoint2", agents[1].endpoint())
        .var("token2", agents[1].token());

    // The agents recognise LINSTOR's chain and its DRBD settings for their node.
    let (code, body) = agents[0].get("/v1/resources/pvc-drbd").unwrap();
    assert_eq!(code, 200, "{body}");
    let observed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(observed["origin"], "linstor", "{body}");
    assert_eq!(
        observed["layer_stack"],
        serde_json::json!(["DRBD", "STORAGE"])
    );
    assert_eq!(observed["drbd"]["node_id"], 1, "{body}");
    assert_eq!(observed["drbd"]["minors"], serde_json::json!([1005]));
    assert_eq!(observed["drbd"]["port"], 7005);
    assert!(
        observed["drbd"]["res_file"]
            .as_str()
            .is_some_and(|f| f.ends_with("linstor.d/pvc-drbd.res")),
        "observed through LINSTOR's file: {body}"
    );

    tf.init().assert_success();
    tf.run(&[
        "import",
        "-input=false",
        "-no-color",
        "blockstor_resource_definition.adopted",
        "pvc-drbd",
    ])
    .assert_success()
    .assert_contains("Import successful")
    .assert_contains("was built by LINSTOR");
    let state = tf
        .state_resource("blockstor_resource_definition.adopted")
        .expect("imported state");
    assert_eq!(state["layer_stack"], serde_json::json!(["DRBD", "STORAGE"]));
    assert_eq!(state["nodes"], serde_json::json!(["n1", "n2"]));
    assert_no_replacement(&tf.plan());

    // Apply carries LINSTOR's node ids, minors and port from state, and refuses to take DRBD
    // over while LINSTOR's file is there.
    let apply = tf.apply();
    apply.assert_failure();
    // Terraform wraps diagnostics: compare with single spaces.
    let text = apply
        .combined()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("linstor_drbd_active"), "{apply}");
    for ours in [
        "node-id 1, minors [1005], port 7005",
        "node-id 0, minors [1005], port 7005",
    ] {
        assert!(
            text.contains(&format!("blockstor's settings match LINSTOR's ({ours})")),
            "state did not carry LINSTOR's values ({ours}):\n{apply}"
        );
    }
    for (res, text) in &res_files {
        assert_eq!(
            &std::fs::read_to_string(res).unwrap(),
            text,
            "LINSTOR's file changed"
        );
    }
    for a in &agents {
        assert!(
            !a.state_dir().join("drbd.d").join("pvc-drbd.res").exists(),
            "blockstor wrote its own .res while LINSTOR's exists"
        );
    }
}
