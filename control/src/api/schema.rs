//! OpenAPI shapes of types the API serialises but does not own (the dataplane's rule, mode
//! and action), mirroring their serde form exactly, plus list envelopes.

use serde::Serialize;
use utoipa::ToSchema;

/// Network mode.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Mode)]
pub enum ModeSchema {
    /// Learn.
    Discover,
    /// Alert.
    Monitor,
    /// Enforce.
    Protect,
}

/// Allow or deny.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Action)]
pub enum ActionSchema {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// A network rule.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Rule)]
pub struct RuleSchema {
    /// Id (learned rules from 10000).
    pub id: u32,
    /// Client group (or `external`, `nodes`, `containers`).
    pub from: String,
    /// Server group.
    pub to: String,
    /// `tcp/80`, `udp/53`, `tcp/8000-8080`, `icmp`, `any`; empty: any.
    pub ports: Vec<String>,
    /// Application names from DPI (`http`, `tls`, ...).
    pub apps: Vec<String>,
    /// Allow or deny.
    pub action: ActionSchema,
    /// Higher first.
    pub priority: i32,
    /// Learned in discover mode.
    pub learned: bool,
    /// Kept but not enforced.
    pub disabled: bool,
}
