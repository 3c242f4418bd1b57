use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::AuthError;
use crate::configuration::{AccessRule, CallerAuthSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadQualifications,
    WriteQualifications,
    /// Read every app's qualification requests, not only the caller's app's.
    AuditQualifications,
}

/// Who is calling, as the verified token says; on the request span and, for the audit
/// trail, in every handler that takes it.
/// Cheap to clone (shared strings): every request clones its caller out of the verified-token
/// cache and into its extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub issuer: Arc<str>,
    /// `oid` when present (stable across apps), else `sub`.
    pub subject: Arc<str>,
    /// `azp` (v2 tokens) or `appid` (v1 tokens).
    pub app_id: Option<Arc<str>>,
    pub name: Option<Arc<str>>,
    granted_read: bool,
    granted_write: bool,
    granted_audit: bool,
    /// Shared with the verifier: named in a 403, never copied per request.
    policy: Arc<AccessPolicy>,
}

/// Which app roles or delegated scopes allow each operation; any one suffices.
#[derive(Debug)]
pub struct AccessPolicy {
    read: AccessRule,
    write: AccessRule,
    audit: AccessRule,
}

impl AccessPolicy {
    pub fn from_settings(settings: &CallerAuthSettings) -> Self {
        Self {
            read: settings.read.clone(),
            write: settings.write.clone(),
            audit: settings.audit.clone(),
        }
    }

    fn rule(&self, permission: Permission) -> &AccessRule {
        match permission {
            Permission::ReadQualifications => &self.read,
            Permission::WriteQualifications => &self.write,
            Permission::AuditQualifications => &self.audit,
        }
    }
}

/// The claims a `Caller` is made from, already verified.
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub app_id: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// The `scp` claim: delegated scopes, space-separated.
    pub scopes: String,
}

impl Caller {
    pub fn new(identity: Identity, policy: Arc<AccessPolicy>) -> Self {
        let roles: HashSet<&str> = identity.roles.iter().map(String::as_str).collect();
        let scopes: HashSet<&str> = identity.scopes.split_whitespace().collect();
        let grants = |permission| {
            let rule = policy.rule(permission);
            rule.roles.iter().any(|r| roles.contains(r.as_str()))
                || rule.scopes.iter().any(|s| scopes.contains(s.as_str()))
        };
        Self {
            granted_read: grants(Permission::ReadQualifications),
            granted_write: grants(Permission::WriteQualifications),
            granted_audit: grants(Permission::AuditQualifications),
            issuer: identity.issuer.into(),
            subject: identity.subject.into(),
            app_id: identity.app_id.map(Arc::from),
            name: identity.name.map(Arc::from),
            policy,
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        let granted = match permission {
            Permission::ReadQualifications => self.granted_read,
            Permission::WriteQualifications => self.granted_write,
            Permission::AuditQualifications => self.granted_audit,
        };
        if granted {
            return Ok(());
        }
        let rule = self.policy.rule(permission);
        let mut needed: Vec<String> = rule.scopes.clone();
        needed.extend(
            rule.roles
                .iter()
                .filter(|r| !rule.scopes.contains(r))
                .cloned(),
        );
        Err(AuthError::InsufficientScope { needed })
    }
}

impl Caller {
    pub fn may(&self, permission: Permission) -> bool {
        self.require(permission).is_ok()
    }

    /// What owns the caller's qualification requests and webhook subscriptions: its client
    /// application, or (a token without one) the caller itself.
    pub fn owning_app(&self) -> String {
        match &self.app_id {
            Some(app) => owning_app(&self.issuer, app),
            None => format!("{}#sub:{}", self.issuer, self.subject),
        }
    }
}

/// The owner name of an issuer's client application, as [`Caller::owning_app`] gives it.
pub fn owning_app(issuer: &str, app_id: &str) -> String {
    format!("{issuer}#{app_id}")
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
