//! Embedded migrations: applied once, safe to run concurrently, and refusing edited history.

use db::{DbError, MigrationReport};

#[tokio::test]
async fn a_fresh_database_gets_every_migration_then_nothing_more() {
    let (_database, pool) = crate::common::fresh().await;
    let pending = db::pending(&pool).await.unwrap();
    assert_eq!(
        pending.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "V1__initial_schema",
            "V2__search_ranking",
            "V3__lifecycle",
            "V6__search_postings",
            "V7__tenancy",
            "V8__search_document_once",
            "V9__search_query_stop_words",
            "V10__tenant_policy_once_per_statement",
            "V11__stop_words_left_out",
            "V12__stop_word_pairs",
            "V13__forms_that_are_stop_words"
        ]
    );

    let MigrationReport::Applied(applied) = db::migrate(&pool).await.unwrap() else {
        panic!("a fresh database must get migrations");
    };
    assert_eq!(applied, pending);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "environment_stamp",
            "l0_raw",
            "l2_insights",
            "lifecycle_status",
            "memory_tenants",
            "refinery_schema_history",
            "search_postings"
        ]
    );

    assert_eq!(db::migrate(&pool).await.unwrap(), MigrationReport::UpToDate);
    assert!(db::pending(&pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_schema_does_what_the_server_relies_on() {
    let (_database, pool) = crate::common::fresh().await;
    db::migrate(&pool).await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('s1', 'user', 'Kaffee mit Milch, coffee with milk') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let found: i64 = sqlx::query_scalar(
        "SELECT id FROM l0_raw WHERE search_tsv @@ to_tsquery('simple', 'kaffee & coffee')",
    )
    .fetch_one(&pool)
    .await
    .expect("mixed-language full-text search with the simple configuration");
    assert_eq!(found, id);
    for (insert, why) in [
        (
            "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('s1', 'robot', 'x')",
            "speaker outside user/assistant/system/tool must be rejected",
        ),
        (
            "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('', 'user', 'x')",
            "an empty session id must be rejected",
        ),
        (
            "INSERT INTO l2_insights (content, importance) VALUES ('x', 1.5)",
            "importance above 1 must be rejected",
        ),
    ] {
        assert!(sqlx::query(insert).execute(&pool).await.is_err(), "{why}");
    }
    let derived: i64 = sqlx::query_scalar(
        "INSERT INTO l2_insights (content, source_ids) VALUES ('likes coffee', ARRAY[$1]) RETURNING id",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let from_turn: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM l2_insights WHERE source_ids @> ARRAY[$1]")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(from_turn, [derived]);
    let second_stamp_row = sqlx::query(
        "INSERT INTO environment_stamp (environment, stamped_by) VALUES ('test', 'a'); INSERT INTO environment_stamp (environment, stamped_by) VALUES ('test', 'b')",
    );
    assert!(
        second_stamp_row.execute(&pool).await.is_err(),
        "the stamp table holds one row at most"
    );
}

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let (_database, pool) = crate::common::fresh().await;
    let embedded = db::pending(&pool).await.unwrap().len();
    let runs = (0..3).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { db::migrate(&pool).await })
    });
    let mut applied_runs = 0;
    for run in runs.collect::<Vec<_>>() {
        match run.await.unwrap().expect("every concurrent run succeeds") {
            MigrationReport::Applied(applied) => {
                applied_runs += 1;
                assert_eq!(applied.len(), embedded);
            }
            MigrationReport::UpToDate => {}
        }
    }
    assert_eq!(applied_runs, 1, "exactly one run applies the migration");
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM refinery_schema_history")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(history, i64::try_from(embedded).unwrap());
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_by_name() {
    let (_database, pool) = crate::common::fresh().await;
    db::migrate(&pool).await.unwrap();
    sqlx::query("UPDATE refinery_schema_history SET checksum = '12345' WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();

    for err in [
        db::migrate(&pool).await.unwrap_err(),
        db::pending(&pool).await.unwrap_err(),
    ] {
        let DbError::DivergentMigration {
            version,
            name,
            applied_checksum,
            ..
        } = &err
        else {
            panic!("expected a divergent migration, got {err}");
        };
        assert_eq!(
            (*version, name.as_str(), *applied_checksum),
            (1, "initial_schema", 12345)
        );
        assert!(err.to_string().contains("V1__initial_schema"), "{err}");
    }
}

#[tokio::test]
async fn a_migration_unknown_to_this_build_is_refused() {
    let (_database, pool) = crate::common::fresh().await;
    db::migrate(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
    )
    .execute(&pool)
    .await
    .unwrap();

    for err in [
        db::migrate(&pool).await.unwrap_err(),
        db::pending(&pool).await.unwrap_err(),
    ] {
        let DbError::MissingMigration {
            version: 99,
            applied_only: true,
            ..
        } = &err
        else {
            panic!("expected a missing migration V99, got {err}");
        };
        assert!(err.to_string().contains("V99__from_the_future"), "{err}");
        assert!(err.to_string().contains("newer than this binary"), "{err}");
    }
}
