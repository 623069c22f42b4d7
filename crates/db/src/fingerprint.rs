//! Schema fingerprint: applied migrations plus the catalog of our tables, hashed, so two
//! databases (dev and prod, say) can be compared by one value and, when they differ, by item.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::DbError;
use crate::catalog::current_database;
use crate::migrate::{HISTORY_TABLE, MigrationInfo, applied_migrations};

/// The kind of a catalog object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Table,
    Column,
    Constraint,
    Index,
    /// A row-level security policy (migration V7).
    Policy,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Policy => "policy",
        }
    }
}

/// One object of the schema, described without OIDs or positions, so equal schemas describe
/// equally whatever order they were built in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogEntry {
    pub table: String,
    pub kind: ObjectKind,
    /// The table's name for [`ObjectKind::Table`].
    pub name: String,
    /// Type, nullability, default and generation for columns; PostgreSQL's own definition text
    /// for constraints and indexes.
    pub definition: String,
}

impl CatalogEntry {
    /// How a message names it: `column l0_raw.extra`, `index l0_raw_pkey on l0_raw`.
    fn item(&self) -> String {
        match self.kind {
            ObjectKind::Table => format!("table {}", self.table),
            ObjectKind::Column => format!("column {}.{}", self.table, self.name),
            ObjectKind::Constraint | ObjectKind::Index | ObjectKind::Policy => {
                format!("{} {} on {}", self.kind.as_str(), self.name, self.table)
            }
        }
    }
}

/// A database's schema, summarised. Compare [`hash`](Self::hash)es; [`diff`] says what differs.
#[derive(Debug, Clone)]
pub struct SchemaFingerprint {
    /// Which database this describes (not part of the hash).
    pub database: String,
    /// Lower-case hex SHA-256 over `migrations` (version and checksum) and `catalog`.
    pub hash: String,
    /// Applied migrations, by version.
    pub migrations: Vec<MigrationInfo>,
    /// Our tables in the current schema (refinery's history table excluded), sorted.
    pub catalog: Vec<CatalogEntry>,
}

/// One way two fingerprints differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaDifference {
    OnlyIn {
        item: String,
        database: String,
        definition: String,
    },
    Differs {
        item: String,
        left_database: String,
        left: String,
        right_database: String,
        right: String,
    },
}

impl fmt::Display for SchemaDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaDifference::OnlyIn {
                item,
                database,
                definition,
            } => {
                write!(f, "{item} only in {database} ({definition})")
            }
            SchemaDifference::Differs {
                item,
                left_database,
                left,
                right_database,
                right,
            } => {
                write!(
                    f,
                    "{item} differs: {left} in {left_database}, {right} in {right_database}"
                )
            }
        }
    }
}

/// Fingerprint the connected database.
pub async fn fingerprint(pool: &PgPool) -> Result<SchemaFingerprint, DbError> {
    // A read-only transaction, rolled back on drop: through a pooler in transaction mode it
    // keeps one server connection for each statement's two exchanges (Parse, then Bind).
    let mut conn = pool
        .begin()
        .await
        .map_err(DbError::query("get a connection"))?;
    let database = current_database(&mut conn).await?;
    let migrations = applied_migrations(&mut conn).await?;
    let mut catalog = read_catalog(&mut conn).await?;
    catalog.sort();

    let mut hasher = Sha256::new();
    for migration in &migrations {
        hasher.update(format!(
            "migration\t{}\t{}\n",
            migration.version, migration.checksum
        ));
    }
    for entry in &catalog {
        hasher.update(format!(
            "{}\t{}\t{}\t{}\n",
            entry.kind.as_str(),
            entry.table,
            entry.name,
            entry.definition
        ));
    }
    let hash = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(SchemaFingerprint {
        database,
        hash,
        migrations,
        catalog,
    })
}

/// Everything that differs between `left` and `right`, migrations first, then by table.
pub fn diff(left: &SchemaFingerprint, right: &SchemaFingerprint) -> Vec<SchemaDifference> {
    let (left_items, right_items) = (items(left), items(right));
    let keys: BTreeSet<&ItemKey> = left_items.keys().chain(right_items.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (left_items.get(key), right_items.get(key)) {
            (Some((item, definition)), None) => Some(SchemaDifference::OnlyIn {
                item: item.clone(),
                database: left.database.clone(),
                definition: definition.clone(),
            }),
            (None, Some((item, definition))) => Some(SchemaDifference::OnlyIn {
                item: item.clone(),
                database: right.database.clone(),
                definition: definition.clone(),
            }),
            (Some((item, l)), Some((_, r))) if l != r => Some(SchemaDifference::Differs {
                item: item.clone(),
                left_database: left.database.clone(),
                left: l.clone(),
                right_database: right.database.clone(),
                right: r.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// What identifies an item across databases; its derived order puts migrations first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ItemKey {
    Migration(i32),
    Object {
        table: String,
        kind: ObjectKind,
        name: String,
    },
}

/// Every item of a fingerprint with how messages name it and its definition.
fn items(fingerprint: &SchemaFingerprint) -> BTreeMap<ItemKey, (String, String)> {
    let migrations = fingerprint.migrations.iter().map(|m| {
        (
            ItemKey::Migration(m.version),
            (format!("migration {m}"), format!("checksum {}", m.checksum)),
        )
    });
    let objects = fingerprint.catalog.iter().map(|entry| {
        let key = ItemKey::Object {
            table: entry.table.clone(),
            kind: entry.kind,
            name: entry.name.clone(),
        };
        (key, (entry.item(), entry.definition.clone()))
    });
    migrations.chain(objects).collect()
}

/// Filters shared by the catalog queries: ordinary and partitioned tables in the current
/// schema, except refinery's bookkeeping (`$1`).
const OUR_TABLES: &str =
    "n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> $1";

async fn read_catalog(conn: &mut PgConnection) -> Result<Vec<CatalogEntry>, DbError> {
    let context = "read the schema catalog";
    let mut catalog = Vec::new();

    let tables: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text,
                CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END
                || CASE WHEN c.relrowsecurity THEN ', row security' ELSE '' END
                || CASE WHEN c.relforcerowsecurity THEN ', forced' ELSE '' END
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {OUR_TABLES}"
    )))
    .bind(HISTORY_TABLE)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::query(context))?;
    catalog.extend(tables.into_iter().map(|(table, kind)| CatalogEntry {
        name: table.clone(),
        table,
        kind: ObjectKind::Table,
        definition: kind,
    }));

    type ColumnRow = (String, String, String, bool, String, String, Option<String>);
    let columns: Vec<ColumnRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid)
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE {OUR_TABLES} AND a.attnum > 0 AND NOT a.attisdropped"
    )))
    .bind(HISTORY_TABLE)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::query(context))?;
    catalog.extend(columns.into_iter().map(
        |(table, name, data_type, not_null, identity, generated, expression)| CatalogEntry {
            table,
            kind: ObjectKind::Column,
            name,
            definition: column_definition(
                &data_type,
                not_null,
                &identity,
                &generated,
                expression.as_deref(),
            ),
        },
    ));

    let constraints =
        "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid, true)
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace";
    let indexes = "SELECT c.relname::text, i.relname::text, pg_get_indexdef(i.oid)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class c ON c.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace";
    // Command, roles, permissive or restrictive, and the two conditions.
    let policies = "SELECT c.relname::text, p.polname::text,
                concat_ws(' ', 'for', CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                    WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete' ELSE 'all' END,
                    CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                    'to', (SELECT string_agg(CASE r WHEN 0 THEN 'public' ELSE pg_get_userbyid(r)::text END, ',' ORDER BY 1)
                           FROM unnest(p.polroles) AS r),
                    'using (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                    'with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
         FROM pg_policy p
         JOIN pg_class c ON c.oid = p.polrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace";
    for (select, kind) in [
        (constraints, ObjectKind::Constraint),
        (indexes, ObjectKind::Index),
        (policies, ObjectKind::Policy),
    ] {
        let rows: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{select}\n         WHERE {OUR_TABLES}"
        )))
        .bind(HISTORY_TABLE)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await
        .map_err(DbError::query(context))?;
        catalog.extend(
            rows.into_iter()
                .map(|(table, name, definition)| CatalogEntry {
                    table,
                    kind,
                    name,
                    definition,
                }),
        );
    }

    Ok(catalog)
}

/// `bigint not null generated always as identity`, `text not null default now()`,
/// `tsvector generated always as (…) stored`.
fn column_definition(
    data_type: &str,
    not_null: bool,
    identity: &str,
    generated: &str,
    expression: Option<&str>,
) -> String {
    let mut definition = data_type.to_owned();
    if not_null {
        definition.push_str(" not null");
    }
    match identity {
        "a" => definition.push_str(" generated always as identity"),
        "d" => definition.push_str(" generated by default as identity"),
        _ => {}
    }
    if let Some(expression) = expression {
        if generated == "s" {
            definition.push_str(&format!(" generated always as ({expression}) stored"));
        } else {
            definition.push_str(&format!(" default {expression}"));
        }
    }
    definition
}
