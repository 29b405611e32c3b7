//! HMAC-SHA256 signatures over the raw body (PagerDuty's `v1=` scheme and our own header for the
//! `generic` driver), compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tocsin_core::{Error, Secret};

/// The message every signature failure starts with; the HTTP adapter answers such errors 401.
pub const FAILURE_PREFIX: &str = "webhook signature verification failed";

/// A signature failure (`InvalidInput`, message starting with [`FAILURE_PREFIX`]).
pub(crate) fn failure(why: &str) -> Error {
    Error::invalid_input(format!("{FAILURE_PREFIX}: {why}"))
}

/// Whether an error is a signature failure.
pub fn is_signature_failure(err: &Error) -> bool {
    err.message().starts_with(FAILURE_PREFIX)
}

/// The lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn hmac_sha256_hex(secret: &Secret, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would simply never match.
    match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Whether `hex_sig` is the HMAC-SHA256 of `body` under `secret` (constant-time comparison).
pub(crate) fn hmac_sha256_matches(secret: &Secret, body: &[u8], hex_sig: &str) -> bool {
    let Ok(given) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}
