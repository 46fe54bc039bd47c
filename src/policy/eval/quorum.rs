//! Approval quorums: which approvals count towards a rule's quorum (each principal once, never
//! the requester, only holders of the quorum's roles) and whether it is met.

use serde::Serialize;

use super::join;
use crate::policy::model::{Policy, Quorum};

/// Who counts towards a quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuorumStatus {
    /// Distinct approvers that count.
    pub counted: Vec<String>,
    /// Approvals that do not count, and why.
    pub ignored: Vec<(String, String)>,
    /// Whether `counted.len() >= quorum.count`.
    pub met: bool,
}

impl Policy {
    /// Counts approvals: each principal once, never the requester, only holders of the quorum's
    /// roles.
    pub fn quorum_status(
        &self,
        quorum: &Quorum,
        requester: &str,
        approvers: &[String],
    ) -> QuorumStatus {
        let mut counted: Vec<String> = Vec::new();
        let mut ignored = Vec::new();
        for a in approvers {
            if a == requester {
                ignored.push((
                    a.clone(),
                    "the requester never approves its own request".into(),
                ));
            } else if counted.contains(a) {
                ignored.push((a.clone(), "already counted once".into()));
            } else if !self.roles_of(a).iter().any(|r| quorum.roles.contains(*r)) {
                ignored.push((
                    a.clone(),
                    format!("holds none of the roles {}", join(&quorum.roles)),
                ));
            } else {
                counted.push(a.clone());
            }
        }
        let met = counted.len() >= quorum.count as usize;
        QuorumStatus {
            counted,
            ignored,
            met,
        }
    }
}
