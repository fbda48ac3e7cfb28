//! Flow mobility at the LMA: draft-bernardos-mif-pmip-02 §4.2 (a policy/routing table next to
//! the binding cache), §4.4 (who decides: the LMA, the terminal, or both) and §5.3 (flow
//! identification by 6-tuple and flow routing), with the flow moves of RFC 7864 and the traffic
//! selectors of RFC 6088.
//!
//! This module owns the sans-IO part that the three steering modes of the Linux data plane share
//! (`learn`, `map`, `nfqueue`; DESIGN.md "Data plane on Linux"):
//!
//! - [`classify`]: a raw IP packet → its [`FlowKey`] (the 6-tuple), with IPv6 extension headers
//!   walked and fragments reassociated with their first fragment;
//! - [`table`]: the active flows, each with an RFC 6089 FID, its owner, route, counters, idle
//!   expiry, within a hard capacity;
//! - [`policy`]: ordered rules (selector → target), the tiers of who decides, validation of
//!   mobile node rules, and the decision;
//! - [`FlowSteering`] (in `steering`): the engine over all three, which takes the mobile nodes'
//!   attachments from the LMA, decides and re-decides flows (explicit moves, failover when an
//!   attachment goes, return when it comes back), enforces make-before-break for RFC 7864 moves,
//!   and emits [`SteeringIntent`]s as differences, in batches that apply atomically.
//!
//! It reads no clock and touches no socket: `now` comes with every input, and the outputs are
//! polled (`poll_batch`, `poll_timeout`). Given the same inputs it produces the same outputs
//! (all maps use a fixed-seed hasher; the split hash is fixed in [`policy::flow_hash`]).
//!
//! Wiring into the LMA (`lma::flows`): the LMA calls [`FlowSteering::update_mobile_node`]
//! whenever an MN's bindings change and [`FlowSteering::remove_mobile_node`] when its last one
//! goes; it turns each [`PrefixRequest`] into an RFC 7864 Update Notification (reason
//! FLOW-MOBILITY) to that MAG and reports the outcome (the MAG's prefixes in the next update, or
//! [`FlowSteering::prefix_refused`]); and it carries [`Steering`] to the data plane as
//! `common::Resource::Steering` inside the usual `Intent::Add`/`Remove`.

pub mod classify;
pub mod policy;
mod steering;
pub mod table;

pub use classify::{Classifier, ClassifyError, FlowKey, Fragment, IpVersion, PacketInfo, PortSource, classify};
pub use policy::{
    AttachmentView, Choice, Decision, Fallback, MnRuleLimits, OperatorRule, Policy, Route, Rule, RuleError, RuleRef,
    RuleRejection, Scope, TargetSpec, Tier,
};
pub use steering::{
    FlowConfig, FlowSteering, FlowSummary, MobileNodeError, MobileNodeView, MoveError, PrefixRequest, Steering,
    SteeringBatch, SteeringIntent, SteeringMode, SteeringStats, Verdict,
};
pub use table::{FlowCounters, FlowEntry, FlowHandle, FlowTable, KeyHash, Refusal};
