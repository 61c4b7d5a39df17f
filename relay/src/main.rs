//! The `tally-relay` binary.

fn main() {
    println!("tally-relay");
}
