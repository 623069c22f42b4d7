//! Checks across the environments checked in one run: production secrets not reused from
//! development or test, every environment on its own database, and development's schema equal to
//! production's.

use config_core::Environment;
use db::SchemaDifference;
use secrecy::ExposeSecret;

use super::environment::EnvironmentFacts;
use super::{CheckResult, Invocation, Scope, ids, list, plural};

const DEFAULT_PAIR: Scope = Scope::Pair(Environment::Development, Environment::Production);

/// `secret-reuse`, `database-separation` and `schema-drift` over `facts` (one per environment
/// checked).
pub fn cross_environment(facts: &[EnvironmentFacts], invocation: &Invocation) -> Vec<CheckResult> {
    let mut results = secret_reuse(facts);
    results.extend(database_separation(facts));
    results.extend(schema_drift(facts, invocation));
    results
}

fn checked(facts: &[EnvironmentFacts]) -> String {
    if facts.is_empty() {
        "none".to_owned()
    } else {
        facts
            .iter()
            .map(|f| f.environment.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn secret_reuse(facts: &[EnvironmentFacts]) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for high in facts.iter().filter(|f| f.environment.is_strict()) {
        for low in facts.iter().filter(|f| !f.environment.is_strict()) {
            let scope = Scope::Pair(low.environment, high.environment);
            if high.secrets.is_empty() || low.secrets.is_empty() {
                let empty = if high.secrets.is_empty() { high } else { low };
                results.push(CheckResult::skip(
                    ids::SECRET_REUSE,
                    scope,
                    format!("{} has no secret set to compare", empty.environment),
                ));
                continue;
            }
            let mut reused = Vec::new();
            let mut fixes = Vec::new();
            for ours in &high.secrets {
                for theirs in &low.secrets {
                    if ours.value.expose_secret().as_bytes()
                        == theirs.value.expose_secret().as_bytes()
                    {
                        reused.push(format!(
                            "{} {} [{}] equals {} {} [{}]",
                            high.environment,
                            ours.label,
                            ours.source,
                            low.environment,
                            theirs.label,
                            theirs.source
                        ));
                        let fix = if ours.label.starts_with("DATABASE_URL") {
                            format!(
                                "give role {} a new password (cargo xtask setup-db --env {} --reset-password) and put the new DATABASE_URL at [{}]",
                                db::role_name(high.environment),
                                high.environment,
                                ours.source
                            )
                        } else {
                            format!(
                                "put a new {} {} at [{}] (openssl rand -hex 32)",
                                high.environment, ours.label, ours.source
                            )
                        };
                        if !fixes.contains(&fix) {
                            fixes.push(fix);
                        }
                    }
                }
            }
            if reused.is_empty() {
                results.push(CheckResult::pass(
                    ids::SECRET_REUSE,
                    scope,
                    format!(
                        "no {} secret equals a {} secret ({} compared with {})",
                        high.environment,
                        low.environment,
                        high.secrets.len(),
                        low.secrets.len()
                    ),
                ));
            } else {
                results.push(
                    CheckResult::fail(ids::SECRET_REUSE, scope, list(&reused, 4))
                        .with_fix(fixes.join("; ")),
                );
            }
        }
    }
    if results.is_empty() {
        results.push(CheckResult::skip(
            ids::SECRET_REUSE,
            DEFAULT_PAIR,
            format!(
                "needs development or test and staging or production; checked: {}",
                checked(facts)
            ),
        ));
    }
    results
}

fn database_separation(facts: &[EnvironmentFacts]) -> Vec<CheckResult> {
    let with_database: Vec<&EnvironmentFacts> =
        facts.iter().filter(|f| f.database.is_some()).collect();
    let mut results = Vec::new();
    for (i, a) in with_database.iter().enumerate() {
        for b in &with_database[i + 1..] {
            let (Some(da), Some(db_)) = (&a.database, &b.database) else {
                continue;
            };
            let scope = Scope::Pair(a.environment, b.environment);
            if da.key == db_.key {
                // Change the one that does not name its own environment's database.
                let (wrong, identity) = if da.name != db::database_name(a.environment) {
                    (a.environment, da)
                } else {
                    (b.environment, db_)
                };
                results.push(
                    CheckResult::fail(
                        ids::DATABASE_SEPARATION,
                        scope,
                        format!(
                            "{} [{}] and {} [{}] both use database {}",
                            a.environment, da.source, b.environment, db_.source, da.shown
                        ),
                    )
                    .with_fix(format!(
                        "point {wrong}'s DATABASE_URL [{}] at its own database {} (cargo xtask setup-db --env {wrong} creates it)",
                        identity.source,
                        db::database_name(wrong)
                    )),
                );
            } else {
                results.push(CheckResult::pass(
                    ids::DATABASE_SEPARATION,
                    scope,
                    format!(
                        "{} uses {}, {} uses {}",
                        a.environment, da.shown, b.environment, db_.shown
                    ),
                ));
            }
        }
    }
    if results.is_empty() {
        results.push(CheckResult::skip(
            ids::DATABASE_SEPARATION,
            DEFAULT_PAIR,
            format!(
                "needs two environments with a usable database.url; checked: {}",
                checked(facts)
            ),
        ));
    }
    results
}

fn schema_drift(facts: &[EnvironmentFacts], invocation: &Invocation) -> Vec<CheckResult> {
    let Some(production) = facts
        .iter()
        .find(|f| f.environment == Environment::Production)
    else {
        return vec![CheckResult::skip(
            ids::SCHEMA_DRIFT,
            DEFAULT_PAIR,
            format!(
                "production is not checked (no .env.production; add --env production); checked: {}",
                checked(facts)
            ),
        )];
    };
    let others: Vec<&EnvironmentFacts> = facts
        .iter()
        .filter(|f| f.environment != Environment::Production)
        .collect();
    if others.is_empty() {
        return vec![CheckResult::skip(
            ids::SCHEMA_DRIFT,
            DEFAULT_PAIR,
            "no other environment is checked to compare with production (add --env development)",
        )];
    }
    let mut results = Vec::new();
    for other in others {
        let scope = Scope::Pair(other.environment, Environment::Production);
        let same_database = matches!(
            (&other.database, &production.database),
            (Some(a), Some(b)) if a.key == b.key
        );
        let (ours, theirs) = match (&other.fingerprint, &production.fingerprint) {
            _ if same_database => {
                results.push(CheckResult::skip(
                    ids::SCHEMA_DRIFT,
                    scope,
                    format!(
                        "{} and production use the same database; nothing to compare",
                        other.environment
                    ),
                ));
                continue;
            }
            (_, Err(reason)) => {
                results.push(CheckResult::skip(
                    ids::SCHEMA_DRIFT,
                    scope,
                    format!("production: {reason}"),
                ));
                continue;
            }
            (Err(reason), _) => {
                results.push(CheckResult::skip(
                    ids::SCHEMA_DRIFT,
                    scope,
                    format!("{}: {reason}", other.environment),
                ));
                continue;
            }
            (Ok(ours), Ok(theirs)) => (ours, theirs),
        };
        if ours.hash == theirs.hash {
            results.push(CheckResult::pass(
                ids::SCHEMA_DRIFT,
                scope,
                format!(
                    "{} ({}) and production ({}) have the same schema (fingerprint {})",
                    other.environment,
                    ours.database,
                    theirs.database,
                    &ours.hash[..12.min(ours.hash.len())]
                ),
            ));
            continue;
        }
        let differences = db::diff(ours, theirs);
        let texts: Vec<String> = differences.iter().map(ToString::to_string).collect();
        let migration_only_in = |database: &str| {
            differences.iter().any(|d| {
                matches!(d, SchemaDifference::OnlyIn { item, database: db, .. }
                    if item.starts_with("migration ") && db == database)
            })
        };
        let environment = other.environment;
        let fix = if migration_only_in(&theirs.database) {
            format!(
                "apply the migrations to {environment}: cargo xtask setup-db --env {environment}"
            )
        } else if migration_only_in(&ours.database) {
            format!(
                "apply the migrations to production: {}",
                invocation.command(Environment::Production, "migrate")
            )
        } else if environment.is_strict() {
            format!(
                "turn the hand-made change in {} into a migration in migrations/, or undo it",
                ours.database
            )
        } else {
            format!(
                "rebuild {environment} from the migrations: cargo xtask setup-db --env {environment} --reset (drops its data); or turn the change into a migration in migrations/"
            )
        };
        results.push(
            CheckResult::fail(
                ids::SCHEMA_DRIFT,
                scope,
                format!(
                    "{} ({}) and production ({}) differ in {}: {}",
                    environment,
                    ours.database,
                    theirs.database,
                    plural(texts.len(), "item"),
                    list(&texts, 5)
                ),
            )
            .with_fix(fix),
        );
    }
    results
}
