//! The tfplugin6 `Provider` service (stub; being filled in).

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use tonic::{Request, Response, Status};

/// The blockstor provider: decodes requests and dispatches them per resource type.
#[derive(Default)]
pub struct BlockstorProvider {}

impl BlockstorProvider {
    /// A provider with no configuration yet; does no I/O (Terraform starts one per phase).
    pub fn new() -> Self {
        Self::default()
    }
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Provider for BlockstorProvider {
    async fn get_metadata(&self, _request: Request<tf::get_metadata::Request>) -> Rpc<tf::get_metadata::Response> {
        Err(Status::unimplemented("get_metadata"))
    }

    async fn get_provider_schema(&self, _request: Request<tf::get_provider_schema::Request>) -> Rpc<tf::get_provider_schema::Response> {
        Err(Status::unimplemented("get_provider_schema"))
    }

    async fn validate_provider_config(&self, _request: Request<tf::validate_provider_config::Request>) -> Rpc<tf::validate_provider_config::Response> {
        Err(Status::unimplemented("validate_provider_config"))
    }

    async fn validate_resource_config(&self, _request: Request<tf::validate_resource_config::Request>) -> Rpc<tf::validate_resource_config::Response> {
        Err(Status::unimplemented("validate_resource_config"))
    }

    async fn validate_data_resource_config(&self, _request: Request<tf::validate_data_resource_config::Request>) -> Rpc<tf::validate_data_resource_config::Response> {
        Err(Status::unimplemented("validate_data_resource_config"))
    }

    async fn upgrade_resource_state(&self, _request: Request<tf::upgrade_resource_state::Request>) -> Rpc<tf::upgrade_resource_state::Response> {
        Err(Status::unimplemented("upgrade_resource_state"))
    }

    async fn configure_provider(&self, _request: Request<tf::configure_provider::Request>) -> Rpc<tf::configure_provider::Response> {
        Err(Status::unimplemented("configure_provider"))
    }

    async fn read_resource(&self, _request: Request<tf::read_resource::Request>) -> Rpc<tf::read_resource::Response> {
        Err(Status::unimplemented("read_resource"))
    }

    async fn plan_resource_change(&self, _request: Request<tf::plan_resource_change::Request>) -> Rpc<tf::plan_resource_change::Response> {
        Err(Status::unimplemented("plan_resource_change"))
    }

    async fn apply_resource_change(&self, _request: Request<tf::apply_resource_change::Request>) -> Rpc<tf::apply_resource_change::Response> {
        Err(Status::unimplemented("apply_resource_change"))
    }

    async fn import_resource_state(&self, _request: Request<tf::import_resource_state::Request>) -> Rpc<tf::import_resource_state::Response> {
        Err(Status::unimplemented("import_resource_state"))
    }

    async fn move_resource_state(&self, _request: Request<tf::move_resource_state::Request>) -> Rpc<tf::move_resource_state::Response> {
        Err(Status::unimplemented("move_resource_state"))
    }

    async fn read_data_source(&self, _request: Request<tf::read_data_source::Request>) -> Rpc<tf::read_data_source::Response> {
        Err(Status::unimplemented("read_data_source"))
    }

    async fn validate_ephemeral_resource_config(&self, _request: Request<tf::validate_ephemeral_resource_config::Request>) -> Rpc<tf::validate_ephemeral_resource_config::Response> {
        Err(Status::unimplemented("validate_ephemeral_resource_config"))
    }

    async fn open_ephemeral_resource(&self, _request: Request<tf::open_ephemeral_resource::Request>) -> Rpc<tf::open_ephemeral_resource::Response> {
        Err(Status::unimplemented("open_ephemeral_resource"))
    }

    async fn renew_ephemeral_resource(&self, _request: Request<tf::renew_ephemeral_resource::Request>) -> Rpc<tf::renew_ephemeral_resource::Response> {
        Err(Status::unimplemented("renew_ephemeral_resource"))
    }

    async fn close_ephemeral_resource(&self, _request: Request<tf::close_ephemeral_resource::Request>) -> Rpc<tf::close_ephemeral_resource::Response> {
        Err(Status::unimplemented("close_ephemeral_resource"))
    }

    async fn get_functions(&self, _request: Request<tf::get_functions::Request>) -> Rpc<tf::get_functions::Response> {
        Err(Status::unimplemented("get_functions"))
    }

    async fn call_function(&self, _request: Request<tf::call_function::Request>) -> Rpc<tf::call_function::Response> {
        Err(Status::unimplemented("call_function"))
    }

    async fn stop_provider(&self, _request: Request<tf::stop_provider::Request>) -> Rpc<tf::stop_provider::Response> {
        Err(Status::unimplemented("stop_provider"))
    }
}
