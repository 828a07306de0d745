//! `terraform-provider-blockstor`: started by Terraform, never by hand. Checks the go-plugin
//! magic cookie before anything else, then serves the provider over the plugin protocol.

use std::process::ExitCode;

use terraform_provider_blockstor::plugin::{self, handshake};
use terraform_provider_blockstor::server::BlockstorProvider;

fn main() -> ExitCode {
    // First, before any other I/O: a person running the binary gets one line telling them how
    // to use it, and nothing touches stdout.
    let cookie = std::env::var(handshake::MAGIC_COOKIE_KEY).ok();
    if let Err(err) = handshake::check_magic_cookie(cookie.as_deref()) {
        eprintln!("{err}");
        return ExitCode::FAILURE;
    }
    plugin::log::init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "[plugin.runtime] cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(plugin::serve(BlockstorProvider::new()));
    // Do not wait for stray tasks (e.g. an agent call Terraform abandoned) nor for idle
    // blocking threads: Terraform waits for the process to exit after Shutdown, on every phase.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the plugin server stopped with an error");
            ExitCode::FAILURE
        }
    }
}
