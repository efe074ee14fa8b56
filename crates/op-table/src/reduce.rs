//! Op-table records for the reduce ops.

use crate::OpInfo;

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    Vec::new()
}
