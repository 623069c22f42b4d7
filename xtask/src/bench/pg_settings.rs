//! `--pg-setting NAME=VALUE`: PostgreSQL settings of the bench's throwaway clusters other than
//! its defaults (memory, WAL and checkpoint sizing, as an operator tunes a server), applied with
//! `ALTER SYSTEM` and a restart before anything is measured. The durability settings are not
//! among them: the main rows always run at PostgreSQL's default durability, and the labelled
//! "fsync off" rows are `--fsync-off-row`'s.

use anyhow::{Context, Result, bail};
use pg_harness::TestCluster;
use sqlx::postgres::PgPoolOptions;

/// Settings that decide whether a commit survives a crash: never changed here.
const DURABILITY: &[&str] = &[
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "data_sync_retry",
];

/// `NAME=VALUE` with a PostgreSQL parameter name; durability settings are refused.
pub fn parse(text: &str) -> std::result::Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err("expected NAME=VALUE, e.g. shared_buffers=2GB".to_owned());
    };
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        return Err(format!("{name:?} is not a PostgreSQL parameter name"));
    }
    if DURABILITY.contains(&name.as_str()) {
        return Err(format!(
            "{name} is a durability setting: the bench's rows run at PostgreSQL's default \
             durability (use --fsync-off-row for the labelled fsync-off rows)"
        ));
    }
    Ok((name, value.trim().to_owned()))
}

/// Applies `settings` to `cluster` (`ALTER SYSTEM`, then a restart, so that settings such as
/// `shared_buffers` take effect) and prints each one's value as the server reports it.
pub async fn apply(cluster: &TestCluster, settings: &[(String, String)]) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.admin_url("postgres"))
        .await
        .context("connect to the throwaway cluster")?;
    for (name, value) in settings {
        let statement: String =
            sqlx::query_scalar("SELECT format('ALTER SYSTEM SET %I = %L', $1::text, $2::text)")
                .bind(name)
                .bind(value)
                .fetch_one(&pool)
                .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .with_context(|| format!("ALTER SYSTEM SET {name} = {value}"))?;
    }
    pool.close().await;
    cluster
        .stop_server()
        .context("stop the cluster to apply the settings")?;
    cluster
        .start_server()
        .context("restart the cluster with the settings")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.admin_url("postgres"))
        .await
        .context("connect to the restarted cluster")?;
    for (name, value) in settings {
        let shown: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&pool)
            .await
            .with_context(|| format!("read {name} back"))?;
        println!("bench: PostgreSQL {name} = {shown} (asked {value})");
    }
    let pending: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pg_settings WHERE pending_restart")
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    if !pending.is_empty() {
        bail!("settings still pending a restart: {}", pending.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_are_checked_and_durability_is_refused() {
        assert_eq!(
            parse("shared_buffers=2GB"),
            Ok(("shared_buffers".to_owned(), "2GB".to_owned()))
        );
        assert_eq!(
            parse("Max_WAL_Size = 8GB"),
            Ok(("max_wal_size".to_owned(), "8GB".to_owned()))
        );
        for bad in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ] {
            assert!(parse(bad).unwrap_err().contains("durability"), "{bad}");
        }
        assert!(parse("shared_buffers").is_err());
        assert!(parse("x;drop=1").is_err());
    }
}
