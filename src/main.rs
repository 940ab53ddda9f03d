//! The `kerbside` binary: parse the command line, set up logging, hand over.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kerbside::app::Application;
use kerbside::clock::{Clock, SystemClock};
use kerbside::config::{Cli, Command, Settings, TokenCommand};
use kerbside::domain::auth::{Role, generate_token};
use kerbside::store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KERBSIDE_LOG")
        // rumqttd logs every client disconnect as an error; quiet by default.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
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
        Some(Command::Token {
            action:
                TokenCommand::Create {
                    role,
                    name,
                    database,
                },
        }) => {
            let store = Store::open(&database.database_url)?;
            let token = generate_token();
            store
                .create_token(&name, Role::from(role), &token.hash, SystemClock.now())
                .context("cannot store the token")?;
            println!("{}", token.secret);
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
