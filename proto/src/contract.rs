//! The agent API as one table (docs/design.md §4): every operation with its HTTP method and
//! path, its stdio `op`, what its request carries and what its success answer is. The agent's
//! HTTP router and stdio parser, and the provider's HTTP and SSH clients, are all built from
//! [`OPERATIONS`] and [`Operation`], so a new operation cannot reach one side and miss the other.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{
    DeleteOptions, Deleted, DesiredResource, NodeInfo, ObservedResource, PlannedSteps, StdioRequest,
};
use crate::ResourceName;

/// One operation of the agent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Node,
    Apply,
    Plan,
    Get,
    Delete,
    List,
}

/// The HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

/// What a request carries besides the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing.
    None,
    /// A resource name: `{rd}` in the path, `name` on the stdio line.
    Name,
    /// A [`DesiredResource`]: the HTTP body (its name equal to `{rd}`), `resource` on the
    /// stdio line.
    Resource,
    /// A resource name and [`DeleteOptions`]: `{rd}` in the path and the options as an
    /// optional HTTP body (absent or empty: the defaults); `name` on the stdio line with the
    /// options' fields next to it.
    NameAndDeleteOptions,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub op: Op,
    pub method: Method,
    /// The path, `{rd}` where the resource name goes (axum's pattern syntax).
    pub path: &'static str,
    /// The `op` of the stdio request line.
    pub stdio: &'static str,
    pub input: Input,
    /// The success answer's type (the same JSON over HTTP and stdio).
    pub output: &'static str,
}

/// Every operation; the stdio error message lists them in this order.
pub const OPERATIONS: [Spec; 6] = [
    Spec {
        op: Op::Node,
        method: Method::Get,
        path: "/v1/node",
        stdio: "node",
        input: Input::None,
        output: "NodeInfo",
    },
    Spec {
        op: Op::Apply,
        method: Method::Put,
        path: "/v1/resources/{rd}",
        stdio: "apply",
        input: Input::Resource,
        output: "ObservedResource",
    },
    Spec {
        op: Op::Plan,
        method: Method::Post,
        path: "/v1/resources/{rd}/plan",
        stdio: "plan",
        input: Input::Resource,
        output: "PlannedSteps",
    },
    Spec {
        op: Op::Get,
        method: Method::Get,
        path: "/v1/resources/{rd}",
        stdio: "get",
        input: Input::Name,
        output: "ObservedResource",
    },
    Spec {
        op: Op::Delete,
        method: Method::Delete,
        path: "/v1/resources/{rd}",
        stdio: "delete",
        input: Input::NameAndDeleteOptions,
        output: "Deleted",
    },
    Spec {
        op: Op::List,
        method: Method::Get,
        path: "/v1/resources",
        stdio: "list",
        input: Input::None,
        output: "Vec<ObservedResource>",
    },
];

impl Op {
    /// This operation's row of [`OPERATIONS`].
    pub fn spec(self) -> &'static Spec {
        OPERATIONS
            .iter()
            .find(|s| s.op == self)
            .expect("every Op has a row")
    }

    /// The operation a stdio `op` names.
    pub fn from_stdio(op: &str) -> Option<Op> {
        OPERATIONS.iter().find(|s| s.stdio == op).map(|s| s.op)
    }

    /// The HTTP path for resource `rd` (ignored by operations without `{rd}`).
    pub fn path(self, rd: Option<&ResourceName>) -> String {
        let path = self.spec().path;
        match rd {
            Some(rd) => path.replace("{rd}", rd.as_str()),
            None => path.to_owned(),
        }
    }
}

impl StdioRequest {
    /// The operation this request line asks for.
    pub fn op(&self) -> Op {
        match self {
            StdioRequest::Node => Op::Node,
            StdioRequest::Apply { .. } => Op::Apply,
            StdioRequest::Plan { .. } => Op::Plan,
            StdioRequest::Get { .. } => Op::Get,
            StdioRequest::Delete { .. } => Op::Delete,
            StdioRequest::List => Op::List,
        }
    }

    /// The request of an [`Input::None`] operation.
    pub fn bare(op: Op) -> Option<StdioRequest> {
        match op {
            Op::Node => Some(StdioRequest::Node),
            Op::List => Some(StdioRequest::List),
            _ => None,
        }
    }

    /// The request of an [`Input::Name`] operation.
    pub fn named(op: Op, name: ResourceName) -> Option<StdioRequest> {
        match op {
            Op::Get => Some(StdioRequest::Get { name }),
            _ => None,
        }
    }

    /// The request of an [`Input::NameAndDeleteOptions`] operation.
    pub fn with_delete_options(
        op: Op,
        name: ResourceName,
        options: DeleteOptions,
    ) -> Option<StdioRequest> {
        match op {
            Op::Delete => Some(StdioRequest::Delete { name, options }),
            _ => None,
        }
    }

    /// The request of an [`Input::Resource`] operation.
    pub fn with_resource(op: Op, resource: DesiredResource) -> Option<StdioRequest> {
        match op {
            Op::Apply => Some(StdioRequest::Apply { resource }),
            Op::Plan => Some(StdioRequest::Plan { resource }),
            _ => None,
        }
    }
}

/// The typed side of an operation, for clients: which row it is and what its answer decodes to.
pub trait Operation {
    const OP: Op;
    type Response: Serialize + DeserializeOwned;
}

/// One marker type per operation, for [`Operation`].
pub mod ops {
    use super::*;

    macro_rules! operation {
        ($name:ident, $response:ty) => {
            #[doc = concat!("[`Op::", stringify!($name), "`]")]
            pub struct $name;
            impl Operation for $name {
                const OP: Op = Op::$name;
                type Response = $response;
            }
        };
    }

    operation!(Node, NodeInfo);
    operation!(Apply, ObservedResource);
    operation!(Plan, PlannedSteps);
    operation!(Get, ObservedResource);
    operation!(Delete, Deleted);
    operation!(List, Vec<ObservedResource>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_one_row_with_its_own_stdio_name() {
        for s in &OPERATIONS {
            assert_eq!(s.op.spec(), s);
            assert_eq!(Op::from_stdio(s.stdio), Some(s.op));
            assert_eq!(s.path.contains("{rd}"), s.input != Input::None, "{s:?}");
        }
        let mut routes: Vec<_> = OPERATIONS
            .iter()
            .map(|s| (s.path, s.method as u8))
            .collect();
        routes.sort_unstable();
        routes.dedup();
        assert_eq!(routes.len(), OPERATIONS.len(), "two ops share a route");
    }

    #[test]
    fn paths_and_request_lines_are_the_ones_agents_serve() {
        let rd: ResourceName = "db".parse().unwrap();
        assert_eq!(Op::Node.path(None), "/v1/node");
        assert_eq!(Op::List.path(None), "/v1/resources");
        assert_eq!(Op::Get.path(Some(&rd)), "/v1/resources/db");
        assert_eq!(Op::Plan.path(Some(&rd)), "/v1/resources/db/plan");
        let delete = StdioRequest::with_delete_options(Op::Delete, rd, DeleteOptions::default());
        let line = serde_json::to_string(&delete.unwrap()).unwrap();
        assert_eq!(line, r#"{"op":"delete","name":"db"}"#);
        let back: StdioRequest = serde_json::from_str(&line).unwrap();
        assert_eq!(back.op(), Op::Delete);
        assert_eq!(Op::from_stdio("bogus"), None);
    }
}
