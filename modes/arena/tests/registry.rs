//! The arena in a registry: what a process hosting it resolves and refuses.

use outpost_protocol::{MatchConfig, RejectCode};
use outpost_sim::ModeError;

#[test]
fn a_registry_fills_the_schema_hash_and_refuses_what_it_cannot_host() {
    let modes = outpost_arena::modes();
    assert_eq!(modes.names().collect::<Vec<_>>(), ["arena"]);
    let config = modes.config("arena", None).expect("the arena's defaults");
    let (mode, schema) = modes.resolve(&config).expect("hosts its own config");
    assert_eq!(mode.name(), "arena");
    assert_eq!(schema.hash(), config.schema_hash);
    assert_eq!(schema.mode, "arena");

    let unknown = MatchConfig {
        mode: "tetris".into(),
        ..config.clone()
    };
    assert_eq!(
        modes
            .resolve(&unknown)
            .map(|_| ())
            .unwrap_err()
            .reject_code(),
        RejectCode::UnknownMode
    );
    let stale = MatchConfig {
        schema_hash: config.schema_hash.wrapping_add(1),
        ..config.clone()
    };
    assert_eq!(
        modes.resolve(&stale).map(|_| ()).unwrap_err().reject_code(),
        RejectCode::SchemaMismatch
    );
    let garbage = MatchConfig {
        mode_config: vec![1, 2, 3],
        ..config.clone()
    };
    assert_eq!(
        modes
            .resolve(&garbage)
            .map(|_| ())
            .unwrap_err()
            .reject_code(),
        RejectCode::InvalidConfig
    );
    assert!(matches!(
        modes.config("arena", Some(vec![0; 9])),
        Err(ModeError::InvalidConfig(_))
    ));
}
