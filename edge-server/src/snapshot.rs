//! Choosing what goes into one client's snapshot when it cannot all fit.
//!
//! Full state for now (delta compression and interest management come later), but a
//! snapshot never exceeds the connection's datagram size: the client's own character
//! comes first, then other characters, then props in a rotation that sends each prop in
//! turn, so nothing starves.

use outpost_protocol::{EntityId, EntityKind, EntityState};

/// Picks at most `capacity` entities from `state` (sorted by id) for a client who
/// controls `own`. `cursor` carries the prop rotation between snapshots.
pub fn select(
    state: &[EntityState],
    own: EntityId,
    capacity: usize,
    cursor: &mut usize,
    out: &mut Vec<EntityState>,
) {
    out.clear();
    if capacity == 0 {
        return;
    }
    if let Some(me) = state.iter().find(|e| e.id == own) {
        out.push(*me);
    }
    for player in state
        .iter()
        .filter(|e| e.kind == EntityKind::Player && e.id != own)
    {
        if out.len() == capacity {
            return;
        }
        out.push(*player);
    }
    let props: Vec<&EntityState> = state
        .iter()
        .filter(|e| e.kind != EntityKind::Player)
        .collect();
    if props.is_empty() {
        return;
    }
    let room = (capacity - out.len()).min(props.len());
    let start = *cursor % props.len();
    out.extend(props.iter().cycle().skip(start).take(room).copied());
    *cursor = (start + room) % props.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(id: u32, kind: EntityKind) -> EntityState {
        EntityState {
            id: EntityId(id),
            kind,
            ..EntityState::default()
        }
    }

    fn world() -> Vec<EntityState> {
        let mut state: Vec<EntityState> = (1..=10).map(|i| entity(i, EntityKind::Prop)).collect();
        state.extend((11..=13).map(|i| entity(i, EntityKind::Player)));
        state
    }

    #[test]
    fn everything_is_sent_when_it_fits() {
        let (mut out, mut cursor) = (Vec::new(), 0);
        select(&world(), EntityId(12), 100, &mut cursor, &mut out);
        assert_eq!(out.len(), 13);
        assert_eq!(out[0].id, EntityId(12), "own character first");
    }

    #[test]
    fn players_first_then_props_in_rotation() {
        let state = world();
        let (mut out, mut cursor) = (Vec::new(), 0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            select(&state, EntityId(13), 6, &mut cursor, &mut out);
            assert_eq!(out.len(), 6);
            assert_eq!(out[0].id, EntityId(13));
            assert!(out[1..3].iter().all(|e| e.kind == EntityKind::Player));
            seen.extend(out[3..].iter().map(|e| e.id));
        }
        assert_eq!(seen.len(), 10, "every prop is sent in turn");
    }

    #[test]
    fn tiny_budgets_keep_the_most_important() {
        let (mut out, mut cursor) = (Vec::new(), 0);
        select(&world(), EntityId(11), 1, &mut cursor, &mut out);
        assert_eq!(
            out.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![EntityId(11)]
        );
        select(&world(), EntityId(11), 0, &mut cursor, &mut out);
        assert!(out.is_empty());
    }
}
