//! Keys: create, list, show, change, roll, disable, enable, revoke, delete,
//! and the webhook-signing mark. Every operation needs `keys:manage`;
//! members act only on their own keys, admins on every key of their
//! company, the operator on any key. Rolling is the owner's (or the
//! operator's) alone: the new secret acts as the owner.

mod change;
mod controls;
mod create;
mod find;
mod lifecycle;
mod roll;
mod scopes;
mod view;

use std::time::Duration;

pub use change::{KeyChange, update_key};
pub use controls::KeyControls;
use controls::{
    parse_certificates, parse_description, parse_labels, parse_sources, parse_tls_subject,
    rate_columns, refuse_above_default,
};
use create::find_user_by_email;
pub use create::{
    ClientAuthSetup, CreatedClient, CreatedKey, NewKeyRequest, create_client, create_key,
    create_key_with,
};
pub(super) use find::visible_key;
pub use find::{KeyListing, find_key, list_keys, list_keys_labelled};
pub use lifecycle::{delete_key, disable_key, enable_key, mark_webhook_signing, revoke_key};
pub use roll::{RolledKey, roll_key};
use scopes::new_key_scopes;
pub(super) use scopes::refuse_beyond_caller;
use view::words;
pub use view::{KeyRateLimit, KeyStatus, KeySummary, RateLimitSource, auth_methods};

/// The longest expiry a key may be given: ten years.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a rolled key keeps working when the caller does not say: 24 hours.
pub const DEFAULT_ROLL_GRACE: Duration = Duration::from_secs(24 * 3600);
