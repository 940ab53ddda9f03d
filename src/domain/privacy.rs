//! Plates are personal data (the EU's GDPR, China's PIPL): kept readable
//! only while they are needed, then replaced by a keyed pseudonym.
//!
//! A pseudonym is `pseud:` and the first 16 bytes, in hex, of
//! HMAC-SHA256 of the plate under the deployment's secret key. The same
//! plate always gives the same pseudonym within a deployment, so chalking
//! and repeat statistics still work; without the key, no one can tell
//! which plate it was by trying plates.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every pseudonym starts with, so that it is never taken for a plate.
pub const PSEUDONYM_PREFIX: &str = "pseud:";

/// The keyed pseudonym of `plate`.
///
/// ```
/// use kerbside::domain::privacy::{pseudonym, is_pseudonym};
/// let p = pseudonym(b"deployment secret", "浙F12345");
/// assert!(is_pseudonym(&p));
/// assert_eq!(p, pseudonym(b"deployment secret", "浙F12345"));
/// assert_ne!(p, pseudonym(b"another deployment", "浙F12345"));
/// ```
pub fn pseudonym(key: &[u8], plate: &str) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(plate.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{PSEUDONYM_PREFIX}{hex}")
}

/// Whether a stored plate is already a pseudonym.
pub fn is_pseudonym(plate: &str) -> bool {
    plate.starts_with(PSEUDONYM_PREFIX)
}

/// A stored plate in the form that compares across erasure: the
/// pseudonym of a plate, a pseudonym as it is.
pub fn canonical(key: &[u8], plate: &str) -> String {
    if is_pseudonym(plate) {
        plate.to_owned()
    } else {
        pseudonym(key, plate)
    }
}

/// Whether two stored plates name one vehicle: equal, or one is the
/// other's pseudonym.
pub fn same_vehicle(key: &[u8], a: &str, b: &str) -> bool {
    a == b || canonical(key, a) == canonical(key, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pseudonym_hides_the_plate_but_matches_it() {
        let k = b"k";
        let p = pseudonym(k, "浙F12345");
        assert_eq!(p.len(), PSEUDONYM_PREFIX.len() + 32);
        assert!(!p.contains("F12345"));
        assert!(same_vehicle(k, "浙F12345", &p));
        assert!(same_vehicle(k, &p, &p));
        assert!(!same_vehicle(k, "浙F12346", &p));
        assert_eq!(canonical(k, &p), p);
    }
}
