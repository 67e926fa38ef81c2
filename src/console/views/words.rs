//! The console's one vocabulary: permissions, audit actions and refusal
//! reasons in plain words, the code second.

/// Every permission a key or user may hold, with its label and what it
/// lets a credential do, in the order forms list them.
pub const PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "reports:read",
        "Read reports",
        "Pull the company's records from the reports API.",
    ),
    (
        "webhooks:write",
        "Push records",
        "Send records in through the webhooks API.",
    ),
    (
        "keys:manage",
        "Manage keys",
        "Create and manage keys: a member's own, an admin's the company's.",
    ),
    (
        "webhooks:manage",
        "Manage webhook endpoints",
        "Register the addresses Keyport sends events to, and manage them.",
    ),
    (
        "tokens:exchange",
        "Exchange tokens",
        "Swap a token it was given for a narrower one. Grant only on purpose.",
    ),
    (
        "users:manage",
        "Manage users",
        "Add, change, disable and unlock people (admins only).",
    ),
    (
        "tenant:manage",
        "Manage the company",
        "Change the company's policies and trusted issuers (admins only).",
    ),
    (
        "audit:read",
        "Read the audit trail",
        "Read who did what in the company (admins only).",
    ),
];

/// A permission's label, or the code itself for one this list lacks.
pub fn permission_label(code: &str) -> &str {
    PERMISSIONS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(code, |(_, label, _)| label)
}

/// Audit actions, with readable names, in the order the filter lists them.
pub const ACTIONS: &[(&str, &str)] = &[
    ("key.create", "Key created"),
    ("key.roll", "Key rolled"),
    ("key.update", "Key changed"),
    ("key.disable", "Key disabled"),
    ("key.enable", "Key enabled"),
    ("key.revoke", "Key revoked"),
    ("key.delete", "Key deleted"),
    ("key.mark_webhook_signing", "Key set to sign webhooks"),
    ("key.unmark_webhook_signing", "Key no longer signs webhooks"),
    ("session.sign_in", "Signed in"),
    ("session.sign_in_failed", "Sign-in failed"),
    ("session.sign_in_refused", "Sign-in refused"),
    ("session.sign_out", "Signed out"),
    ("tenant.create", "Company created"),
    ("tenant.set_policy", "Company policy changed"),
    ("token.revoke", "Token revoked"),
    ("user.create", "User added"),
    ("user.change", "User changed"),
    ("user.disable", "User disabled"),
    ("user.enable", "User enabled"),
    ("user.lock", "User locked out"),
    ("user.unlock", "User unlocked"),
    ("user.set_password", "Password set"),
    (
        "user.set_password_with_token",
        "Password set from an invitation",
    ),
    ("user.change_password", "Password changed"),
    ("webhook_endpoint.create", "Webhook endpoint added"),
    ("webhook_endpoint.update", "Webhook endpoint changed"),
    ("webhook_endpoint.delete", "Webhook endpoint deleted"),
    ("webhook_endpoint.disable", "Webhook endpoint disabled"),
    ("webhook_delivery.redeliver", "Webhook delivered again"),
];

/// An action's readable name; an unknown one reads as its code.
pub fn action_label(code: &str) -> String {
    ACTIONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| code.to_owned(), |(_, label)| (*label).to_owned())
}

/// Why a key's request was refused, in words.
pub fn refusal_label(reason: &str) -> &'static str {
    match reason {
        "wrong_secret" => "Wrong secret or signature",
        "address_not_allowed" => "From an address the key does not allow",
        "rate_limited" => "Over the key's rate",
        "locked_out" => "Locked after repeated failures",
        "disabled" => "Key disabled",
        "expired" => "Key expired",
        "revoked" => "Key revoked",
        "owner_disabled" => "Owner's account disabled",
        "dpop" => "Missing or invalid proof of possession",
        "assertion" => "Signed client assertion not accepted",
        "replayed" => "Signed request sent twice",
        _ => "Other reasons",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SUPPORTED_SCOPES;

    #[test]
    fn every_scope_the_server_knows_has_a_label_and_a_description() {
        for scope in SUPPORTED_SCOPES {
            assert_ne!(permission_label(scope), scope, "{scope} has no label");
            let described = PERMISSIONS.iter().find(|(c, _, _)| *c == scope);
            assert!(described.is_some_and(|(_, _, d)| !d.is_empty()), "{scope}");
        }
    }

    #[test]
    fn every_refusal_reason_has_words() {
        for reason in crate::service::key_usage::Refusal::ALL {
            let words = refusal_label(reason.as_str());
            assert!(
                words != "Other reasons" || reason.as_str() == "other",
                "{reason:?}"
            );
        }
    }
}
