//! index ops.
