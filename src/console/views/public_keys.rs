//! What a key's Public keys page shows.

use askama::Template;

use super::{Nav, PageError, When};

pub struct PublicKeyView {
    pub thumbprint: String,
    pub kid: String,
    pub alg: String,
    pub added: When,
}

#[derive(Template)]
#[template(path = "public_keys.html")]
pub struct PublicKeysPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub key_id: String,
    pub key_name: String,
    pub client_id: String,
    /// The key also authenticates with a secret.
    pub secret_enabled: bool,
    pub active: bool,
    /// The visitor owns the key: only the owner may add public keys (their
    /// assertions act as the owner); admins see the list and may remove.
    pub owner_is_me: bool,
    /// Where assertions go, and the `aud` they name.
    pub token_endpoint: String,
    pub public_keys: Vec<PublicKeyView>,
}
