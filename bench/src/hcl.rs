//! The Terraform configurations the bench runs: ours (N resource definitions on a loop-file
//! pool with `["STORAGE"]`) and the reference (N `null_resource`), both with `count`, so both
//! sides parse the same amount of HCL per resource.

/// Size of each benchmark volume: the smallest the API accepts; the backing file is sparse.
pub const VOLUME_SIZE: &str = "4MiB";

/// `terraform` + `provider "blockstor"` blocks for nodes `(name, endpoint)`, all with the
/// token in `var.token` (passed as `TF_VAR_token`).
pub fn provider(nodes: &[(String, String)]) -> String {
    let mut blocks = String::new();
    for (name, endpoint) in nodes {
        blocks.push_str(&format!(
            "  node \"{name}\" {{\n    address = \"127.0.0.1\"\n    http {{\n      \
             endpoint = \"{endpoint}\"\n      token    = var.token\n    }}\n  }}\n"
        ));
    }
    format!(
        r#"terraform {{
  required_providers {{
    blockstor = {{ source = "cozystack/blockstor" }}
  }}
}}

variable "token" {{
  type      = string
  sensitive = true
}}

provider "blockstor" {{
{blocks}}}
"#
    )
}

/// `count` resource definitions named `<prefix>-<i>` on `node`, `["STORAGE"]`.
pub fn rds(label: &str, prefix: &str, count: usize, node: &str) -> String {
    format!(
        r#"
resource "blockstor_resource_definition" "{label}" {{
  count       = {count}
  name        = "{prefix}-${{count.index}}"
  layer_stack = ["STORAGE"]
  nodes       = ["{node}"]
  volume {{
    number = 0
    size   = "{VOLUME_SIZE}"
  }}
}}
"#
    )
}

/// The null provider's config with `count` null resources.
pub fn null(count: usize) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    null = {{ source = "hashicorp/null", version = "2.1.2" }}
  }}
}}

resource "null_resource" "r" {{
  count = {count}
}}
"#
    )
}
