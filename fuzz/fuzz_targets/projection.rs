//! Arbitrary sequences of every write and read path, reconnects and replays: the relay's
//! projection, every staff member's store and the naive oracle must agree after every step
//! (invariants 1 and 2), stores must equal fresh snapshots (invariant 7), and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_shared::sim::{Op, World};

fuzz_target!(|data: &[u8]| {
    let mut bytes = data;
    let mut world = World::new();
    let mut steps = 0;
    while let Some(op) = Op::decode(&mut bytes) {
        world.step(&op);
        world.check();
        steps += 1;
        if steps == 128 {
            break;
        }
    }
});
