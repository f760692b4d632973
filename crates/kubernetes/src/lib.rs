//! The Kubernetes runtime: an environment is a namespace on a cluster, each resource the objects
//! `preview-manifests` renders for it.
//!
//! Every object is written by server-side apply under the field manager `preview`, forcing only on objects
//! `preview` made (a field another manager owns fails the step, naming the manager and the field). A resource is
//! done when its objects are ready by the kstatus rules (`readiness.rs`), waited for with watches under a timeout; a
//! rollout that cannot succeed fails at once with the pod's reason and the last events. Which objects a resource
//! made is kept in an inventory on the cluster (`inventory.rs`: kind, namespace, name and uid, written before the
//! objects are), so that objects leaving the desired set are deleted by uid — never found by a label selector — and
//! a daemon that crashed half-way knows what it made. A space's removal deletes the namespace and waits for its uid
//! to disappear, reporting what holds it when it does not (`teardown.rs`).
//!
//! This crate knows the engine only through [`preview_deploy::Runtime`]; it never reads the spec.

mod access;
mod apply;
mod check;
mod clusters;
mod connect;
mod data;
mod diagnose;
mod inventory;
mod job_output;
mod readiness;
mod runtime;
mod teardown;
mod tunnel;
mod values;
mod views;
mod wait;

pub use check::{ClusterReport, check_cluster};
pub use clusters::{Clusters, DEFAULT_CLUSTER};
pub use connect::{ClusterConfig, connect, inline_credentials_only};
pub use readiness::{Readiness, readiness};
pub use runtime::{CertificateIssuer, KubernetesOptions, KubernetesRuntime, render_redacted};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "preview";
