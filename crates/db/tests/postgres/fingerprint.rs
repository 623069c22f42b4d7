//! Schema fingerprints: equal for equal schemas, and a diff that names what differs.

use db::{SchemaDifference, diff, fingerprint};

#[tokio::test]
async fn equal_schemas_match_and_an_extra_column_is_named() {
    let (_first, first_pool) = crate::common::fresh().await;
    let (second, second_pool) = crate::common::fresh().await;
    db::migrate(&first_pool).await.unwrap();
    db::migrate(&second_pool).await.unwrap();

    let a = fingerprint(&first_pool).await.unwrap();
    let b = fingerprint(&second_pool).await.unwrap();
    assert_eq!(a.hash, b.hash);
    assert!(diff(&a, &b).is_empty());
    assert_eq!(a.migrations.len(), 11);
    assert!(a.catalog.iter().any(|e| {
        e.table == "l0_raw"
            && e.name == "search_tsv"
            && e.definition
                .contains("generated always as (search_document(content))")
    }));
    assert!(
        a.catalog
            .iter()
            .all(|e| e.table != "refinery_schema_history")
    );

    sqlx::raw_sql("ALTER TABLE l0_raw ADD COLUMN extra integer")
        .execute(&second_pool)
        .await
        .unwrap();
    let b = fingerprint(&second_pool).await.unwrap();
    assert_ne!(a.hash, b.hash);
    let differences = diff(&a, &b);
    assert_eq!(
        differences,
        [SchemaDifference::OnlyIn {
            item: "column l0_raw.extra".to_owned(),
            database: second.name.clone(),
            definition: "integer".to_owned(),
        }]
    );
    assert_eq!(
        differences[0].to_string(),
        format!("column l0_raw.extra only in {} (integer)", second.name)
    );
}

#[tokio::test]
async fn creation_order_does_not_matter_but_definitions_do() {
    let (_first, first_pool) = crate::common::fresh().await;
    let (second, second_pool) = crate::common::fresh().await;
    db::migrate(&first_pool).await.unwrap();
    db::migrate(&second_pool).await.unwrap();
    sqlx::raw_sql("CREATE INDEX extra_a ON l2_insights (importance); CREATE INDEX extra_b ON l2_insights (created_at)")
        .execute(&first_pool)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE INDEX extra_b ON l2_insights (created_at); CREATE INDEX extra_a ON l2_insights (importance)")
        .execute(&second_pool)
        .await
        .unwrap();
    let a = fingerprint(&first_pool).await.unwrap();
    assert_eq!(
        a.hash,
        fingerprint(&second_pool).await.unwrap().hash,
        "same objects, other order"
    );

    sqlx::raw_sql("DROP INDEX extra_a; CREATE INDEX extra_a ON l2_insights (importance DESC)")
        .execute(&second_pool)
        .await
        .unwrap();
    let b = fingerprint(&second_pool).await.unwrap();
    let differences = diff(&a, &b);
    assert_eq!(differences.len(), 1, "{differences:?}");
    let SchemaDifference::Differs {
        item,
        right_database,
        right,
        ..
    } = &differences[0]
    else {
        panic!("expected a changed index, got {}", differences[0]);
    };
    assert_eq!(item, "index extra_a on l2_insights");
    assert_eq!(right_database, &second.name);
    assert!(right.contains("importance DESC"), "{right}");
}

#[tokio::test]
async fn applied_migrations_are_part_of_the_fingerprint() {
    let (_first, first_pool) = crate::common::fresh().await;
    let (_second, second_pool) = crate::common::fresh().await;
    let empty = fingerprint(&first_pool).await.unwrap();
    assert!(empty.migrations.is_empty() && empty.catalog.is_empty());
    db::migrate(&first_pool).await.unwrap();
    db::migrate(&second_pool).await.unwrap();
    sqlx::query("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1")
        .execute(&second_pool)
        .await
        .unwrap();
    let differences = diff(
        &fingerprint(&first_pool).await.unwrap(),
        &fingerprint(&second_pool).await.unwrap(),
    );
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0]
            .to_string()
            .starts_with("migration V1__initial_schema differs"),
        "{}",
        differences[0]
    );
}
