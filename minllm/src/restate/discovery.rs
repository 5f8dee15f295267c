//! What Restate learns of a flow's services when they are registered: their
//! handlers, and the tuning of [`RestateFlow`](super::RestateFlow).

use restate_sdk::discovery;
use restate_sdk::prelude::Json;

use super::{Tuning, millis};

/// What Restate learns of the workflow when it is registered.
pub(super) fn workflow_discovery(name: &str, tuning: Tuning) -> Result<discovery::Service, String> {
    let json = discovery::InputPayload::from_metadata::<Json<serde_json::Value>>;
    let handlers = vec![
        handler("run", Some(discovery::HandlerType::Workflow), json())?,
        handler("status", Some(discovery::HandlerType::Shared), discovery::InputPayload::empty())?,
        handler("answer", Some(discovery::HandlerType::Shared), json())?,
        handler("events", Some(discovery::HandlerType::Shared), optional_json())?,
    ];
    let mut workflow = service(name, discovery::ServiceType::Workflow, handlers, tuning)?;
    if let Some(run) = workflow.handlers.first_mut() {
        run.workflow_completion_retention = tuning.retention.and_then(millis);
    }
    Ok(workflow)
}

/// A JSON input that may be left out.
fn optional_json() -> discovery::InputPayload {
    discovery::InputPayload {
        required: Some(false),
        ..discovery::InputPayload::from_metadata::<Json<serde_json::Value>>()
    }
}

/// What Restate learns of the items' service when it is registered.
pub(super) fn items_discovery(name: &str, tuning: Tuning) -> Result<discovery::Service, String> {
    let input = discovery::InputPayload::from_metadata::<Json<serde_json::Value>>();
    service(name, discovery::ServiceType::Service, vec![handler("item", None, input)?], tuning)
}

/// A handler taking `input` and answering JSON.
fn handler(
    name: &str,
    ty: Option<discovery::HandlerType>,
    input: discovery::InputPayload,
) -> Result<discovery::Handler, String> {
    Ok(discovery::Handler {
        name: discovery::HandlerName::try_from(name.to_owned()).map_err(|e| e.to_string())?,
        input: Some(input),
        output: Some(discovery::OutputPayload::from_metadata::<Json<serde_json::Value>>()),
        ty,
        documentation: None,
        metadata: Default::default(),
        abort_timeout: None,
        inactivity_timeout: None,
        journal_retention: None,
        idempotency_retention: None,
        workflow_completion_retention: None,
        enable_lazy_state: None,
        ingress_private: None,
        retry_policy_initial_interval: None,
        retry_policy_max_interval: None,
        retry_policy_max_attempts: None,
        retry_policy_exponentiation_factor: None,
        retry_policy_on_max_attempts: None,
    })
}

/// A service of type `ty` named `name` (the flow's name, checked here),
/// tuned as `tuning` says.
fn service(
    name: &str,
    ty: discovery::ServiceType,
    handlers: Vec<discovery::Handler>,
    tuning: Tuning,
) -> Result<discovery::Service, String> {
    Ok(discovery::Service {
        ty,
        name: discovery::ServiceName::try_from(name.to_owned())
            .map_err(|e| format!("flow `{name}` cannot be a Restate service name: {e}"))?,
        handlers,
        documentation: None,
        metadata: Default::default(),
        abort_timeout: None,
        inactivity_timeout: tuning.inactivity.and_then(millis),
        journal_retention: tuning.retention.and_then(millis),
        idempotency_retention: None,
        enable_lazy_state: None,
        ingress_private: None,
        retry_policy_initial_interval: tuning.backoff.and_then(|(first, _)| millis(first)),
        retry_policy_max_interval: tuning.backoff.and_then(|(_, most)| millis(most)),
        retry_policy_max_attempts: None,
        retry_policy_exponentiation_factor: None,
        retry_policy_on_max_attempts: None,
    })
}
