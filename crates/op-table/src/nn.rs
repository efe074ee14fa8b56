//! Op-table records for the nn ops.

use crate::OpInfo;

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    Vec::new()
}
