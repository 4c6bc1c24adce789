//! The Mender device-API backend of the agent: which request each call
//! sends and what its answer means.
//!
//! | call | request | success | other answers |
//! |---|---|---|---|
//! | authenticate | `POST /api/devices/v1/authentication/auth_requests` (body signed, `Bearer <tenant token>`) | 200, body = JWT | 401: not accepted (pending or rejected); each server in turn |
//! | inventory | `PUT /api/devices/v1/inventory/device/attributes` | 200 / 204 | 405: `PATCH` from then on |
//! | next | `POST /api/devices/v2/deployments/device/deployments/next` | 200 (instructions) / 204 (none) | 404: `GET` v1 `...next?artifact_name=&device_type=` from then on |
//! | status | `PUT .../deployments/{id}/status` | 200 / 204 | 409: the deployment was aborted |
//! | log | `PUT .../deployments/{id}/log` | 200 / 204 | 409: aborted |
//! | update control map | `GET /api/devices/v2/deployments/device/deployments/{id}/update_control_map` | 200, body `{"update_control_map": {...}}` | 404: the deployment is gone (aborted) |
//!
//! Every call but authentication carries the JWT. A 401 or a transport
//! error on the first try clears the JWT, authenticates again and retries
//! once (the reference's `ReauthorizingClient`). The JWT is otherwise kept
//! for the process's life: no authentication before each report.

use super::types::Method;
use crate::protocol::deployments::DeploymentStatus;

/// The device-API calls the agent makes (authentication aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Inventory,
    Next,
    Status(DeploymentStatus),
    Log,
    /// `GET` the deployment's Update Control Map (Enterprise).
    ControlMap,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// 2xx (for `next`: 204, no update).
    Ok,
    /// `next` answered 200 with valid instructions (stored by the agent).
    Update,
    /// The device is not authorized (pending, rejected, or 401 twice).
    Unauthorized,
    /// 409: the deployment was aborted on the server.
    Aborted,
    /// Anything else; the reason is in the agent's message.
    Failed,
}

pub(super) const AUTH_PATH: &str = "/api/devices/v1/authentication/auth_requests";
pub(super) const INVENTORY_PATH: &str = "/api/devices/v1/inventory/device/attributes";
pub(super) const NEXT_V2_PATH: &str = "/api/devices/v2/deployments/device/deployments/next";
pub(super) const NEXT_V1_PATH: &str = "/api/devices/v1/deployments/device/deployments/next";
pub(super) const DEPLOYMENTS_PATH: &str = "/api/devices/v1/deployments/device/deployments/";
pub(super) const DEPLOYMENTS_V2_PATH: &str = "/api/devices/v2/deployments/device/deployments/";

/// What a call's answer means, by status code (the body of a 200 `next`
/// is parsed by the caller).
pub(super) fn classify(call: Call, status: u16) -> Reply {
    match (call, status) {
        (Call::Next, 204) => Reply::Ok,
        (Call::Next, 200) => Reply::Update,
        (_, 200 | 204) => Reply::Ok,
        (Call::Status(_) | Call::Log, 409) => Reply::Aborted,
        // The deployment is gone (the reference: aborted).
        (Call::ControlMap, 404) => Reply::Aborted,
        (_, 401) => Reply::Unauthorized,
        _ => Reply::Failed,
    }
}

/// The method of a call.
pub(super) fn method(call: Call, patch_inventory: bool, next_v2: bool) -> Method {
    match call {
        Call::Inventory if patch_inventory => Method::Patch,
        Call::Inventory => Method::Put,
        Call::Next if next_v2 => Method::Post,
        Call::Next => Method::Get,
        Call::Status(_) | Call::Log => Method::Put,
        Call::ControlMap => Method::Get,
    }
}

/// A deployment id is put into request paths: only the characters of the
/// server's ids (UUIDs) are accepted, so an id can never change the path.
pub(super) fn valid_deployment_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(classify(Call::Next, 204), Reply::Ok);
        assert_eq!(classify(Call::Next, 200), Reply::Update);
        assert_eq!(classify(Call::Next, 401), Reply::Unauthorized);
        assert_eq!(
            classify(Call::Status(DeploymentStatus::Success), 409),
            Reply::Aborted
        );
        assert_eq!(classify(Call::Inventory, 409), Reply::Failed);
        assert_eq!(classify(Call::Inventory, 500), Reply::Failed);
    }

    #[test]
    fn ids() {
        assert!(valid_deployment_id("0d4f0e0a-7b5c-4a3e-9d1a-2b3c4d5e6f70"));
        assert!(!valid_deployment_id("../x"));
        assert!(!valid_deployment_id("a/b"));
        assert!(!valid_deployment_id("a?b"));
        assert!(!valid_deployment_id(""));
        assert!(!valid_deployment_id(".."));
    }
}
