use std::fmt;

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
    pub(super) read_roles: Vec<String>,
    pub(super) write_roles: Vec<String>,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        let (granted, needed) = match permission {
            Permission::ReadQualifications => (self.granted_read, &self.read_roles),
            Permission::WriteQualifications => (self.granted_write, &self.write_roles),
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
