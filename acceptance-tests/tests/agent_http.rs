//! The agent a user starts answers with the token and refuses without it.

use acceptance_tests::{require, AgentConfig, AgentProcess, Requirement, Workspace};

#[test]
fn agent_reports_its_node_and_pool_and_refuses_requests_without_the_token() {
    if !require(&[Requirement::Root, Requirement::AgentBinary]) {
        return;
    }
    let ws = Workspace::new();
    let agent = AgentProcess::start(&ws.path().join("agent"), AgentConfig::default());

    let (status, body) = agent.get("/v1/node").expect("GET /v1/node");
    assert_eq!(status, 200, "{body}");
    let node: serde_json::Value = serde_json::from_str(&body).expect("node info is JSON");
    assert_eq!(node["name"], "n1", "{node:#}");
    let pools = node["pools"].as_array().expect("pools list");
    assert!(
        pools.iter().any(|p| p["name"] == "files"),
        "the loop-file pool is reported: {node:#}"
    );

    for path in ["/v1/node", "/v1/resources"] {
        let (status, body) = agent.get_without_token(path).expect("GET without token");
        assert_eq!(
            status, 401,
            "GET {path} without a token must be refused: {body}"
        );
        assert!(
            !body.contains(agent.token()),
            "the refusal must not echo the token"
        );
    }
}
