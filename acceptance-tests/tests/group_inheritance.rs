//! User story "set encryption once on the group": an RD with neither stack nor
//! passphrase under an RG with `["LUKS","STORAGE"]` and a passphrase inherits both: the agent
//! writes a LUKS header the RG's passphrase unlocks, and plan never shows the secret. Under an
//! RG with LUKS but no passphrase, plan fails naming `passphrase`.

use acceptance_tests::{host, loops, luks, require, Requirement, Scenario};

const PASSPHRASE: &str = "acc5-group-secret-do-not-print";

fn config(rg_passphrase: bool) -> String {
    let pass = if rg_passphrase {
        "passphrase   = var.passphrase"
    } else {
        ""
    };
    format!(
        r#"
variable "passphrase" {{
  type      = string
  sensitive = true
  default   = null
}}

resource "blockstor_resource_group" "encrypted" {{
  name         = "acc5-encrypted"
  place_count  = 1
  storage_pool = "files"
  layer_stack  = ["LUKS", "STORAGE"]
  {pass}
}}

resource "blockstor_resource_definition" "inherits" {{
  name           = "acc5-inherits"
  resource_group = blockstor_resource_group.encrypted
  nodes          = ["n1"]
  volume {{
    number = 0
    size   = "64MiB"
  }}
  props = {{
    "Luks/pbkdf"     = "pbkdf2"
    "Luks/iter-time" = "1"
  }}
}}
"#
    )
}

#[test]
fn rd_inherits_luks_and_passphrase_from_its_group() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    if !require(&needs) {
        return;
    }
    let mut s = Scenario::new(&config(true));
    s.tf.var("passphrase", PASSPHRASE);
    s.tf.init().assert_success();
    s.tf.plan()
        .assert_code(2)
        .assert_contains("(sensitive value)")
        .assert_not_contains_secret(PASSPHRASE);

    let apply = s.tf.apply();
    apply.assert_not_contains_secret(PASSPHRASE);
    if host::has_device_mapper() {
        apply.assert_success();
    } else {
        apply.assert_failure();
        let text = apply.combined().to_lowercase();
        assert!(
            text.contains("device-mapper") || text.contains("device mapper"),
            "apply should stop at dm-crypt open naming device-mapper:\n{apply}"
        );
        eprintln!("note: stopped at dm-crypt open: this kernel lacks device-mapper (as expected)");
    }
    let device = loops::attached_under(&s.agent.pool_dir())
        .into_iter()
        .next()
        .or_else(|| s.agent.pool_files("acc5-inherits").pop())
        .expect("a backing volume");
    assert!(
        luks::is_luks(&device),
        "no LUKS header on {}",
        device.display()
    );
    assert!(
        luks::passphrase_unlocks(&device, PASSPHRASE),
        "the RG's passphrase should unlock the inherited LUKS header"
    );
    assert!(
        !s.agent.log().contains(PASSPHRASE),
        "passphrase in the agent log"
    );
    s.tf.destroy()
        .assert_success()
        .assert_not_contains_secret(PASSPHRASE);
}

#[test]
fn rd_under_luks_group_without_passphrase_fails_at_plan() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(&config(false));
    s.tf.init().assert_success();
    let plan = s.tf.plan();
    plan.assert_code(1).assert_contains("passphrase");
    assert!(
        s.agent.pool_files("").is_empty(),
        "a failed plan must not create anything"
    );
}
