//! Named regressions: each agent bug the simulation found, as the flow
//! that showed it.

use crate::harness::*;
use crate::scenarios::requests;

/// Inventory `PUT` answers 405: `PATCH` from then on. The agent reset
/// the PATCH choice at every call, so every inventory round cost a 405.
#[test]
fn regression_inventory_405_patch_is_remembered() {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.patch_only = true;
    let mut agent = w.start(&mut buffers);
    // Two inventory rounds (the interval is 8 h).
    let end = w.now.after(TIMING.inventory_poll + 1000);
    w.drive(&mut agent, |w, _| w.now >= end);
    drop(agent);
    let inventory: Vec<String> = requests(&w)
        .into_iter()
        .filter(|r| r.contains("inventory"))
        .collect();
    assert_eq!(
        inventory,
        ["PUT inventory 405", "PATCH inventory 200", "PATCH inventory 200"]
    );
    assert_eq!(w.server.inventories, 2);
}

