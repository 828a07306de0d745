//! The blockstor Terraform provider: a gRPC server speaking the Terraform plugin protocol v6
//! that acts as the controller of the blockstor agents.
//!
//! * [`plugin`]: go-plugin handshake, AutoMTLS, Shutdown/stdio/health services, logging.
//! * [`server`]: the tfplugin6 `Provider` service: the codec, and a lookup of each type by name.
//! * [`server5`]: tfplugin5 for older clients, an adapter over any tfplugin6 `Provider`.
//! * [`schema`], [`values`]: the Terraform schema types and msgpack DynamicValue codec.
//! * [`resources`]: one folder per resource and data source (schema, validate, plan, apply,
//!   read, import) behind one trait, and the registry of them by type name.
//! * [`controller`]: stack/passphrase resolution, placement, per-node DesiredResource.
//! * [`transport`]: the `AgentClient` trait and its HTTP(S)/SSH implementations.

pub mod controller;
pub mod plugin;
pub mod resources;
pub mod schema;
pub mod server;
pub mod server5;
pub mod transport;
pub mod values;
