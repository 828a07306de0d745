//! A refresh cache in front of one agent client: the first `get` of a provider process asks the
//! agent for everything it has (`GET /v1/resources`, one request) and answers the `get` of every
//! resource from that list.
//!
//! Why: `terraform plan` refreshes every resource with its own ReadResource call, so N resources
//! cost N agent requests, each re-observing the node; one list costs one request. Terraform
//! starts a new provider process for every command, so the list is never older than the command
//! that uses it. A resource this process applies or deletes is read from the agent again from
//! then on (its entry in the list is stale). When the list fails, every `get` goes to the agent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use blockstor_proto::wire::{
    DeleteOptions, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
};
use blockstor_proto::{NodeName, ResourceName};
use tokio::sync::OnceCell;

use super::client::{AgentClient, TransportError};

/// What the node had when it was first asked; `None` when the list failed.
type Snapshot = Option<HashMap<ResourceName, ObservedResource>>;

/// An [`AgentClient`] that answers `get` from one `list` per process.
pub struct ListCached {
    inner: Arc<dyn AgentClient>,
    snapshot: OnceCell<Snapshot>,
    /// Resources changed by this process since the snapshot: always read live.
    changed: Mutex<HashSet<ResourceName>>,
}

impl ListCached {
    /// Wraps `inner`; no request is made until the first `get`.
    pub fn new(inner: Arc<dyn AgentClient>) -> Self {
        ListCached {
            inner,
            snapshot: OnceCell::new(),
            changed: Mutex::new(HashSet::new()),
        }
    }

    fn mark_changed(&self, name: &ResourceName) {
        self.changed
            .lock()
            .expect("changed set poisoned")
            .insert(name.clone());
    }

    fn is_changed(&self, name: &ResourceName) -> bool {
        self.changed
            .lock()
            .expect("changed set poisoned")
            .contains(name)
    }

    async fn snapshot(&self) -> &Snapshot {
        self.snapshot
            .get_or_init(|| async {
                match self.inner.list().await {
                    Ok(all) => Some(all.into_iter().map(|o| (o.name.clone(), o)).collect()),
                    Err(e) => {
                        tracing::debug!(node = %self.inner.node(), error = %e,
                            "listing resources failed; reading them one by one");
                        None
                    }
                }
            })
            .await
    }
}

#[async_trait]
impl AgentClient for ListCached {
    fn node(&self) -> &NodeName {
        self.inner.node()
    }

    async fn node_info(&self) -> Result<NodeInfo, TransportError> {
        self.inner.node_info().await
    }

    async fn apply(&self, desired: &DesiredResource) -> Result<ObservedResource, TransportError> {
        // Marked before the call: also a failed apply may have changed the node.
        self.mark_changed(&desired.name);
        self.inner.apply(desired).await
    }

    async fn plan(&self, desired: &DesiredResource) -> Result<PlannedSteps, TransportError> {
        self.inner.plan(desired).await
    }

    async fn get(&self, name: &ResourceName) -> Result<Option<ObservedResource>, TransportError> {
        if !self.is_changed(name) {
            if let Some(all) = self.snapshot().await {
                // The changed set is checked again: an apply may have started meanwhile.
                if !self.is_changed(name) {
                    return Ok(all.get(name).cloned());
                }
            }
        }
        self.inner.get(name).await
    }

    async fn delete(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<(), TransportError> {
        self.mark_changed(name);
        self.inner.delete(name, options).await
    }

    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
        self.inner.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts requests; holds resources `a` and `b`.
    struct Counting {
        node: NodeName,
        lists: AtomicUsize,
        gets: AtomicUsize,
        list_fails: bool,
    }

    fn observed(name: &str, node: &NodeName) -> ObservedResource {
        serde_json::from_value(serde_json::json!({
            "name": name, "node": node.as_str(), "generation": 1,
            "layer_stack": ["STORAGE"], "volumes": []
        }))
        .unwrap()
    }

    #[async_trait]
    impl AgentClient for Counting {
        fn node(&self) -> &NodeName {
            &self.node
        }
        async fn node_info(&self) -> Result<NodeInfo, TransportError> {
            unimplemented!()
        }
        async fn apply(&self, d: &DesiredResource) -> Result<ObservedResource, TransportError> {
            Ok(observed(d.name.as_str(), &self.node))
        }
        async fn plan(&self, _: &DesiredResource) -> Result<PlannedSteps, TransportError> {
            unimplemented!()
        }
        async fn get(&self, n: &ResourceName) -> Result<Option<ObservedResource>, TransportError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(Some(observed(n.as_str(), &self.node)))
        }
        async fn delete(&self, _: &ResourceName, _: &DeleteOptions) -> Result<(), TransportError> {
            Ok(())
        }
        async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            if self.list_fails {
                return Err(TransportError::Unreachable {
                    node: self.node.clone(),
                    message: "down".into(),
                });
            }
            Ok(vec![observed("aa", &self.node), observed("bb", &self.node)])
        }
    }

    fn counting(list_fails: bool) -> Arc<Counting> {
        Arc::new(Counting {
            node: "n1".parse().unwrap(),
            lists: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            list_fails,
        })
    }

    #[tokio::test]
    async fn many_gets_cost_one_list_and_absent_resources_read_as_none() {
        let inner = counting(false);
        let c = ListCached::new(inner.clone());
        for _ in 0..3 {
            assert!(c.get(&"aa".parse().unwrap()).await.unwrap().is_some());
            assert!(c.get(&"bb".parse().unwrap()).await.unwrap().is_some());
        }
        assert!(c.get(&"zz".parse().unwrap()).await.unwrap().is_none());
        assert_eq!(inner.lists.load(Ordering::SeqCst), 1);
        assert_eq!(inner.gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_resource_deleted_by_this_process_is_read_live_again() {
        let inner = counting(false);
        let c = ListCached::new(inner.clone());
        let a: ResourceName = "aa".parse().unwrap();
        c.get(&a).await.unwrap();
        c.delete(&a, &DeleteOptions::default()).await.unwrap();
        c.get(&a).await.unwrap();
        assert_eq!(inner.gets.load(Ordering::SeqCst), 1, "aa after delete");
        c.get(&"bb".parse().unwrap()).await.unwrap();
        assert_eq!(
            inner.gets.load(Ordering::SeqCst),
            1,
            "bb still from the list"
        );
    }

    #[tokio::test]
    async fn when_the_list_fails_every_get_asks_the_agent() {
        let inner = counting(true);
        let c = ListCached::new(inner.clone());
        c.get(&"aa".parse().unwrap()).await.unwrap();
        c.get(&"bb".parse().unwrap()).await.unwrap();
        assert_eq!(inner.lists.load(Ordering::SeqCst), 1, "tried once");
        assert_eq!(inner.gets.load(Ordering::SeqCst), 2);
    }
}
