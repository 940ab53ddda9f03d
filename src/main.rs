//! The `kerbside` binary: parse the command line, set up logging, hand over.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use kerbside::app::Application;
use kerbside::clock::{Clock, SystemClock, rfc3339};
use kerbside::config::{Cli, Command, DeviceCommand, PartyCommand, Settings, TokenCommand};
use kerbside::domain::auth::{Role, generate_token};
use kerbside::domain::devices::{DeviceKind, check_name, generate_password};
use kerbside::domain::ids::DeviceId;
use kerbside::store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KERBSIDE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file or journal.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kerbside: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(settings)) => serve(settings),
        Some(Command::Token { action }) => token(action),
        Some(Command::Device { action }) => device(action),
        Some(Command::Party { action }) => party(action),
        Some(Command::MosquittoConf {
            out,
            listen,
            dynsec_plugin,
            mqtt_share_group,
            database,
        }) => {
            use kerbside::mqtt::mosquitto_conf::{self, Listen};
            let listen = Listen::parse(&listen)?;
            let store = Store::open(&database.database_url)?;
            let devices = store.devices().context("cannot read the device registry")?;
            let written =
                mosquitto_conf::write(&out, &listen, &dynsec_plugin, &devices, &mqtt_share_group)?;
            eprintln!(
                "wrote {}; start the broker with: mosquitto -c {}",
                written.conf.display(),
                written.conf.display()
            );
            println!("{}", written.url);
            Ok(())
        }
    }
}

fn token(action: TokenCommand) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match action {
        TokenCommand::Create {
            role,
            name,
            expires_in_days,
            expires_at,
            database,
        } => {
            let expires_at = expires_at.or_else(|| {
                expires_in_days.map(|days| now + chrono::Duration::days(i64::from(days)))
            });
            if let Some(at) = expires_at
                && at <= now
            {
                anyhow::bail!("--expires-at {} is not in the future", rfc3339(at));
            }
            let store = Store::open(&database.database_url)?;
            let token = generate_token();
            store
                .create_token_expiring(&name, Role::from(role), &token.hash, now, expires_at)
                .context("cannot store the token")?;
            println!("{}", token.secret);
        }
        TokenCommand::List { database } => {
            let tokens = Store::open(&database.database_url)?
                .tokens()
                .context("cannot read the tokens")?;
            let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), rfc3339);
            let mut out = std::io::stdout().lock();
            writeln!(out, "name\trole\tcreated_at\texpires_at\trevoked_at")?;
            for t in tokens {
                // One token a line, whatever its name holds.
                let name: String = t
                    .name
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                writeln!(
                    out,
                    "{name}\t{}\t{}\t{}\t{}",
                    t.role.as_str(),
                    rfc3339(t.created_at),
                    when(t.expires_at),
                    when(t.revoked_at)
                )?;
            }
        }
        TokenCommand::Revoke { name, database } => {
            let revoked = Store::open(&database.database_url)?
                .revoke_tokens_named(&name, now)
                .context("cannot revoke the tokens")?;
            if revoked == 0 {
                anyhow::bail!("no unrevoked token is named {name:?}");
            }
            eprintln!("revoked {revoked} token(s) named {name:?}");
        }
    }
    Ok(())
}

/// `kerbside device add|revoke|list`: straight to the store; a running
/// service notices within a few seconds.
fn party(action: PartyCommand) -> anyhow::Result<()> {
    match action {
        PartyCommand::Add { file, database } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let input: kerbside::domain::cases::PartyInput = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a party's JSON", file.display()))?;
            let party = kerbside::http::cases::new_party(input).map_err(|e| anyhow::anyhow!(e))?;
            let store = Store::open(&database.database_url)?;
            store
                .add_party(&party, SystemClock.now())
                .context("cannot add the party")?;
            println!("{}", party.webhook_secret);
            Ok(())
        }
        PartyCommand::List { database } => {
            let store = Store::open(&database.database_url)?;
            for p in store.parties()? {
                println!(
                    "{}\t{}\t{}\t{}\t{} min\t{}",
                    p.party_id,
                    p.kind.as_str(),
                    p.webhook_format.as_str(),
                    kerbside::domain::cases::redact_url(&p.webhook_url),
                    p.deadline_minutes,
                    p.name
                );
            }
            Ok(())
        }
    }
}

fn device(action: DeviceCommand) -> anyhow::Result<()> {
    let parse = |id: &str| DeviceId::parse(id).map_err(|e| anyhow::anyhow!("--id {id:?} {e}"));
    match action {
        DeviceCommand::Add {
            id,
            kind,
            name,
            database,
        } => {
            let id = parse(&id)?;
            let kind = DeviceKind::from(kind);
            let name = check_name(&name).map_err(|e| anyhow::anyhow!("--{e}"))?;
            let store = Store::open(&database.database_url)?;
            let password = generate_password();
            store
                .create_device(
                    &id,
                    kind,
                    name,
                    &password.secret,
                    &password.digest,
                    SystemClock.now(),
                )
                .context("cannot register the device")?;
            println!("{}", password.secret);
            Ok(())
        }
        DeviceCommand::Revoke { id, database } => {
            let id = parse(&id)?;
            let store = Store::open(&database.database_url)?;
            match store.revoke_device(&id, SystemClock.now())? {
                Some(d) => {
                    eprintln!(
                        "device {} revoked at {}",
                        d.device_id,
                        d.revoked_at
                            .map(kerbside::clock::rfc3339)
                            .unwrap_or_default()
                    );
                    Ok(())
                }
                None => anyhow::bail!("no device {id} is registered"),
            }
        }
        DeviceCommand::List { database } => {
            let store = Store::open(&database.database_url)?;
            let show = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(|| "-".to_owned(), kerbside::clock::rfc3339)
            };
            println!("device_id\tkind\tname\tcreated_at\tlast_seen_at\trevoked_at");
            for d in store.devices()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.device_id,
                    d.kind.as_str(),
                    d.name,
                    kerbside::clock::rfc3339(d.created_at),
                    show(d.last_seen_at),
                    show(d.revoked_at)
                );
            }
            Ok(())
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = Application::build(settings.clone(), Arc::new(SystemClock)).await?;
        tracing::info!(
            "kerbside serving on http://{}:{} (docs at /docs/)",
            settings
                .http
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h),
            app.http_port()
        );
        let handle = app.handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            handle.stop(true).await;
        });
        app.run().await.context("the HTTP server failed")
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
