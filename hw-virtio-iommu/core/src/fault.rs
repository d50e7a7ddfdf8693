// SPDX-License-Identifier: GPL-2.0-or-later

//! Fault reports on the event queue (spec 5.13.6.9).
//!
//! Translation faults are recorded in a bounded queue the glue drains into
//! the event queue's buffers. The C device instead drops a fault when the
//! driver has no event buffer posted at that moment; holding a few until
//! buffers arrive is allowed ("the device can either wait for one to be
//! consumed, or drop the event") and loses fewer reports. A glue that wants
//! the C behaviour drains right after each translation and clears the rest.

use std::collections::VecDeque;

/// `sizeof(struct virtio_iommu_fault)`.
pub const FAULT_SIZE: usize = 24;

/// `VIRTIO_IOMMU_FAULT_F_*`.
pub const FAULT_F_READ: u32 = 1 << 0;
pub const FAULT_F_WRITE: u32 = 1 << 1;
pub const FAULT_F_EXEC: u32 = 1 << 2;
pub const FAULT_F_ADDRESS: u32 = 1 << 8;

/// Faults kept for the driver before new ones are dropped: as many as the
/// event queue (256 entries, like the C device's) could take at once.
pub const DEFAULT_FAULT_CAPACITY: usize = 256;

/// `VIRTIO_IOMMU_FAULT_R_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FaultReason {
    Unknown = 0,
    Domain = 1,
    Mapping = 2,
}

/// One `struct virtio_iommu_fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    pub reason: FaultReason,
    pub flags: u32,
    pub endpoint: u32,
    pub address: u64,
}

impl Fault {
    /// Little-endian: `u8 reason; u8 reserved[3]; le32 flags; le32
    /// endpoint; u8 reserved1[4]; le64 address`, reserved bytes zero.
    pub fn to_bytes(&self) -> [u8; FAULT_SIZE] {
        let mut out = [0u8; FAULT_SIZE];
        let fields: [&[u8]; 5] = [
            &[self.reason as u8, 0, 0, 0],
            &self.flags.to_le_bytes(),
            &self.endpoint.to_le_bytes(),
            &[0; 4],
            &self.address.to_le_bytes(),
        ];
        for (dst, src) in out.iter_mut().zip(fields.into_iter().flatten()) {
            *dst = *src;
        }
        out
    }

    /// The inverse of [`Fault::to_bytes`], for drivers and tests: `None` if
    /// the buffer is short or the reason unknown.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (head, rest) = bytes.split_first_chunk::<4>()?;
        let (flags, rest) = rest.split_first_chunk::<4>()?;
        let (endpoint, rest) = rest.split_first_chunk::<4>()?;
        let (_, rest) = rest.split_first_chunk::<4>()?;
        let (address, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            reason: match head[0] {
                0 => FaultReason::Unknown,
                1 => FaultReason::Domain,
                2 => FaultReason::Mapping,
                _ => return None,
            },
            flags: u32::from_le_bytes(*flags),
            endpoint: u32::from_le_bytes(*endpoint),
            address: u64::from_le_bytes(*address),
        })
    }
}

/// What to do with one event-queue buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDelivery {
    /// Write these bytes at the start of the buffer, push it with used
    /// length [`FAULT_SIZE`] and notify.
    Write([u8; FAULT_SIZE]),
    /// The buffer cannot hold a report: the C device calls
    /// `virtio_error(vdev, "error buffer of wrong size")` and detaches the
    /// buffer; the fault is lost.
    BufferTooSmall,
}

/// Faults waiting for event-queue buffers, oldest first.
#[derive(Debug)]
pub struct FaultQueue {
    pending: VecDeque<Fault>,
    capacity: usize,
    dropped: u64,
}

impl Default for FaultQueue {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_FAULT_CAPACITY)
    }
}

impl FaultQueue {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Queue a fault; `false` (and counted in [`FaultQueue::dropped`]) if
    /// the queue is full.
    pub fn push(&mut self, fault: Fault) -> bool {
        if self.pending.len() >= self.capacity {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.pending.push_back(fault);
        true
    }

    pub fn pop(&mut self) -> Option<Fault> {
        self.pending.pop_front()
    }

    /// Take the oldest fault for a device-writable buffer of
    /// `writable_len` bytes; `None` if nothing is pending (keep the
    /// buffer).
    pub fn deliver(&mut self, writable_len: usize) -> Option<FaultDelivery> {
        let fault = self.pop()?;
        Some(if writable_len < FAULT_SIZE {
            FaultDelivery::BufferTooSmall
        } else {
            FaultDelivery::Write(fault.to_bytes())
        })
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Faults dropped: refused because the queue was full, or dropped for
    /// want of an event buffer.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The driver has no event buffer posted: drop every pending fault, as
    /// the C device drops a fault it cannot deliver at once. Counted in
    /// [`FaultQueue::dropped`]; returns how many were dropped.
    pub fn drop_pending(&mut self) -> usize {
        let n = self.pending.len();
        self.dropped = self
            .dropped
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        self.pending.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let f = Fault {
            reason: FaultReason::Mapping,
            flags: FAULT_F_WRITE | FAULT_F_ADDRESS,
            endpoint: 0x0403_0201,
            address: 0x0807_0605_0403_0201,
        };
        let b = f.to_bytes();
        assert_eq!(b[0..4], [2, 0, 0, 0]);
        assert_eq!(b[4..8], [0x02, 0x01, 0, 0]);
        assert_eq!(b[8..12], [1, 2, 3, 4]);
        assert_eq!(b[12..16], [0; 4]);
        assert_eq!(b[16..24], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Fault::from_bytes(&b), Some(f));
        assert_eq!(Fault::from_bytes(&b[..23]), None);
        let mut bad = b;
        bad[0] = 3;
        assert_eq!(Fault::from_bytes(&bad), None);
        assert_eq!(FAULT_F_EXEC, 4);
    }

    #[test]
    fn queue_is_bounded_and_fifo() {
        let f = |endpoint| Fault {
            reason: FaultReason::Unknown,
            flags: FAULT_F_ADDRESS,
            endpoint,
            address: 0,
        };
        let mut q = FaultQueue::with_capacity(2);
        assert!(q.push(f(1)));
        assert!(q.push(f(2)));
        assert!(!q.push(f(3)));
        assert_eq!((q.len(), q.dropped()), (2, 1));
        assert_eq!(
            q.deliver(FAULT_SIZE),
            Some(FaultDelivery::Write(f(1).to_bytes()))
        );
        assert_eq!(
            q.deliver(FAULT_SIZE - 1),
            Some(FaultDelivery::BufferTooSmall)
        );
        assert!(q.is_empty());
        assert_eq!(q.deliver(64), None);
        q.push(f(4));
        q.clear();
        assert_eq!(q.pop(), None);
        assert_eq!(FaultQueue::default().capacity, DEFAULT_FAULT_CAPACITY);
    }
}
