//! `kerbside mosquitto-conf`: a Mosquitto 2 configuration that enforces
//! contract 6.1 (who may connect, publish and subscribe where), persists,
//! and drops nothing silently.
//!
//! ```text
//! DIR/mosquitto.conf                  listener, limits, persistence, the plugin   (0644)
//! DIR/data/                           the broker's state, owned by its user       (0700)
//! DIR/data/dynamic-security.json      kerbside's client, every unrevoked device,
//!                                     their roles; default access: deny          (0600)
//! DIR/data/mosquitto.db               retained states and sessions (Mosquitto's)
//! ```
//!
//! The plugin saves its file by writing `FILE.new` beside it and renaming
//! it, so the file lives in the state directory, which the broker's user
//! must be able to write; `mosquitto.conf` stays out of that user's reach.
//! Debian's Mosquitto, started as root, drops to the user `mosquitto`:
//! when this command runs as root it gives `data/` to that user. Started
//! as any other user, Mosquitto stays that user: generate the files as the
//! user who will start it.
//!
//! Regenerating rewrites `mosquitto.conf` and the plugin's file (with a
//! new password for kerbside) and keeps `mosquitto.db`, so queued events
//! and retained states survive. Stop Mosquitto first: a running one would
//! save its own view of the plugin's file over the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::dynsec::{Role, bay_states_role, device_role, device_roles, role_refs, service_role};
use crate::devices::SERVICE_USERNAME;
use crate::domain::devices::{Digest, generate_password};
use crate::store::DeviceRecord;

/// Debian's path of Mosquitto's dynamic-security plugin.
pub const DEFAULT_DYNSEC_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

/// The user Debian's Mosquitto drops to when started as root.
pub const BROKER_USER: &str = "mosquitto";

/// Largest packet Mosquitto accepts, bytes: above the 256 KiB event limit,
/// so an oversize event reaches kerbside and is rejected `malformed`
/// rather than cutting the device off.
pub const MAX_PACKET_BYTES: u32 = 1 << 20;

/// How often Mosquitto saves its state to `data/mosquitto.db`, seconds
/// (it also saves when stopped with SIGTERM).
pub const AUTOSAVE_SECONDS: u32 = 60;

/// The state directory's name inside `DIR`.
pub const DATA_DIR: &str = "data";

/// The plugin's file name inside the state directory.
pub const DYNSEC_FILE: &str = "dynamic-security.json";

/// Why the configuration could not be written; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("--listen {0:?} is not HOST:PORT")]
    BadListen(String),
    #[error(
        "no Mosquitto dynamic-security plugin at {0} (apt-get install mosquitto); give its path with --dynsec-plugin"
    )]
    NoPlugin(PathBuf),
    #[error(
        "--out {0:?} cannot be written into a Mosquitto configuration (a line break in the path?)"
    )]
    BadPath(PathBuf),
    #[error("cannot write {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "running as root, but there is no user {0:?} in /etc/passwd for Mosquitto to drop to; run as the user who will start Mosquitto"
    )]
    NoBrokerUser(&'static str),
    #[error("device {0} has an unreadable password digest in the store")]
    BadDigest(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfError + '_ {
    move |cause| ConfError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Where Mosquitto listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The bind address, without brackets.
    pub host: String,
    pub port: u16,
}

impl Listen {
    /// Parses `HOST:PORT` (`[::]:1883` for IPv6).
    pub fn parse(text: &str) -> Result<Listen, ConfError> {
        let bad = || ConfError::BadListen(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_');
        if host.is_empty() || port == 0 || !host.chars().all(ok) {
            return Err(bad());
        }
        Ok(Listen {
            host: host.to_owned(),
            port,
        })
    }

    /// Where kerbside connects: the same address, or loopback when the
    /// broker listens on every address.
    fn connect_host(&self) -> String {
        match self.host.as_str() {
            "0.0.0.0" => "127.0.0.1".into(),
            "::" => "[::1]".into(),
            h if h.contains(':') => format!("[{h}]"),
            h => h.into(),
        }
    }
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// `DIR/mosquitto.conf`, absolute.
    pub conf: PathBuf,
    /// The `--mqtt-url` kerbside must be given, with its new password.
    pub url: String,
}

/// The plugin's file: default access deny, kerbside's client with
/// `service` as its password digest, and every unrevoked device with its
/// stored digest and roles.
pub fn dynsec_config(
    devices: &[DeviceRecord],
    service: &Digest,
    share_group: &str,
) -> Result<Value, ConfError> {
    let client = |username: &str, textname: &str, digest: &Digest, roles: &[String]| {
        json!({
            "username": username,
            "textname": textname,
            "password": digest.hash_b64(),
            "salt": digest.salt_b64(),
            "iterations": digest.iterations,
            "roles": role_refs(roles),
        })
    };
    let mut clients = vec![client(
        SERVICE_USERNAME,
        "kerbside",
        service,
        &[service_role(share_group).rolename],
    )];
    let mut roles: Vec<Role> = vec![service_role(share_group), bay_states_role()];
    for d in devices.iter().filter(|d| d.revoked_at.is_none()) {
        let digest = Digest::parse(&d.password_digest)
            .ok_or_else(|| ConfError::BadDigest(d.device_id.to_string()))?;
        clients.push(client(
            d.device_id.as_str(),
            &d.name,
            &digest,
            &device_roles(&d.device_id, d.kind),
        ));
        roles.extend(device_role(&d.device_id, d.kind));
    }
    Ok(json!({
        "defaultACLAccess": {
            "publishClientSend": false,
            "publishClientReceive": false,
            "subscribe": false,
            "unsubscribe": false,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }))
}

/// `mosquitto.conf` for a broker on `listen` with its state in `data` and
/// the plugin at `plugin` (absolute paths).
pub fn mosquitto_conf(listen: &Listen, data: &Path, plugin: &Path) -> String {
    let inflight = super::INFLIGHT_MESSAGES;
    format!(
        "# Written by `kerbside mosquitto-conf`: regenerate it rather than edit it
# (contract 6.1). Start with: mosquitto -c <this file>

per_listener_settings false
listener {port} {host}
allow_anonymous false

# Started as root, Mosquitto drops to this user, who owns {data}.
user {user}
persistence true
persistence_location {data}/
autosave_interval {autosave}

# Nothing is dropped silently: no limit on the messages queued for a client
# (Mosquitto's default, 1000, drops past that, and also caps the retained
# bay states a new subscriber gets). kerbside commits events in batches and
# acknowledges them after each commit: let it have a batch in flight.
max_queued_messages 0
max_inflight_messages {inflight}

# Above the 256 KiB event limit: an oversize event reaches kerbside and is
# rejected `malformed`, instead of the device being disconnected.
max_packet_size {max_packet}

log_dest stderr

# Who may connect, publish and subscribe: kerbside's client and every
# registered device; kerbside adds and removes devices while it runs.
plugin {plugin}
plugin_opt_config_file {data}/{dynsec}
",
        port = listen.port,
        host = listen.host,
        user = BROKER_USER,
        data = data.display(),
        autosave = AUTOSAVE_SECONDS,
        max_packet = MAX_PACKET_BYTES,
        plugin = plugin.display(),
        dynsec = DYNSEC_FILE,
    )
}

/// Writes the configuration into `out` for a broker on `listen`, with
/// every unrevoked device of `devices` and a fresh password for kerbside,
/// and returns the URL kerbside must be given.
pub fn write(
    out: &Path,
    listen: &Listen,
    plugin: &Path,
    devices: &[DeviceRecord],
    share_group: &str,
) -> Result<Written, ConfError> {
    if !plugin.is_file() {
        return Err(ConfError::NoPlugin(plugin.to_owned()));
    }
    let service = generate_password();
    let digest = Digest::parse(&service.digest)
        .ok_or_else(|| ConfError::BadDigest(SERVICE_USERNAME.into()))?;
    let dynsec = dynsec_config(devices, &digest, share_group)?;

    std::fs::create_dir_all(out).map_err(io(out))?;
    let out = std::fs::canonicalize(out).map_err(io(out))?;
    let plugin = std::fs::canonicalize(plugin).map_err(io(plugin))?;
    for p in [&out, &plugin] {
        if p.to_str().is_none_or(|s| s.contains(['\n', '\r'])) {
            return Err(ConfError::BadPath(p.clone()));
        }
    }
    let data = out.join(DATA_DIR);
    std::fs::create_dir_all(&data).map_err(io(&data))?;
    // The broker's user must reach `data/` through DIR, which holds no secret.
    set_mode(&out, 0o755)?;
    set_mode(&data, 0o700)?;

    let dynsec_path = data.join(DYNSEC_FILE);
    let text = serde_json::to_string_pretty(&dynsec).map_err(|e| ConfError::Io {
        path: dynsec_path.clone(),
        cause: e.into(),
    })?;
    replace(&dynsec_path, text.as_bytes(), 0o600)?;
    let conf = out.join("mosquitto.conf");
    replace(
        &conf,
        mosquitto_conf(listen, &data, &plugin).as_bytes(),
        0o644,
    )?;
    give_to_broker_user(&conf, &data, &dynsec_path)?;

    Ok(Written {
        conf,
        url: format!(
            "mqtt://{}:{}@{}:{}",
            SERVICE_USERNAME.replace('$', "%24"),
            service.secret,
            listen.connect_host(),
            listen.port
        ),
    })
}

/// Replaces `path` whole: a reader sees the old file or the new, never half.
fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), ConfError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".kerbside-tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    set_mode(&tmp, mode)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), ConfError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), ConfError> {
    Ok(())
}

/// When running as root (the file just written belongs to uid 0), gives
/// the state directory and what is in it to [`BROKER_USER`].
#[cfg(unix)]
fn give_to_broker_user(written: &Path, data: &Path, dynsec: &Path) -> Result<(), ConfError> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(written).map_err(io(written))?.uid() != 0 {
        return Ok(());
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let (uid, gid) = user_ids(&passwd, BROKER_USER).ok_or(ConfError::NoBrokerUser(BROKER_USER))?;
    let db = data.join("mosquitto.db");
    for p in [data, dynsec, db.as_path()] {
        if p == db && !p.exists() {
            continue;
        }
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(io(p))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn give_to_broker_user(_: &Path, _: &Path, _: &Path) -> Result<(), ConfError> {
    Ok(())
}

/// A user's uid and gid from `/etc/passwd` text.
fn user_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != user {
            return None;
        }
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::devices::{DeviceKind, digest_of};
    use crate::domain::ids::DeviceId;

    fn device(id: &str, kind: DeviceKind, revoked: bool) -> DeviceRecord {
        let at = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        DeviceRecord {
            device_id: DeviceId::parse(id).unwrap(),
            kind,
            name: format!("{id} name"),
            password_digest: digest_of("pw"),
            created_at: at,
            last_seen_at: None,
            revoked_at: revoked.then_some(at),
        }
    }

    #[test]
    fn listen_addresses() {
        let l = Listen::parse("0.0.0.0:1883").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("0.0.0.0", 1883));
        assert_eq!(l.connect_host(), "127.0.0.1");
        let v6 = Listen::parse("[::]:1884").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.connect_host().as_str()),
            ("::", "[::1]")
        );
        assert_eq!(
            Listen::parse("broker.city:1").unwrap().connect_host(),
            "broker.city"
        );
        for bad in ["1883", ":1883", "h:0", "h:70000", "h:x", "a b:1", "h\n:1"] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plugin_file_lists_kerbside_and_unrevoked_devices_with_their_roles() {
        let service = Digest::parse(&digest_of("k")).unwrap();
        let devices = [
            device("s-1", DeviceKind::Sensor, false),
            device("sign-1", DeviceKind::Observer, false),
            device("old-1", DeviceKind::Handheld, true),
        ];
        let v = dynsec_config(&devices, &service, "kerbside").unwrap();
        assert!(
            v["defaultACLAccess"]
                .as_object()
                .unwrap()
                .values()
                .all(|a| a == false)
        );
        let users: Vec<&str> = v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["username"].as_str().unwrap())
            .collect();
        assert_eq!(users, vec!["$kerbside", "s-1", "sign-1"]);
        let s1 = &v["clients"][1];
        let d = Digest::parse(&devices[0].password_digest).unwrap();
        assert_eq!(s1["password"], d.hash_b64());
        assert_eq!(s1["salt"], d.salt_b64());
        assert_eq!(s1["iterations"], 101);
        let roles: Vec<&str> = v["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rolename"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            vec![
                "kerbside-service",
                "kerbside-bay-states",
                "kerbside-device-s-1"
            ]
        );
    }

    #[test]
    fn the_conf_enforces_and_drops_nothing() {
        let l = Listen::parse("127.0.0.1:18830").unwrap();
        let conf = mosquitto_conf(&l, Path::new("/etc/k/data"), Path::new("/p.so"));
        for line in [
            "listener 18830 127.0.0.1",
            "allow_anonymous false",
            "persistence true",
            "persistence_location /etc/k/data/",
            "max_queued_messages 0",
            "max_inflight_messages 1000",
            "max_packet_size 1048576",
            "plugin /p.so",
            "plugin_opt_config_file /etc/k/data/dynamic-security.json",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
        }
    }

    #[test]
    fn users_are_found_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nmosquitto:x:105:108::/var/lib/mosquitto:/usr/sbin/nologin\n";
        assert_eq!(user_ids(passwd, "mosquitto"), Some((105, 108)));
        assert_eq!(user_ids(passwd, "nobody"), None);
    }
}
