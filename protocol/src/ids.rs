//! Identifiers shared by every crate.

use serde::{Deserialize, Serialize};
use wincode::{SchemaRead, SchemaWrite};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            Serialize, Deserialize, SchemaWrite, SchemaRead,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A player account, as the cloud knows it.
    PlayerId(u64)
);
id_type!(
    /// A match, unique across the whole deployment.
    MatchId(u64)
);
id_type!(
    /// A replicated entity inside one match (a player's character, a prop). Id 0 is
    /// reserved: matches hand out ids from 1.
    EntityId(u32)
);
