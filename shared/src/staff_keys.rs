//! Interned staff: a small key per staff member, cheap to copy, hash and compare, that the
//! projection indexes by and the relay's hub routes by.

use rustc_hash::FxHashMap;

use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::ids::StaffId;

/// An interned staff member. Resolve with [`StaffKeys::id`] (or the projection's `staff_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StaffKey(u32);

impl StaffKey {
    /// Its position, for tables indexed by staff member.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn from_index(i: u32) -> Self {
        StaffKey(i)
    }
}

/// Every staff member seen, each with a key that never changes.
#[derive(Clone, Debug, Default)]
pub struct StaffKeys {
    keys: FxHashMap<StaffId, StaffKey>,
    ids: Vec<StaffId>,
}

impl StaffKeys {
    /// The key of a staff member already seen.
    pub fn key(&self, staff: &StaffId) -> Option<StaffKey> {
        self.keys.get(staff).copied()
    }

    /// The staff member behind a key.
    pub fn id(&self, key: StaffKey) -> &StaffId {
        &self.ids[key.index()]
    }

    /// How many staff have a key.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.len(self.ids.len());
        for id in &self.ids {
            w.str(id.as_str());
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        let n = r.len(8)?;
        let mut keys = StaffKeys::default();
        for i in 0..n {
            let id =
                StaffId::new(r.str()?).map_err(|_| CheckpointError::Invalid("a staff id is malformed"))?;
            if keys.intern(&id).index() != i {
                return Err(CheckpointError::Invalid("a staff id appears twice"));
            }
        }
        Ok(keys)
    }

    /// The key of a staff member, given on first sight (the same one on every call).
    pub fn intern(&mut self, staff: &StaffId) -> StaffKey {
        if let Some(k) = self.keys.get(staff) {
            return *k;
        }
        let k = StaffKey(u32::try_from(self.ids.len()).expect("fewer than 2^32 staff"));
        self.keys.insert(staff.clone(), k);
        self.ids.push(staff.clone());
        k
    }
}
