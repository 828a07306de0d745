//! The ordered layer stack of a resource definition, topmost first, always ending in STORAGE.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One layer of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Layer {
    /// Replication: renders a `.res` file and drives `drbdadm`.
    Drbd,
    /// Encryption at rest: `cryptsetup luksFormat` + `open`.
    Luks,
    /// The backing volume: LVM(-thin) LV, ZFS zvol or loop file.
    Storage,
}

impl Layer {
    /// The upper-case name used in HCL and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Drbd => "DRBD",
            Layer::Luks => "LUKS",
            Layer::Storage => "STORAGE",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four stacks blockstor knows how to build, topmost first.
const VALID: [&[Layer]; 4] = [
    &[Layer::Drbd, Layer::Storage],
    &[Layer::Luks, Layer::Storage],
    &[Layer::Drbd, Layer::Luks, Layer::Storage],
    &[Layer::Storage],
];

/// The human list of valid stacks, for error messages.
pub const VALID_STACKS_TEXT: &str =
    r#"["DRBD","STORAGE"], ["LUKS","STORAGE"], ["DRBD","LUKS","STORAGE"], ["STORAGE"]"#;

/// Why a layer stack was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerStackError {
    #[error("layer_stack: unknown layer {0:?}; layers are DRBD, LUKS and STORAGE")]
    UnknownLayer(String),
    #[error("layer_stack: {0} is not a supported stack; valid stacks are {VALID_STACKS_TEXT}")]
    Unsupported(String),
    #[error("layer_stack: [] names no layer; valid stacks are {VALID_STACKS_TEXT}")]
    Empty,
}

/// A normalised, supported layer stack. A value that exists is one of the four valid stacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LayerStack(Vec<Layer>);

impl Default for LayerStack {
    /// `["DRBD","STORAGE"]`: replicated, the product's default.
    fn default() -> Self {
        LayerStack(vec![Layer::Drbd, Layer::Storage])
    }
}

impl LayerStack {
    /// Parses user input: names in any case, a missing final STORAGE is appended. An empty
    /// list is refused: it says nothing, and reading it as `["STORAGE"]` would silently build
    /// an unreplicated, unencrypted volume.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, LayerStackError> {
        if names.is_empty() {
            return Err(LayerStackError::Empty);
        }
        let mut layers = names
            .iter()
            .map(|n| match n.as_ref().trim().to_ascii_uppercase().as_str() {
                "DRBD" => Ok(Layer::Drbd),
                "LUKS" => Ok(Layer::Luks),
                "STORAGE" => Ok(Layer::Storage),
                _ => Err(LayerStackError::UnknownLayer(n.as_ref().to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if layers.last() != Some(&Layer::Storage) {
            layers.push(Layer::Storage);
        }
        Self::from_layers(layers)
    }

    /// Accepts exactly one of the four valid stacks.
    pub fn from_layers(layers: Vec<Layer>) -> Result<Self, LayerStackError> {
        if VALID.contains(&layers.as_slice()) {
            Ok(LayerStack(layers))
        } else {
            let text = layers
                .iter()
                .map(|l| format!("{:?}", l.as_str()))
                .collect::<Vec<_>>();
            Err(LayerStackError::Unsupported(format!(
                "[{}]",
                text.join(",")
            )))
        }
    }

    /// Resolution, first that is set wins: the RD's stack, then its RG's, then the default.
    pub fn resolve(rd: Option<&LayerStack>, rg: Option<&LayerStack>) -> LayerStack {
        rd.or(rg).cloned().unwrap_or_default()
    }

    /// Topmost first.
    pub fn layers(&self) -> &[Layer] {
        &self.0
    }

    /// Bottom-up: the order in which apply provisions.
    pub fn bottom_up(&self) -> impl Iterator<Item = Layer> + '_ {
        self.0.iter().rev().copied()
    }

    /// Top-down: the order in which teardown runs.
    pub fn top_down(&self) -> impl Iterator<Item = Layer> + '_ {
        self.0.iter().copied()
    }

    pub fn has(&self, layer: Layer) -> bool {
        self.0.contains(&layer)
    }

    /// Upper-case names, topmost first, as shown in `effective_layer_stack`.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|l| l.as_str().to_owned()).collect()
    }
}

impl<'de> Deserialize<'de> for LayerStack {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        LayerStack::parse(&names).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for LayerStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|l| format!("{:?}", l.as_str())).collect();
        write!(f, "[{}]", names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(names: &[&str]) -> LayerStack {
        LayerStack::parse(names).unwrap()
    }

    #[test]
    fn layer_stack_resolution_rd_then_rg_then_default() {
        let rd = stack(&["LUKS", "STORAGE"]);
        let rg = stack(&["DRBD", "LUKS", "STORAGE"]);
        assert_eq!(LayerStack::resolve(Some(&rd), Some(&rg)), rd);
        assert_eq!(LayerStack::resolve(None, Some(&rg)), rg);
        assert_eq!(LayerStack::resolve(None, None), stack(&["DRBD", "STORAGE"]));
        assert_eq!(LayerStack::resolve(Some(&rd), None), rd);
    }

    #[test]
    fn names_are_case_insensitive_and_storage_is_appended() {
        assert_eq!(
            stack(&["drbd", "Luks"]).names(),
            ["DRBD", "LUKS", "STORAGE"]
        );
        assert_eq!(stack(&["storage"]).names(), ["STORAGE"]);
    }

    #[test]
    fn an_empty_stack_is_refused_not_read_as_storage() {
        let err = LayerStack::parse::<&str>(&[]).unwrap_err().to_string();
        assert!(err.starts_with("layer_stack:"), "{err}");
        assert!(err.contains(VALID_STACKS_TEXT), "{err}");
        let err = serde_json::from_str::<LayerStack>("[]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer_stack"), "{err}");
    }

    #[test]
    fn invalid_orderings_name_layer_stack_and_list_valid_ones() {
        for bad in [
            &["LUKS", "DRBD", "STORAGE"][..],
            &["DRBD", "DRBD", "STORAGE"],
            &["STORAGE", "LUKS"],
            &["STORAGE", "STORAGE"],
        ] {
            let err = LayerStack::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("layer_stack:"), "{err}");
            assert!(err.contains(VALID_STACKS_TEXT), "{err}");
        }
        let err = LayerStack::parse(&["ZFS"]).unwrap_err().to_string();
        assert!(err.contains("unknown layer \"ZFS\""), "{err}");
    }

    #[test]
    fn walks_bottom_up_and_top_down() {
        let s = stack(&["DRBD", "LUKS"]);
        assert_eq!(
            s.bottom_up().collect::<Vec<_>>(),
            [Layer::Storage, Layer::Luks, Layer::Drbd]
        );
        assert_eq!(
            s.top_down().collect::<Vec<_>>(),
            [Layer::Drbd, Layer::Luks, Layer::Storage]
        );
    }
}
