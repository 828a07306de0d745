//! Issue #8 part 4: plugin protocol 5. With `BLOCKSTOR_PROTOCOL_VERSIONS=5` the provider offers
//! only protocol 5, so Terraform 1.0.3 (which offers 5 and 6) talks tfplugin5 to it end to end:
//! plan, apply, no-op re-plan and destroy of a `["STORAGE"]` RD inheriting from a group, the
//! group assigned as a whole object (protocol 5 has no nested attributes: `resource_group` is an
//! object-typed attribute there).

use acceptance_tests::{host, require, Scenario};

const CONFIG: &str = r#"
resource "blockstor_resource_group" "files" {
  name         = "acc-p5-group"
  storage_pool = "files"
  place_count  = 1
}

resource "blockstor_resource_definition" "plain" {
  name           = "acc-p5-plain"
  resource_group = blockstor_resource_group.files
  layer_stack    = ["STORAGE"]
  nodes          = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn terraform_drives_a_storage_rd_over_protocol_5() {
    if !require(host::USER_SEAT) {
        return;
    }
    let mut s = Scenario::new(CONFIG);
    let log = s.ws.path().join("tf.log");
    s.tf.env("BLOCKSTOR_PROTOCOL_VERSIONS", "5")
        .env("TF_LOG", "DEBUG")
        .env("TF_LOG_PATH", log.display().to_string());

    s.tf.init().assert_success();
    s.tf.plan()
        .assert_code(2)
        .assert_contains("blockstor_resource_definition.plain will be created");
    s.tf.apply()
        .assert_success()
        .assert_contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed.");

    let state =
        s.tf.state_resource("blockstor_resource_definition.plain")
            .expect("resource in state after apply");
    assert_eq!(state["effective_storage_pool"], "files", "{state:#}");
    assert_eq!(state["resource_group"]["name"], "acc-p5-group", "{state:#}");
    assert_eq!(s.agent.pool_files("acc-p5-plain").len(), 1);

    s.tf.plan().assert_code(0).assert_contains("No changes.");

    // The schema Terraform saw is the protocol 5 one: `resource_group` has an object type.
    let schema = s.tf.run(&["providers", "schema", "-json"]);
    schema.assert_success();
    let schema: serde_json::Value =
        serde_json::from_str(schema.stdout.trim()).expect("schema JSON");
    let group = &schema["provider_schemas"]["registry.terraform.io/cozystack/blockstor"]
        ["resource_schemas"]["blockstor_resource_definition"]["block"]["attributes"]
        ["resource_group"];
    assert_eq!(group["type"][0], "object", "{group:#}");
    assert!(group.get("nested_type").is_none(), "{group:#}");

    s.tf.destroy()
        .assert_success()
        .assert_contains("Destroy complete! Resources: 2 destroyed.");
    assert!(s.agent.pool_files("acc-p5-plain").is_empty());

    // Terraform really negotiated protocol 5 with the provider, and never 6.
    let log = std::fs::read_to_string(&log).expect("terraform log");
    assert!(
        log.contains("using plugin: version=5"),
        "no protocol 5 negotiation in the Terraform log"
    );
    assert!(
        !log.contains("using plugin: version=6"),
        "Terraform spoke protocol 6 to the provider"
    );
}

/// Protocol 5 object types have no optional attributes: a literal `resource_group` must list
/// every attribute (null for the unused ones). A partial literal is a plan error that names the
/// missing attributes; the full literal plans.
#[test]
fn protocol_5_needs_every_resource_group_attribute_in_a_literal() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = |group: &str| {
        format!(
            r#"
resource "blockstor_resource_definition" "literal" {{
  name           = "acc-p5-literal"
  resource_group = {group}
  layer_stack    = ["STORAGE"]
  nodes          = ["n1"]
  volume {{
    number = 0
    size   = "64MiB"
  }}
}}
"#
        )
    };
    let mut s = Scenario::new(&rd(r#"{ name = "legacy" }"#));
    s.tf.env("BLOCKSTOR_PROTOCOL_VERSIONS", "5");
    s.tf.init().assert_success();
    s.tf.plan()
        .assert_failure()
        .assert_contains("resource_group");

    s.ws.write(
        "main.tf",
        &format!(
            "{}\n{}",
            acceptance_tests::PROVIDER_HCL,
            rd(r#"{
    name         = "legacy"
    layer_stack  = null
    passphrase   = null
    passphrase_file = null
    passphrase_env  = null
    place_count  = null
    storage_pool = null
    props        = null
    deletion_protection = null
  }"#)
        ),
    );
    s.tf.plan()
        .assert_code(2)
        .assert_contains("blockstor_resource_definition.literal will be created");
}
