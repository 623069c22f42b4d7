//! The subcommands. Each returns the process exit code and writes its own output.

use std::io::Write;

use config_core::EnvSnapshot;

use crate::cli::{Cli, Command, ConfigCommand, MigrateArgs};
use crate::config::{self, AppConfig};
use crate::exit;
use crate::lifecycle;
use crate::serve::serve;

/// Runs the parsed command line against the given process environment.
pub fn run(cli: &Cli, env: &EnvSnapshot) -> u8 {
    match &cli.command {
        Command::Serve(args) => serve(cli, args, env),
        Command::Config(command) => config_command(cli, command, env),
        Command::Migrate(args) => migrate(cli, args, env),
        Command::Doctor(args) => {
            crate::checks::doctor(&cli.config_source(), env, &args.host_root).print(args.json)
        }
        Command::Backup(args) => with_config(cli, env, |loaded| {
            lifecycle::backup::command(loaded, &cli.config_root, args)
        }),
        Command::Restore(args) => {
            with_config(cli, env, |loaded| lifecycle::restore::command(loaded, args))
        }
        Command::Export(args) => {
            with_config(cli, env, |loaded| lifecycle::export::command(loaded, args))
        }
        Command::Import(args) => {
            with_config(cli, env, |loaded| lifecycle::import::command(loaded, args))
        }
        Command::Health(args) => crate::probe::run(cli, args, env),
        Command::Auth(crate::cli::AuthCommand::NewKey(args)) => new_key(args),
    }
}

/// Runs `command` with the loaded configuration, or returns 78 after printing its problems.
fn with_config(
    cli: &Cli,
    env: &EnvSnapshot,
    command: impl FnOnce(&config_core::Loaded<AppConfig>) -> u8,
) -> u8 {
    match load_or_report(cli, env) {
        Ok(loaded) => command(&loaded),
        Err(code) => code,
    }
}

pub use crate::exit::db_exit_code;

/// Loads the configuration, printing warnings, or prints every problem and returns exit 78.
pub(crate) fn load_or_report(
    cli: &Cli,
    env: &EnvSnapshot,
) -> Result<config_core::Loaded<AppConfig>, u8> {
    match config::load(&cli.config_source(), env) {
        Ok(loaded) => {
            for warning in loaded.resolution.report.warnings() {
                eprintln!("{warning}");
            }
            Ok(loaded)
        }
        Err(failure) => {
            eprintln!("configuration is invalid:\n{}", failure.report);
            Err(exit::CONFIG)
        }
    }
}

/// `auth new-key`: the key on stdout once, with the keys-file line.
fn new_key(args: &crate::cli::NewKeyArgs) -> u8 {
    match crate::auth::api_keys::generate(
        &args.name,
        args.tenant.clone(),
        args.scopes,
        args.expires,
    ) {
        Ok((key, entry)) => {
            println!("key: {key}");
            println!("line: {}", entry.line());
            eprintln!(
                "The key is shown only now: give it to the client (Authorization: Bearer <key>).\n\
                 Append the line to the file server.auth.keys_file names, then reload the daemon \
                 (systemctl reload cognitive-memory-mcp, or kill -HUP)."
            );
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            exit::FAILURE
        }
    }
}

fn migrate(cli: &Cli, args: &MigrateArgs, env: &EnvSnapshot) -> u8 {
    let loaded = match load_or_report(cli, env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let environment = loaded.resolution.environment;
    let database = &loaded.config.database;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Stamping and migrating take the session schema lock: past any pooler.
        let pool = db::connect_direct(database, |progress| {
            eprintln!("waiting for the database: {progress}")
        })
        .await?;
        let outcome = migrate_pool(&pool, environment, args).await;
        pool.close().await;
        outcome
    });
    match result {
        Ok(()) => exit::OK,
        Err(err) => {
            eprintln!("error: {err}");
            if matches!(err, db::DbError::Unstamped { .. }) && !args.stamp {
                eprintln!(
                    "hint: a new, empty database is stamped with `cognitive-memory-mcp --env {environment} migrate --stamp`"
                );
            }
            db_exit_code(&err)
        }
    }
}

async fn migrate_pool(
    pool: &sqlx::PgPool,
    environment: config_core::Environment,
    args: &MigrateArgs,
) -> Result<(), db::DbError> {
    if args.dry_run {
        if args.stamp {
            println!("would stamp the database for {environment} (only if it is new and empty)");
        } else {
            db::check_stamp(pool, environment).await?;
        }
        let pending = db::pending(pool).await?;
        if pending.is_empty() {
            println!("no pending migrations");
        }
        for migration in &pending {
            println!("pending: {migration}");
        }
        return Ok(());
    }
    if args.stamp {
        match db::stamp(pool, environment, "cognitive-memory-mcp migrate --stamp").await? {
            db::StampOutcome::Stamped { migrations } => {
                println!("stamped for {environment}; {migrations}")
            }
            db::StampOutcome::AlreadyStamped(_) => println!("already stamped for {environment}"),
        }
    } else {
        db::check_stamp(pool, environment).await?;
    }
    println!("{}", db::migrate(pool).await?);
    Ok(())
}

fn config_command(cli: &Cli, command: &ConfigCommand, env: &EnvSnapshot) -> u8 {
    let source = cli.config_source();
    match command {
        ConfigCommand::Template => {
            print!("{}", config::env_template());
            exit::OK
        }
        ConfigCommand::Check => match config::load(&source, env) {
            Ok(loaded) => {
                let report = &loaded.resolution.report;
                if !report.is_empty() {
                    eprintln!("{report}");
                }
                println!(
                    "configuration OK for {} ({} warning{})",
                    loaded.resolution.environment,
                    report.warnings().count(),
                    if report.warnings().count() == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
                exit::OK
            }
            Err(failure) => {
                let env_name = failure
                    .resolution
                    .as_ref()
                    .map(|r| r.environment.as_str())
                    .unwrap_or("the selected environment");
                eprintln!(
                    "configuration for {env_name} is invalid:\n{}",
                    failure.report
                );
                exit::CONFIG
            }
        },
        ConfigCommand::Explain => {
            // Explain even a broken configuration: that is when it is needed most.
            let options = config::options(&source, env);
            let outcome = config_core::load::<AppConfig>(&options);
            let (resolution, report, failed) = match outcome {
                Ok(loaded) => {
                    let report = loaded.resolution.report.clone();
                    (Some(Box::new(loaded.resolution)), report, false)
                }
                Err(failure) => (failure.resolution, failure.report, true),
            };
            if let Some(resolution) = &resolution {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(config_core::explain(resolution).as_bytes());
            }
            if !report.is_empty() {
                eprintln!("{report}");
            }
            if failed { exit::CONFIG } else { exit::OK }
        }
    }
}
