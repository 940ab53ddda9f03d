//! Field devices: their kinds, their MQTT passwords, and who may do what on
//! the broker (contract section 6.1).
//!
//! A device's password is 192 random bits, shown once. The store keeps it
//! the way Mosquitto's password file and dynamic-security plugin do
//! (`$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512, base64), so that the same
//! digest serves the embedded broker and a Mosquitto that kerbside
//! configures, and no plain password need ever be kept. The password has
//! full entropy, so the stretching is Mosquitto's default, not a defence.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::Serialize;
use sha2::Sha512;

use super::ids::DeviceId;

/// What a device is, and so what it may do on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// An in-ground bay sensor: publishes its own events.
    Sensor,
    /// A warden's handheld: publishes its own events.
    Handheld,
    /// Signage or a dashboard: only reads bay states.
    Observer,
}

impl DeviceKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Sensor => "sensor",
            DeviceKind::Handheld => "handheld",
            DeviceKind::Observer => "observer",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sensor" => Some(DeviceKind::Sensor),
            "handheld" => Some(DeviceKind::Handheld),
            "observer" => Some(DeviceKind::Observer),
            _ => None,
        }
    }

    /// Whether devices of this kind send events.
    pub fn sends_events(self) -> bool {
        matches!(self, DeviceKind::Sensor | DeviceKind::Handheld)
    }
}

/// Longest device name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks a device's name: 1-200 characters once trimmed, no control
/// characters (it is shown in lists and logs). Returns it trimmed.
pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "name must be 1-{MAX_NAME_CHARS} characters; it is {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name)
}

/// Who holds a broker connection, once its credentials are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// kerbside itself: may publish and subscribe anywhere.
    Service,
    /// A registered, unrevoked device.
    Device { id: DeviceId, kind: DeviceKind },
    /// Any client of a broker whose registration is off (`--devices open`):
    /// it may send as any device, but may not speak for kerbside.
    Guest,
}

/// PBKDF2 rounds, as Mosquitto's own tools use.
pub const PBKDF2_ITERATIONS: u32 = 101;
/// Salt length in bytes, as Mosquitto's own tools use.
const SALT_BYTES: usize = 12;
/// Password entropy in bytes (192 bits).
const PASSWORD_BYTES: usize = 24;

/// A freshly made password: the secret to show once, the digest to store.
pub struct NewPassword {
    pub secret: String,
    pub digest: String,
}

/// A stored password digest, split into the parts Mosquitto's
/// dynamic-security file wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl Digest {
    /// Parses `$7$ITERATIONS$SALT$HASH`.
    pub fn parse(text: &str) -> Option<Digest> {
        let mut parts = text.strip_prefix("$7$")?.split('$');
        let iterations = parts.next()?.parse().ok().filter(|i| *i > 0)?;
        let salt = B64.decode(parts.next()?).ok()?;
        let hash = B64.decode(parts.next()?).ok()?;
        if parts.next().is_some() || hash.len() != 64 || salt.is_empty() {
            return None;
        }
        Some(Digest {
            iterations,
            salt,
            hash,
        })
    }

    /// The `$7$...` text form.
    pub fn encode(&self) -> String {
        format!(
            "$7${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }

    /// The salt, base64.
    pub fn salt_b64(&self) -> String {
        B64.encode(&self.salt)
    }

    /// The hash, base64.
    pub fn hash_b64(&self) -> String {
        B64.encode(&self.hash)
    }
}

fn pbkdf2_sha512(secret: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(secret.as_bytes(), salt, iterations, &mut out);
    out
}

/// Makes a password from 192 bits of operating-system randomness, in a
/// form that is safe on a command line and in a URL (hex).
pub fn generate_password() -> NewPassword {
    let mut bytes = [0u8; PASSWORD_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = digest_of(&secret);
    NewPassword { secret, digest }
}

/// The stored form of `secret`, with a fresh random salt.
pub fn digest_of(secret: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    Digest {
        iterations: PBKDF2_ITERATIONS,
        salt: salt.to_vec(),
        hash: pbkdf2_sha512(secret, &salt, PBKDF2_ITERATIONS),
    }
    .encode()
}

/// Whether `secret` is the password whose stored form is `digest`; a
/// digest that cannot be read matches nothing. Compares in constant time.
pub fn verify_password(secret: &str, digest: &str) -> bool {
    let Some(d) = Digest::parse(digest) else {
        return false;
    };
    let h = pbkdf2_sha512(secret, &d.salt, d.iterations);
    h.len() == d.hash.len() && h.iter().zip(&d.hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_has_192_bits_and_only_its_digest_is_kept() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 48);
        assert!(!a.digest.contains(&a.secret));
        assert!(verify_password(&a.secret, &a.digest));
        assert!(!verify_password(&b.secret, &a.digest));
        assert!(!verify_password("", &a.digest));
    }

    #[test]
    fn digests_are_mosquittos_pbkdf2_format() {
        // Made by Mosquitto 2.0's `mosquitto_passwd -b file u secret`.
        let digest = "$7$101$0VyxQZN7Iyc0FnfX$MnVkr69nlFKTjzQXzWyGvyTQ25zHWq2JP8BrFI29xdiDyO2BrFUyuxv+v6iIZr7aTlwu6djP2bRMdpMMlkCygQ==";
        let d = Digest::parse(digest).expect("parses");
        assert_eq!(d.iterations, 101);
        assert_eq!(d.encode(), digest);
        assert!(verify_password("secret", digest));
        assert!(!verify_password("Secret", digest));
    }

    #[test]
    fn unreadable_digests_match_nothing() {
        for d in ["", "$7$", "$7$0$AA==$AA==", "$6$101$AA==$AA==", "plain"] {
            assert!(Digest::parse(d).is_none(), "{d}");
            assert!(!verify_password("x", d));
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            DeviceKind::Sensor,
            DeviceKind::Handheld,
            DeviceKind::Observer,
        ] {
            assert_eq!(DeviceKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DeviceKind::parse("camera"), None);
        assert!(!DeviceKind::Observer.sends_events());
    }
}
