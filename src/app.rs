//! Builds the whole service from [`Settings`] and hands back handles with
//! the real ports it got (tests bind port 0).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use chrono::Duration;

use crate::clock::Clock;
use crate::config::Settings;
use crate::devices::{DeviceMode, Registry};
use crate::geodata::{GeodataError, load_dir};
use crate::http::{self, AppState};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::mqtt::{self, LinkConfig, MqttError, broker::BrokerError};
use crate::store::{Enforcement, Store, StoreError};
use crate::street::Street;

/// How often every road's history roll-up is brought up to date in the
/// background, seconds (a report brings its road up to date itself).
pub const HISTORY_EVERY_SECONDS: u64 = 300;

/// Why the service could not start; each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Geodata(#[from] GeodataError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error("cannot listen on --http {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// A built service, ready to run.
pub struct Application {
    http_port: u16,
    mqtt_port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens the store, loads the geodata into it if it is empty, builds the
    /// street and binds the HTTP listener.
    pub async fn build(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartError> {
        let now = clock.now();
        let s = settings.clone();
        let (store, street) = tokio::task::spawn_blocking(move || {
            let store = Store::open_with(&s.database.database_url, s.database_pool)?;
            store.ensure_plate_key(now)?;
            if !store.has_roads()? {
                for (file, layout) in load_dir(&s.geodata)? {
                    // The file's name, not where the server keeps it.
                    let name = file.file_name().unwrap_or(file.as_os_str());
                    let by = format!("import of {}", name.to_string_lossy());
                    // Only as revision 1: an instance starting beside this
                    // one may have loaded the road a moment ago.
                    match store.publish_layout(&layout, &by, None, Some(0), now) {
                        Ok(info) => tracing::info!(road = %info.road_id, bays = info.bays,
                            barriers = info.barriers, file = %file.display(),
                            "loaded geodata into the empty store as revision 1"),
                        Err(StoreError::RevisionConflict { .. }) => tracing::info!(
                            file = %file.display(),
                            "another instance has just loaded this road; keeping its revision"),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            // A city's layouts and bay states are read side by side, then
            // the street (bay lookup, R-trees) is built from them.
            let t0 = std::time::Instant::now();
            let (layouts, states) = std::thread::scope(|scope| {
                let states = scope.spawn(|| store.bay_states());
                let layouts = store.current_layouts();
                let states = states
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Ok::<_, StoreError>((layouts?, states?))
            })?;
            let read_s = t0.elapsed().as_secs_f64();
            let (roads, bays) = (
                layouts.len(),
                layouts.iter().map(|l| l.layout.bays.len()).sum::<usize>(),
            );
            let staleness = Duration::minutes(i64::from(s.staleness_minutes));
            let street = Street::new(layouts, states, staleness);
            store.release_memory();
            release_free_memory();
            tracing::info!(
                roads,
                bays,
                read_s,
                built_s = t0.elapsed().as_secs_f64() - read_s,
                "street built from the store"
            );
            Ok::<_, StartError>((store, street))
        })
        .await
        .map_err(|e| StartError::Task(e.to_string()))??;

        // Bind HTTP before starting anything else, so a taken port fails
        // cleanly with nothing half-started.
        let bind_err = |cause| StartError::Bind {
            addr: settings.http.clone(),
            cause,
        };
        let listener = TcpListener::bind(&settings.http).map_err(bind_err)?;
        let http_port = listener.local_addr().map_err(bind_err)?.port();

        store.spawn_checkpointer(std::time::Duration::from_secs(1));
        store.spawn_retention(
            Duration::days(i64::from(settings.keep_history_days)),
            Duration::days(i64::from(settings.retention_days)),
            clock.clone(),
        );
        store.spawn_history(
            clock.clone(),
            Duration::minutes(i64::from(settings.staleness_minutes)),
            Duration::days(i64::from(settings.retention_days)),
            std::time::Duration::from_secs(HISTORY_EVERY_SECONDS),
        );
        let street = Arc::new(street);
        let metrics = Arc::new(Metrics::default());

        let mode = settings.devices;
        let reg_store = store.clone();
        let devices = tokio::task::spawn_blocking(move || Registry::load(reg_store, mode))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??;
        let devices = Arc::new(devices);
        devices.spawn_reloader();
        if mode == DeviceMode::Open {
            tracing::warn!(
                "--devices open: any client may connect and send as any device; \
                for labs, demos and test suites only"
            );
        }

        let client_id = settings.mqtt_client_id.clone();
        let (host, mqtt_port, credentials) = match &settings.mqtt_url {
            Some(url) => {
                let u = mqtt::parse_broker_url(url)?;
                // A broker that wants credentials may be a Mosquitto that
                // `kerbside mosquitto-conf` configured: keep its clients in
                // step with the registry.
                if let Some(credentials) = &u.credentials {
                    mqtt::dynsec::spawn(
                        mqtt::dynsec::AdminConfig {
                            host: u.host.clone(),
                            port: u.port,
                            client_id: format!("{client_id}-admin"),
                            credentials: credentials.clone(),
                        },
                        store.clone(),
                    );
                }
                (u.host, u.port, u.credentials)
            }
            None => {
                let start = |listen: &str| mqtt::broker::start(listen, devices.clone(), &client_id);
                let broker = match &settings.mqtt_listen {
                    Some(listen) => start(listen)?,
                    None => start(mqtt::broker::DEFAULT_LISTEN).or_else(|e| {
                        tracing::warn!(error = %e, "the default MQTT port is taken; the embedded broker takes a free one");
                        start("127.0.0.1:0")
                    })?,
                };
                let addr = broker.addr();
                tracing::info!(%addr, "embedded MQTT broker listening");
                // The embedded broker reads the registry itself: no plain
                // password need wait for it.
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.forget_all_broker_passwords());
                let (user, pass) = devices.service_credentials();
                let credentials = Some((user.to_owned(), pass.to_owned()));
                (addr.ip().to_string(), addr.port(), credentials)
            }
        };
        let live = Arc::new(crate::live::Hub::default());
        crate::live::spawn(
            live.clone(),
            street.clone(),
            store.clone(),
            clock.clone(),
            std::time::Duration::from_secs(settings.sweep_seconds),
        );
        let ingestor = Ingestor {
            store: store.clone(),
            street: street.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            devices: devices.clone(),
            retention: Duration::days(i64::from(settings.retention_days)),
            enforcement: Enforcement {
                tz: settings.timezone,
                grace: Duration::minutes(i64::from(settings.overstay_grace_minutes)),
                staleness: Duration::minutes(i64::from(settings.staleness_minutes)),
            },
            keep_plates: Duration::hours(i64::from(settings.keep_plates_hours)),
            keep_contacts: Duration::days(i64::from(settings.keep_contacts_days)),
            live: live.clone(),
        };
        // Only an external broker can spread events over several instances.
        let events_filter = match &settings.mqtt_url {
            Some(_) => mqtt::events_subscription(&settings.mqtt_share_group),
            None => mqtt::events_subscription(""),
        };
        // One process on SQLite leads from the start; on PostgreSQL the
        // lease decides (see `crate::sync`).
        let leading = Arc::new(std::sync::atomic::AtomicBool::new(
            store.backend() == crate::store::Backend::Sqlite,
        ));
        let link = mqtt::spawn(
            LinkConfig {
                host,
                port: mqtt_port,
                client_id,
                credentials,
                sweep_every: std::time::Duration::from_secs(settings.sweep_seconds),
                events_filter,
                leading: leading.clone(),
            },
            ingestor,
        );
        crate::notify::spawn(store.clone(), clock.clone(), leading.clone());
        crate::sync::spawn(
            store.clone(),
            street.clone(),
            leading,
            link.clone(),
            live.clone(),
        );
        let state = web::Data::new(AppState {
            store,
            street,
            clock,
            metrics,
            mqtt: link,
            devices,
            timezone: settings.timezone,
            limiter: http::public::RateLimiter::new(settings.public_rate_per_minute)
                .trusting(settings.trusted_proxies.clone()),
            live,
            stream_heartbeat: std::time::Duration::from_secs(settings.stream_heartbeat_seconds),
            console: http::console::ConsoleConfig {
                tile_url: settings.tile_url.clone(),
                tile_attribution: settings.tile_attribution.clone(),
            },
            retention: Duration::days(i64::from(settings.retention_days)),
        });

        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(middleware::Compress::default())
                .wrap(middleware::Logger::new("%s %r %b bytes %Dms"))
                .configure(http::configure)
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .map_err(bind_err)?
        .run();
        Ok(Application {
            http_port,
            mqtt_port,
            server,
            state,
        })
    }

    /// The port the REST API listens on.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The port of the MQTT broker in use (the embedded one, or `--mqtt-url`'s).
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    /// A handle to stop the HTTP server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The shared state (store, street, clock).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until stopped.
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Gives the memory freed after start-up back to the system: reading a
/// city's layouts and states leaves hundreds of megabytes of scratch space
/// in the allocator, which glibc would otherwise keep for good.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free pages of glibc's own heaps.
        unsafe {
            malloc_trim(0);
        }
    }
}
