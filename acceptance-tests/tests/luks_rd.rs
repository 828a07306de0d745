//! A `["LUKS","STORAGE"]` resource definition: the header the agent writes is checked from
//! outside with cryptsetup, and the passphrase never shows in plan, apply or the agent's files.
//!
//! On kernels without device-mapper, `cryptsetup open` cannot work: apply then must fail with
//! the agent's message naming the missing feature, after the header was written and can be
//! verified. Where device-mapper exists, apply must succeed and the mapping must be open.

use std::path::{Path, PathBuf};

use acceptance_tests::{host, loops, luks, require, Outcome, Requirement, Scenario};

const PASSPHRASE: &str = "acc-correct-horse-battery-staple";

fn luks_rd(name: &str) -> String {
    format!(
        r#"
variable "passphrase" {{
  type      = string
  sensitive = true
}}

resource "blockstor_resource_definition" "secret" {{
  name        = "{name}"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
  nodes       = ["n1"]
  volume {{
    number = 0
    size   = "64MiB"
  }}
  # pbkdf2 with a 1 ms target: the header is real, the test stays fast.
  props = {{
    "Luks/pbkdf"     = "pbkdf2"
    "Luks/iter-time" = "1"
  }}
}}
"#
    )
}

fn needs() -> Vec<Requirement> {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    needs
}

/// Asserts that `apply` either succeeded (device-mapper present) or failed only because
/// dm-crypt cannot open here, with a message that says so.
fn check_apply(apply: &Outcome) {
    if host::has_device_mapper() {
        apply.assert_success();
        return;
    }
    apply.assert_failure();
    let text = apply.combined().to_lowercase();
    assert!(
        text.contains("device-mapper") || text.contains("device mapper"),
        "on a kernel without device-mapper, apply should say so:\n{apply}"
    );
    eprintln!("note: stopped at dm-crypt open: this kernel lacks device-mapper (as expected)");
}

fn single_backing_file(s: &Scenario, name: &str) -> PathBuf {
    let files = s.agent.pool_files(name);
    assert_eq!(files.len(), 1, "one backing file expected, found {files:?}");
    files[0].clone()
}

/// Nothing the agent stored or logged may hold the passphrase.
fn assert_agent_keeps_no_secret(s: &Scenario) {
    assert!(
        !s.agent.log().contains(PASSPHRASE),
        "the passphrase appeared in the agent's log"
    );
    for file in loops::files_under(&s.agent.state_dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(PASSPHRASE.len())
                .any(|w| w == PASSPHRASE.as_bytes()),
            "the passphrase is stored in clear in {}",
            file.display()
        );
    }
}

#[test]
fn luks_rd_writes_a_verifiable_luks_header() {
    if !require(&needs()) {
        return;
    }
    let mut s = Scenario::new(&luks_rd("acc-secret"));
    s.tf.var("passphrase", PASSPHRASE);
    s.tf.init().assert_success();

    let apply = s.tf.apply();
    check_apply(&apply);
    apply.assert_not_contains_secret(PASSPHRASE);

    // The header is there and is LUKS2, whatever the kernel could do after writing it.
    let backing = single_backing_file(&s, "acc-secret");
    let device = loops::attached_under(&s.agent.pool_dir())
        .into_iter()
        .next()
        .unwrap_or_else(|| backing.clone());
    assert!(
        luks::is_luks(&device),
        "cryptsetup isLuks {} failed",
        device.display()
    );
    let dump = luks::dump(&device).expect("cryptsetup luksDump");
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Version:") && l.trim_end().ends_with('2')),
        "expected a LUKS2 header:\n{dump}"
    );
    assert!(
        luks::passphrase_unlocks(&device, PASSPHRASE),
        "the configured passphrase does not unlock the header"
    );
    assert!(
        !luks::passphrase_unlocks(&device, "some-other-passphrase"),
        "a wrong passphrase unlocked the header"
    );
    if host::has_device_mapper() {
        let mapper = Path::new("/dev/mapper/acc-secret-0-luks");
        assert!(mapper.exists(), "{} should be open", mapper.display());
    }
    assert_agent_keeps_no_secret(&s);

    let destroy = s.tf.destroy();
    destroy
        .assert_success()
        .assert_not_contains_secret(PASSPHRASE);
    assert!(
        loops::attached_under(&s.agent.pool_dir()).is_empty(),
        "destroy left a loop device attached"
    );
    let left = s.agent.pool_files("acc-secret");
    assert!(
        left.is_empty(),
        "destroy left the LUKS backing file behind: {left:?} (a create that failed at open must \
         still be recorded in state so destroy can remove it)"
    );
}

#[test]
fn plan_shows_sensitive_value_not_the_passphrase() {
    if !require(host::USER_SEAT) {
        return;
    }
    let mut s = Scenario::new(&luks_rd("acc-plan-secret"));
    s.tf.var("passphrase", PASSPHRASE);
    s.tf.init().assert_success();
    s.tf.plan()
        .assert_code(2)
        .assert_contains("(sensitive value)")
        .assert_not_contains_secret(PASSPHRASE);
    // The non-secret resolved stack is what the plan shows instead.
    s.tf.run(&["plan", "-input=false", "-no-color", "-out=tfplan"])
        .assert_success();
    let shown = s.tf.run(&["show", "-no-color", "tfplan"]);
    shown
        .assert_success()
        .assert_contains("(sensitive value)")
        .assert_not_contains_secret(PASSPHRASE);
    assert!(
        s.agent.pool_files("").is_empty(),
        "plan must not create anything"
    );
}
