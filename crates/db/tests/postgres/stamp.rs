//! The environment stamp: a database answers only to the environment it was stamped for.

use config_core::Environment;
use db::{DbError, MigrationReport, StampOutcome};

#[tokio::test]
async fn stamping_a_new_database_creates_the_schema_and_the_stamp_then_checks_pass() {
    let (database, pool) = crate::common::fresh().await;
    let embedded = db::pending(&pool).await.unwrap().len();
    let StampOutcome::Stamped {
        migrations: MigrationReport::Applied(applied),
    } = db::stamp(&pool, Environment::Development, "stamp test")
        .await
        .unwrap()
    else {
        panic!("a brand-new database is stamped after migrating");
    };
    assert_eq!(applied.len(), embedded);

    let stamp = db::check_stamp(&pool, Environment::Development)
        .await
        .unwrap();
    assert_eq!(stamp.database, database.name);
    assert_eq!(stamp.environment, Environment::Development);
    assert_eq!(stamp.stamped_by, "stamp test");

    let again = db::stamp(&pool, Environment::Development, "someone else")
        .await
        .unwrap();
    assert_eq!(again, StampOutcome::AlreadyStamped(stamp));
}

#[tokio::test]
async fn a_database_of_another_environment_is_refused_naming_both() {
    let (database, pool) = crate::common::fresh().await;
    db::stamp(&pool, Environment::Development, "stamp test")
        .await
        .unwrap();

    let err = db::check_stamp(&pool, Environment::Production)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        DbError::WrongEnvironment {
            stamped: Environment::Development,
            running: Environment::Production,
            ..
        }
    ));
    let message = err.to_string();
    for part in [
        database.name.as_str(),
        "stamped for development",
        "runs as production",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }

    let err = db::stamp(&pool, Environment::Production, "stamp test")
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::StampRefused { .. }), "{err}");
    assert!(
        err.to_string().contains("already stamped for development"),
        "{err}"
    );
    assert_eq!(
        db::check_stamp(&pool, Environment::Development)
            .await
            .unwrap()
            .environment,
        Environment::Development
    );
}

#[tokio::test]
async fn an_unstamped_database_is_refused() {
    let (database, pool) = crate::common::fresh().await;
    for _ in ["before migrations", "after migrations"] {
        let err = db::check_stamp(&pool, Environment::Test).await.unwrap_err();
        assert!(
            matches!(
                err,
                DbError::Unstamped {
                    running: Environment::Test,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&database.name), "{err}");
        db::migrate(&pool).await.unwrap();
    }
}

#[tokio::test]
async fn a_database_holding_memories_without_a_stamp_cannot_be_claimed() {
    let (_database, pool) = crate::common::fresh().await;
    db::migrate(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('s', 'user', 'old memory')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let err = db::stamp(&pool, Environment::Development, "stamp test")
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::StampRefused { .. }), "{err}");
    assert!(err.to_string().contains("holds memories"), "{err}");
    assert!(matches!(
        db::check_stamp(&pool, Environment::Development).await,
        Err(DbError::Unstamped { .. })
    ));
}

#[tokio::test]
async fn a_migrated_empty_database_may_be_stamped() {
    let (_database, pool) = crate::common::fresh().await;
    db::migrate(&pool).await.unwrap();
    let outcome = db::stamp(&pool, Environment::Test, "stamp test")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        StampOutcome::Stamped {
            migrations: MigrationReport::UpToDate
        }
    );
    db::check_stamp(&pool, Environment::Test).await.unwrap();
}
