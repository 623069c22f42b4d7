//! A large memory database made in SQL: `COPY` of generated dialogue turns and insights (the
//! search postings of migration V6 written by its triggers, one statement per table), with
//! the secondary indexes dropped during the load and rebuilt afterwards from their own
//! definitions (so the schema ends up exactly as migrated), then `VACUUM ANALYZE`, then a
//! `CHECKPOINT` and `sync`: the load's gigabytes of dirty pages are written out before anything
//! is measured, so the figures are not taken while the kernel and the checkpointer flush the
//! seed (a steady-state server has no such backlog).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::report::utc;
use super::words::{Rng, Vocabulary};

/// Turns per session in the seeded data.
pub const TURNS_PER_SESSION: usize = 100;
/// Rows per `COPY` chunk sent.
const CHUNK_ROWS: usize = 5_000;
const TAGS: &[&str] = &[
    "preference",
    "fact",
    "decision",
    "travel",
    "work",
    "family",
    "health",
    "food",
    "plan",
    "project",
    "contact",
    "schedule",
];

/// What was seeded, and how long it took.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub turns: u64,
    pub insights: u64,
    pub sessions: u64,
    pub copy: Duration,
    pub index: Duration,
    pub analyze: Duration,
    /// `CHECKPOINT` and `sync` after the load.
    pub settle: Duration,
    /// Size of both tables with their indexes, MiB.
    pub size_mib: f64,
}

/// The session id of seeded turn `n` (0-based).
pub fn session_of(n: usize) -> String {
    format!("session-{:06}", n / TURNS_PER_SESSION)
}

/// Row-level security of the memory tables off and on again (as migration V7 sets it); also
/// the `--rls-off-row` of the benchmark.
pub(crate) const RLS_OFF: &str = "ALTER TABLE l0_raw DISABLE ROW LEVEL SECURITY;
     ALTER TABLE l2_insights DISABLE ROW LEVEL SECURITY;
     ALTER TABLE search_postings DISABLE ROW LEVEL SECURITY;";
pub(crate) const RLS_ON: &str = "ALTER TABLE l0_raw ENABLE ROW LEVEL SECURITY;
     ALTER TABLE l2_insights ENABLE ROW LEVEL SECURITY;
     ALTER TABLE search_postings ENABLE ROW LEVEL SECURITY;";

pub async fn seed(
    url: &str,
    vocabulary: &Vocabulary,
    turns: usize,
    insights: usize,
) -> Result<Seeded> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        // Seeded as tenant `default` (row-level security, migration V7), the tenant the server
        // under test serves.
        .connect(&pg_harness::url_with_tenant(url, "default"))
        .await
        .context("connect to the benchmark database")?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relname IN ('l0_raw', 'l2_insights', 'search_postings')
           AND NOT i.indisprimary AND NOT i.indisunique
           AND t.relnamespace = to_regnamespace(current_schema())",
    )
    .fetch_all(&pool)
    .await
    .context("read the index definitions")?;
    for (name, _) in &indexes {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
            .execute(&pool)
            .await
            .with_context(|| format!("drop index {name}"))?;
    }

    // PostgreSQL refuses COPY FROM into a table under row-level security (V7): the owner lifts
    // it for the load and forces it again right after (every row is tenant `default`, the
    // session's setting).
    sqlx::raw_sql(RLS_OFF)
        .execute(&pool)
        .await
        .context("lift row-level security for the COPY")?;
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    copy_turns(conn.as_mut(), vocabulary, turns).await?;
    let (first_id, last_id): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(id), max(id) FROM l0_raw")
            .fetch_one(conn.as_mut())
            .await?;
    copy_insights(
        conn.as_mut(),
        vocabulary,
        insights,
        first_id.unwrap_or(1),
        last_id.unwrap_or(1),
    )
    .await?;
    drop(conn);
    let copy = started.elapsed();
    sqlx::raw_sql(RLS_ON)
        .execute(&pool)
        .await
        .context("restore row-level security after the COPY")?;

    // Rebuild the indexes side by side, each on its own connection.
    let started = Instant::now();
    let mut builds = Vec::new();
    for (name, definition) in indexes {
        let pool = pool.clone();
        builds.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
                .execute(conn.as_mut())
                .await?;
            sqlx::raw_sql(AssertSqlSafe(definition))
                .execute(conn.as_mut())
                .await
                .with_context(|| format!("rebuild index {name}"))?;
            anyhow::Ok(())
        }));
    }
    for build in builds {
        build.await.context("index build task")??;
    }
    let index = started.elapsed();

    let started = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) l0_raw, l2_insights, search_postings")
        .execute(&pool)
        .await
        .context("vacuum and analyze")?;
    let analyze = started.elapsed();

    // The owner holds pg_checkpoint (`stamped_database`).
    let started = Instant::now();
    sqlx::raw_sql("CHECKPOINT")
        .execute(&pool)
        .await
        .context("checkpoint after the seed")?;
    let status = std::process::Command::new("sync")
        .status()
        .context("run sync")?;
    anyhow::ensure!(status.success(), "sync failed ({status})");
    let settle = started.elapsed();

    let (turns_found, insights_found, sessions, bytes): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM l0_raw), (SELECT count(*) FROM l2_insights),
                (SELECT count(DISTINCT session_id) FROM l0_raw),
                pg_total_relation_size('l0_raw') + pg_total_relation_size('l2_insights')
                  + pg_total_relation_size('search_postings')",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(Seeded {
        turns: turns_found as u64,
        insights: insights_found as u64,
        sessions: sessions as u64,
        copy,
        index,
        analyze,
        settle,
        size_mib: bytes as f64 / (1024.0 * 1024.0),
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn timestamp(secs: u64) -> String {
    let (year, month, day, hour, minute, second) = utc(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}+00")
}

/// Turns 30 s apart, ending now; sessions of [`TURNS_PER_SESSION`] turns; 5 to 60 words.
async fn copy_turns(conn: &mut PgConnection, vocabulary: &Vocabulary, turns: usize) -> Result<()> {
    let mut rng = Rng::new(0x5EED_0001);
    let first = now_secs().saturating_sub(turns as u64 * 30);
    copy_rows(
        conn,
        "COPY l0_raw (session_id, speaker, content, created_at) FROM STDIN",
        turns,
        |n, buffer| {
            buffer.push_str(&session_of(n));
            buffer.push('\t');
            buffer.push_str(if n % 2 == 0 { "user" } else { "assistant" });
            buffer.push('\t');
            let words = rng.range(5, 61);
            vocabulary.text(&mut rng, words, buffer);
            buffer.push('\t');
            buffer.push_str(&timestamp(first + n as u64 * 30));
        },
    )
    .await
}

/// Insights of 8 to 30 words citing 0 to 3 turns, with 0 to 3 tags.
async fn copy_insights(
    conn: &mut PgConnection,
    vocabulary: &Vocabulary,
    insights: usize,
    first_id: i64,
    last_id: i64,
) -> Result<()> {
    let mut rng = Rng::new(0x5EED_0002);
    let first = now_secs().saturating_sub(insights as u64 * 300);
    let span = (last_id - first_id + 1).max(1) as usize;
    copy_rows(
        conn,
        "COPY l2_insights (content, source_ids, tags, importance, created_at) FROM STDIN",
        insights,
        |n, buffer| {
            let words = rng.range(8, 31);
            vocabulary.text(&mut rng, words, buffer);
            buffer.push_str("\t{");
            for index in 0..rng.range(0, 4) {
                if index > 0 {
                    buffer.push(',');
                }
                buffer.push_str(&(first_id + rng.range(0, span) as i64).to_string());
            }
            buffer.push_str("}\t{");
            for index in 0..rng.range(0, 4) {
                if index > 0 {
                    buffer.push(',');
                }
                buffer.push_str(TAGS[rng.range(0, TAGS.len())]);
            }
            buffer.push_str(&format!("}}\t{:.2}\t", rng.unit()));
            buffer.push_str(&timestamp(first + n as u64 * 300));
        },
    )
    .await
}

/// Runs `statement` (a `COPY … FROM STDIN`) with `rows` rows, each written by `row` (without its
/// newline), sent in chunks of [`CHUNK_ROWS`].
async fn copy_rows(
    conn: &mut PgConnection,
    statement: &str,
    rows: usize,
    mut row: impl FnMut(usize, &mut String),
) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(statement)
        .await
        .with_context(|| format!("start {statement}"))?;
    let mut buffer = String::with_capacity(CHUNK_ROWS * 256);
    for n in 0..rows {
        row(n, &mut buffer);
        buffer.push('\n');
        if (n + 1) % CHUNK_ROWS == 0 {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_bytes()).await?;
    }
    copy.finish()
        .await
        .with_context(|| format!("finish {statement}"))?;
    Ok(())
}

/// `"w1 w2"` phrases of adjacent words from `count` random seeded turns (lower case, without
/// punctuation), so that every phrase query has at least one hit.
pub async fn phrases(url: &str, count: usize, turns: usize, rng: &mut Rng) -> Result<Vec<String>> {
    let mut conn = PgConnection::connect(&pg_harness::url_with_tenant(url, "default")).await?;
    let ids: Vec<i64> = (0..count).map(|_| rng.range(1, turns + 1) as i64).collect();
    let texts: Vec<String> = sqlx::query_scalar("SELECT content FROM l0_raw WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut conn)
        .await?;
    let _ = conn.close().await;
    let mut phrases = Vec::new();
    for text in texts {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|word| {
                word.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .collect();
        if words.len() >= 2 {
            let at = rng.range(0, words.len() - 1);
            phrases.push(format!("\"{} {}\"", words[at], words[at + 1]));
        }
    }
    Ok(phrases)
}
