//! Properties of the mention parser: whatever the text, what it finds is what a picker could
//! have sent (the relay's check accepts it and names the same people), its pieces put the text
//! back together, and nobody outside the conversation, nor the sender, is ever mentioned.

use proptest::prelude::*;
use tally_shared::StaffId;
use tally_shared::mentions::{self, Audience, MentionRange};

fn staff() -> Vec<StaffId> {
    ["ann", "bob", "cy.d", "dee_2"]
        .iter()
        .map(|s| StaffId::new(*s).unwrap())
        .collect()
}

/// Text made of pieces likely to hold mentions, and anything else.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("@ann".to_string()),
        Just("@BOB".to_string()),
        Just("@cy.d.".to_string()),
        Just("@here".to_string()),
        Just("@All".to_string()),
        Just("x@bob".to_string()),
        Just("@@ann".to_string()),
        Just("@dave".to_string()),
        Just(" ".to_string()),
        Just("Grüße".to_string()),
        Just("👍".to_string()),
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn found_mentions_are_valid_ranges_of_the_text(body in text(), sender in 0..4usize, everyone: bool) {
        let ps = staff();
        let to = Audience { participants: &ps, sender: &ps[sender], everyone };
        let found = mentions::found(&body, to);
        let again = mentions::checked(&body, &found.ranges, to).unwrap();
        prop_assert_eq!(&again, &found);
        prop_assert!(!found.staff.contains(&ps[sender]));
        prop_assert!(found.staff.iter().all(|s| ps.contains(s)));
        let glued: String = mentions::pieces(&body, &found.ranges).iter().map(|p| p.0).collect();
        prop_assert_eq!(glued, body.clone());
        for (piece, range) in mentions::pieces(&body, &found.ranges) {
            if range.is_some() {
                prop_assert!(piece.starts_with('@'));
            }
        }
    }

    #[test]
    fn checked_accepts_only_ranges_that_fit(body in text(), raw in proptest::collection::vec((0u32..40, 0u32..40, proptest::option::of(0..5usize)), 0..6)) {
        let ps = staff();
        let ranges: Vec<MentionRange> = raw
            .into_iter()
            .map(|(start, end, who)| MentionRange {
                start,
                end,
                staff: who.map(|i| StaffId::new(["ann", "bob", "cy.d", "dee_2", "zed"][i]).unwrap()),
            })
            .collect();
        let to = Audience { participants: &ps, sender: &ps[0], everyone: true };
        if let Ok(m) = mentions::checked(&body, &ranges, to) {
            let chars: Vec<char> = body.chars().collect();
            let mut after = 0;
            for r in &m.ranges {
                prop_assert!(r.start >= after && r.start < r.end && r.end as usize <= chars.len());
                prop_assert_eq!(chars[r.start as usize], '@');
                after = r.end;
            }
            prop_assert!(m.staff.iter().all(|s| ps.contains(s) && *s != ps[0]));
            // Every range shows: the pieces of the text hold each one.
            let shown = mentions::pieces(&body, &m.ranges).iter().filter(|p| p.1.is_some()).count();
            prop_assert_eq!(shown, m.ranges.len());
        }
    }
}
