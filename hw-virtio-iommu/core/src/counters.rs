// SPDX-License-Identifier: GPL-2.0-or-later

//! What the device has done, for run-time introspection: the requests it
//! answered, by type and status, the chains too short for a request, and
//! the faults translation raised. Counters only grow (saturating), survive
//! resets and are not migrated: they describe this QEMU's device, not the
//! guest-visible state.

/// The request types, by `VIRTIO_IOMMU_T_*` value (1-5), then every other
/// type byte.
pub const REQUEST_TYPES: [&str; 6] = ["attach", "detach", "map", "unmap", "probe", "other"];

/// The statuses, by `VIRTIO_IOMMU_S_*` value (0-7).
pub const STATUSES: [&str; 8] = [
    "ok", "ioerr", "unsupp", "deverr", "inval", "range", "noent", "fault",
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `[type][status]`, indices as in [`REQUEST_TYPES`] and [`STATUSES`].
    requests: [[u64; STATUSES.len()]; REQUEST_TYPES.len()],
    malformed_chains: u64,
    faults_raised: u64,
}

fn bump(n: &mut u64) {
    *n = n.saturating_add(1);
}

impl Counters {
    /// A request of type byte `kind` answered with `status`.
    pub fn count_request(&mut self, kind: u8, status: u8) {
        // Types 1-5 at 0-4, any other at 5 ("other").
        let t = match kind {
            1..=5 => usize::from(kind.saturating_sub(1)),
            _ => 5,
        };
        if let Some(n) = self
            .requests
            .get_mut(t)
            .and_then(|row| row.get_mut(usize::from(status)))
        {
            bump(n);
        }
    }

    /// A chain whose parts cannot hold a request head and tail.
    pub fn count_malformed_chain(&mut self) {
        bump(&mut self.malformed_chains);
    }

    pub fn count_fault(&mut self) {
        bump(&mut self.faults_raised);
    }

    /// `(type, status, count)` for every pair counted at least once.
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        REQUEST_TYPES
            .iter()
            .zip(&self.requests)
            .flat_map(|(&t, row)| {
                STATUSES
                    .iter()
                    .zip(row)
                    .filter(|(_, &n)| n > 0)
                    .map(move |(&s, &n)| (t, s, n))
            })
    }

    pub const fn malformed_chains(&self) -> u64 {
        self.malformed_chains
    }

    pub const fn faults_raised(&self) -> u64 {
        self.faults_raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_type_and_status() {
        let mut c = Counters::default();
        c.count_request(1, 0);
        c.count_request(1, 0);
        c.count_request(3, 5);
        c.count_request(0, 2);
        c.count_request(200, 2);
        c.count_request(5, 200); // no such status: not counted
        c.count_malformed_chain();
        c.count_fault();
        assert_eq!(
            c.requests().collect::<Vec<_>>(),
            [
                ("attach", "ok", 2),
                ("map", "range", 1),
                ("other", "unsupp", 2)
            ]
        );
        assert_eq!(c.malformed_chains(), 1);
        assert_eq!(c.faults_raised(), 1);
    }
}
