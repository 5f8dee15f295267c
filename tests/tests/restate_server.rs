//! The Restate server the scale-out backend runs on: the pinned version
//! installs from the npm registry and serves on loopback.

use minllm_integration_tests::restate::RestateServer;

#[test]
fn the_pinned_restate_server_installs_and_serves_on_loopback() {
    let server = RestateServer::start();
    let (status, _) = server.get(&server.admin, "/health").expect("the admin API answers");
    assert_eq!(status, 200);
    // No service is registered yet: the admin API lists none.
    let (status, body) = server.get(&server.admin, "/services").expect("the admin API lists services");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"services\":[]"), "{body}");
    // The ingress answers too, and knows no service.
    let (status, _) = server.post(&server.ingress, "/Nothing/run", "{}").expect("the ingress answers");
    assert_eq!(status, 404);
}
