//! Who may hear an event. An endpoint speaks for the user who registered it,
//! so it hears only what that user may do and see *now*: the owner must be
//! active, still hold `webhooks:manage`, and be allowed to see what the event
//! is about (admins see their whole company; members only what concerns
//! themselves, as with records: members see the records they pushed). The
//! rule is judged twice: when an event is queued (no outbox row for an
//! endpoint whose owner may not hear it) and again by the delivery worker
//! just before it sends (a user disabled, demoted or stripped of the
//! permission after the event was queued hears nothing more).

use std::str::FromStr;

use super::{Role, ScopeSet, UserStatus, WEBHOOKS_MANAGE};

/// An endpoint's owner as stored now: the columns of their `users` row.
#[derive(Debug, Clone, Copy)]
pub struct EndpointOwner<'a> {
    pub user_id: &'a str,
    pub status: &'a str,
    pub role: &'a str,
    /// The stored, space-separated granted permissions.
    pub permissions: &'a str,
}

/// Why an endpoint may not hear an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unheard {
    OwnerDisabled,
    OwnerLacksPermission,
    /// A member's endpoint and an event about someone else.
    NotVisibleToOwner,
}

impl Unheard {
    /// Said in attempt rows, audit rows and logs: no ids, no secrets.
    pub fn reason(self) -> &'static str {
        match self {
            Unheard::OwnerDisabled => "the endpoint's owner is disabled",
            Unheard::OwnerLacksPermission => "the endpoint's owner no longer holds webhooks:manage",
            Unheard::NotVisibleToOwner => {
                "the endpoint's owner may not see what the event is about"
            }
        }
    }
}

/// What an owner's endpoints may hear, judged from their row alone: the
/// half of the rule that does not depend on the event, so a batch of
/// events judges it once per endpoint (parsing the permissions for every
/// event was a sixth of what an endpoint listening added to a push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An admin's: everything in the company.
    Company,
    /// A member's: only what concerns the member.
    Themselves,
    Nothing(Unheard),
}

impl Audience {
    /// Why an endpoint of `owner_id` (whose audience this is) may not hear
    /// an event about `subject_owner_id`, or `None` when it may.
    pub fn refuses(self, owner_id: &str, subject_owner_id: Option<&str>) -> Option<Unheard> {
        match self {
            Audience::Company => None,
            Audience::Themselves => {
                (subject_owner_id != Some(owner_id)).then_some(Unheard::NotVisibleToOwner)
            }
            Audience::Nothing(unheard) => Some(unheard),
        }
    }
}

impl EndpointOwner<'_> {
    /// Why this owner's endpoint may not hear an event about
    /// `subject_owner_id` (the user whose record, key or account the event
    /// concerns), or `None` when it may. An event whose subject is unknown
    /// is for admins only. A stored value that does not parse refuses:
    /// better silent than leaking.
    pub fn refuses(&self, subject_owner_id: Option<&str>) -> Option<Unheard> {
        self.audience().refuses(self.user_id, subject_owner_id)
    }

    /// What this owner's endpoints may hear, whatever the event.
    pub fn audience(&self) -> Audience {
        let owner = self;
        if owner.status != UserStatus::Active.as_str() {
            return Audience::Nothing(Unheard::OwnerDisabled);
        }
        let Ok(role) = Role::from_str(owner.role) else {
            return Audience::Nothing(Unheard::OwnerLacksPermission);
        };
        let holds = ScopeSet::parse(owner.permissions)
            .is_ok_and(|granted| role.permissions(&granted).contains(WEBHOOKS_MANAGE));
        match (holds, role) {
            (false, _) => Audience::Nothing(Unheard::OwnerLacksPermission),
            (true, Role::Admin) => Audience::Company,
            (true, Role::Member) => Audience::Themselves,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(status: &'a str, role: &'a str, permissions: &'a str) -> EndpointOwner<'a> {
        EndpointOwner {
            user_id: "u1",
            status,
            role,
            permissions,
        }
    }

    #[test]
    fn an_endpoint_hears_only_what_its_owner_may_manage_and_see_now() {
        let cases = [
            // (status, role, permissions, subject, expected)
            ("active", "admin", "webhooks:manage", Some("u2"), None),
            ("active", "admin", "webhooks:manage", None, None),
            ("active", "member", "webhooks:manage", Some("u1"), None),
            (
                "active",
                "member",
                "webhooks:manage",
                Some("u2"),
                Some(Unheard::NotVisibleToOwner),
            ),
            (
                "active",
                "member",
                "webhooks:manage",
                None,
                Some(Unheard::NotVisibleToOwner),
            ),
            (
                "disabled",
                "admin",
                "webhooks:manage",
                Some("u1"),
                Some(Unheard::OwnerDisabled),
            ),
            (
                "active",
                "admin",
                "keys:manage reports:read",
                Some("u1"),
                Some(Unheard::OwnerLacksPermission),
            ),
            (
                "active",
                "member",
                "",
                Some("u1"),
                Some(Unheard::OwnerLacksPermission),
            ),
            // Corrupt rows refuse.
            (
                "active",
                "owner",
                "webhooks:manage",
                Some("u1"),
                Some(Unheard::OwnerLacksPermission),
            ),
            (
                "active",
                "admin",
                "webhooks manage!",
                Some("u1"),
                Some(Unheard::OwnerLacksPermission),
            ),
            (
                "locked",
                "admin",
                "webhooks:manage",
                Some("u1"),
                Some(Unheard::OwnerDisabled),
            ),
        ];
        for (status, role, permissions, subject, expected) in cases {
            assert_eq!(
                owner(status, role, permissions).refuses(subject),
                expected,
                "{status} {role} [{permissions}] about {subject:?}"
            );
        }
    }
}
