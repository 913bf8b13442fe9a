//! Validation and resolution of `discovery.kubernetes` (defaults, `${ENV}`).
//! Placeholder: filled in by the discovery work.

use crate::discovery::{DiscoveryConfig, KubernetesDiscovery};
use crate::error::Errors;

pub(crate) fn validate(_d: &DiscoveryConfig, _errors: &mut Errors) {}

/// Checks a `service_name` against the discovery mode.
pub fn check_service_name(_k: &KubernetesDiscovery, _name: &str) -> Result<(), String> {
    Ok(())
}
