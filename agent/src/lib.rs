//! blockstor node agent: builds STORAGE, LUKS (and DRBD) layers on its node (docs/design.md §4–§7).
//!
//! * [`api`]: HTTP and stdio front ends over one set of handlers.
//! * [`engine`]: walks the layer stack; validation, locks, journal.
//! * [`layers`], [`backends`]: what each layer and storage backend does, as commands, through
//!   [`step`] (journal, plan log; all a backend sees of a request).
//! * [`runner`]: the only place a process is spawned. [`host`]: plain file access and the
//!   loop devices the agent attaches itself ([`loopdev`]).
//! * [`store`]: the redb store (records, journal) and per-resource locks. [`config`]: TOML.
//! * [`linstor`]: recognising chains LINSTOR built (names, its `.res` files).
//! * [`redact`]: the one point every error of a request passes through, which removes its secrets.

pub mod api;
pub mod backends;
pub mod check;
pub mod config;
pub mod crash;
pub mod engine;
pub mod error;
pub mod host;
pub mod inuse;
pub mod layers;
pub mod linstor;
pub mod loopdev;
pub mod redact;
pub mod runner;
pub mod step;
pub mod store;
