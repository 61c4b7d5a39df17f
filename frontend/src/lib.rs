//! Tally's messenger widget.
