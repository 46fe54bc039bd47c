//! The conformance suite (`tests/conformance/`) run unchanged against each engine: sled (a
//! temporary database per test) and PostgreSQL (a real server started by the project's own code,
//! one per test binary, a fresh schema per test).

mod bitcoin_support;
mod conformance;
mod core_support;
mod pg_support;

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use crate::conformance::{self, Backend};
            const B: Backend = $backend;

            #[test]
            fn transactions_are_atomic() {
                conformance::transactions_are_atomic(B)
            }
            #[test]
            fn scans_follow_key_order_and_bounds() {
                conformance::scans_follow_key_order_and_bounds(B)
            }
            #[test]
            fn conflicts_rerun_the_step() {
                conformance::conflicts_rerun_the_step(B)
            }
            #[test]
            fn concurrent_transactions_are_serial() {
                conformance::concurrent_transactions_are_serial(B)
            }
            #[test]
            fn concurrent_reservations_never_exceed_a_cap() {
                conformance::concurrent_reservations_never_exceed_a_cap(B)
            }
            #[test]
            fn audit_and_outbox_are_gapless_under_concurrency() {
                conformance::audit_and_outbox_are_gapless_under_concurrency(B)
            }
            #[test]
            fn nonce_claims_are_exclusive() {
                conformance::nonce_claims_are_exclusive(B)
            }
            #[test]
            fn tampering_is_caught() {
                conformance::tampering_is_caught(B)
            }
            #[tokio::test]
            async fn core_signs_into_the_outbox() {
                conformance::core_signs_into_the_outbox(B).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn core_concurrent_requests_never_exceed_the_cap() {
                conformance::core_concurrent_requests_never_exceed_the_cap(B).await
            }
            #[tokio::test]
            async fn core_approvals_reach_one_quorum() {
                conformance::core_approvals_reach_one_quorum(B).await
            }
            #[tokio::test]
            async fn core_failed_step_leaves_nothing() {
                conformance::core_failed_step_leaves_nothing(B).await
            }
            #[tokio::test]
            async fn core_answers_retries_after_a_reopen() {
                conformance::core_answers_retries_after_a_reopen(B).await
            }
        }
    };
}

suite!(sled, Backend::Sled);
suite!(postgres, Backend::Postgres);

/// What only a shared database has: other writers while a full check runs, a schema version to
/// check, a server that can go away.
mod postgres_only {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use custos::secret::Secret32;
    use custos::state::audit::{self, AuditEntry};
    use custos::state::auth::StateAuth;
    use custos::state::postgres::{PgEngine, PgSettings};
    use custos::state::{verify, State, Tree};

    use crate::pg_support;

    /// The full check reads one snapshot: it finds the state intact while other replicas write.
    #[test]
    fn the_full_check_is_consistent_while_others_write() {
        let settings = pg_support::fresh_settings();
        let key = Secret32::new([9; 32]);
        let open = || {
            let state = State::open_postgres(&settings).unwrap();
            state.set_auth(Some(StateAuth::new(Secret32::new([7; 32]))));
            Arc::new(state)
        };
        let checker = open();
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            for w in 0..2 {
                let state = open();
                let stop = stop.clone();
                let key = key.duplicate();
                s.spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(Ordering::SeqCst) {
                        state
                            .transact(|tx| {
                                tx.put(Tree::Requests, format!("{w}-{n}").as_bytes(), b"{}")?;
                                audit::append_in(
                                    tx,
                                    &key,
                                    &AuditEntry {
                                        event: "write".into(),
                                        ..AuditEntry::default()
                                    },
                                )
                            })
                            .unwrap();
                        n += 1;
                    }
                });
            }
            for _ in 0..5 {
                let report = verify::verify(&checker, &key, None).unwrap();
                assert!(report.is_intact(), "{:?}", report.problems());
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert!(checker.count(Tree::Requests).unwrap() > 0);
    }

    /// A database without the schema, or with a version this binary does not know, is refused
    /// with what to do; migrating twice is harmless.
    #[test]
    fn unknown_schemas_are_refused() {
        let schema = pg_support::fresh_schema();
        let settings: PgSettings = pg_support::cluster().settings(Some(&schema)).unwrap();
        let e = PgEngine::open(&settings).unwrap_err().to_string();
        assert!(e.contains("custos state migrate"), "{e}");
        let first = PgEngine::migrate(&settings).unwrap();
        assert_eq!((first.from, first.applied.len()), (0, 1));
        let again = PgEngine::migrate(&settings).unwrap();
        assert!(again.applied.is_empty());
        let engine = PgEngine::open(&settings).unwrap();
        assert_eq!(engine.schema_version().unwrap(), Some(1));
        // A newer custos migrated this database since.
        raw_sql(
            &settings,
            "INSERT INTO custos_migrations (version, description) VALUES (99, 'future')",
        );
        let e = PgEngine::open(&settings).unwrap_err().to_string();
        assert!(
            e.contains("version 99") && e.contains("upgrade custos"),
            "{e}"
        );
        let e = PgEngine::migrate(&settings).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
    }

    /// A wrong password is a clear refusal, without the password in it.
    #[test]
    fn a_wrong_password_is_refused_cleanly() {
        let mut settings = pg_support::fresh_settings();
        settings.password = Some(custos::secret::SecretString::new("not-the-password".into()));
        let e = PgEngine::open(&settings).unwrap_err().to_string();
        assert!(e.contains("28P01") || e.contains("password"), "{e}");
        assert!(!e.contains("not-the-password"), "{e}");
    }

    fn raw_sql(settings: &PgSettings, sql: &str) {
        let config = settings.driver_config().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(sql).await.unwrap();
        });
    }
}
