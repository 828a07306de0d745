//! Contracts shared by the blockstor provider and agent, and nothing else.
//!
//! * [`names`], [`size`], [`layer_stack`]: validated value types. A value that exists is valid
//!   (parse, don't validate), so an unchecked name can never reach a path, a device name or argv.
//! * [`wire`]: the JSON documents exchanged between provider and agent (DESIGN.md §4).

pub mod layer_stack;
pub mod names;
pub mod size;
pub mod wire;

pub use layer_stack::{Layer, LayerStack, LayerStackError};
pub use names::{NameError, NodeName, ResourceName, StoragePoolName};
pub use size::{Size, SizeError};
