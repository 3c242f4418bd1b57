use std::fmt;
use std::sync::Arc;

use super::AuthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadQualifications,
    WriteQualifications,
}

/// Who is calling, as the verified token says; kept for the request span and the audit trail.
#[derive(Debug, Clone)]
pub struct Caller {
    pub issuer: String,
    /// `oid` when present (stable across apps), else `sub`.
    pub subject: String,
    /// `azp` (v2 tokens) or `appid` (v1 tokens).
    pub app_id: Option<String>,
    pub name: Option<String>,
    pub(super) granted_read: bool,
    pub(super) granted_write: bool,
    /// Shared with the verifier: named in a 403, never copied per request.
    pub(super) policy: Arc<RolePolicy>,
}

/// Which roles or scopes allow each permission; any one of a list suffices.
#[derive(Debug)]
pub struct RolePolicy {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        let (granted, needed) = match permission {
            Permission::ReadQualifications => (self.granted_read, &self.policy.read),
            Permission::WriteQualifications => (self.granted_write, &self.policy.write),
        };
        if granted {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                needed: needed.clone(),
            })
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub={}", self.subject)?;
        if let Some(app) = &self.app_id {
            write!(f, " app={app}")?;
        }
        Ok(())
    }
}
