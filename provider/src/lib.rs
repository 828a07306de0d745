//! The blockstor Terraform provider: a gRPC server speaking the Terraform plugin protocol v6
//! that acts as the controller of the blockstor agents.
//!
//! * [`plugin`]: go-plugin handshake, AutoMTLS, Shutdown/stdio/health services, logging.
//! * [`server`]: the tfplugin6 `Provider` service: decodes requests, dispatches per type.
//! * [`server5`]: tfplugin5 for older clients, an adapter over any tfplugin6 `Provider`.
//! * [`schema`], [`values`]: the Terraform schema and msgpack DynamicValue codec.
//! * [`resources`]: plan/apply/read/import of each resource and data source.
//! * [`controller`]: stack/passphrase resolution, placement, per-node DesiredResource.
//! * [`docs`]: the registry docs (`docs/`), rendered from the schema.
//! * [`transport`]: the `AgentClient` trait and its HTTP(S)/SSH implementations.

pub mod controller;
pub mod docs;
pub mod plugin;
pub mod resources;
pub mod schema;
pub mod server;
pub mod server5;
pub mod transport;
pub mod values;
