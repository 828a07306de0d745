//! Generates the Terraform plugin protocol code (tfplugin6, tfplugin5 and go-plugin's services) when the
//! `tfplugin` feature is on. Without it this script does nothing, so crates that only need the
//! agent contracts never compile protobuf tooling or tonic.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TFPLUGIN").is_some() {
        #[cfg(feature = "tfplugin")]
        tfplugin::generate();
    }
}

#[cfg(feature = "tfplugin")]
mod tfplugin {
    const PROTOS: [&str; 4] = [
        "proto/tfplugin6.proto",
        "proto/tfplugin5.proto",
        "proto/grpc_controller.proto",
        "proto/grpc_stdio.proto",
    ];

    /// Parses the .proto files with protox (it ships google/protobuf/{timestamp,empty}.proto)
    /// and generates prost messages plus tonic servers and clients. Clients are generic over
    /// the transport (`build_transport(false)`), so this crate needs no tonic transport stack.
    pub fn generate() {
        for proto in PROTOS {
            println!("cargo:rerun-if-changed={proto}");
        }
        let descriptors = match protox::compile(PROTOS, ["proto"]) {
            Ok(descriptors) => descriptors,
            Err(err) => panic!("cannot parse the plugin protocol .proto files: {err:?}"),
        };
        if let Err(err) = tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .build_transport(false)
            // RPCs a provider does not override answer UNIMPLEMENTED, which Terraform handles for
            // every post-6.0 RPC (GetMetadata, functions, ephemeral resources, MoveResourceState).
            .generate_default_stubs(true)
            .emit_rerun_if_changed(false)
            .compile_fds(descriptors)
        {
            panic!("cannot generate Rust code for the plugin protocol: {err}");
        }
    }
}
