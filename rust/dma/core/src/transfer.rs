// SPDX-License-Identifier: GPL-2.0-or-later

//! Walking a transfer `[addr, addr + len)` piece by piece, each piece
//! served by one translation.

/// A transfer in progress: what is left of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Bus address of the next byte.
    pub addr: u64,
    /// Offset of that byte in the caller's buffer.
    pub done: usize,
    /// Bytes left.
    pub left: usize,
}

impl Transfer {
    /// A transfer of `len` bytes at `addr`, or `None` if it would run past
    /// the end of the 64-bit bus address space (which no device can
    /// address, so the whole transfer is refused before any byte moves).
    pub fn new(addr: u64, len: usize) -> Option<Self> {
        let len64 = u64::try_from(len).ok()?;
        if let Some(last) = len64.checked_sub(1) {
            addr.checked_add(last)?;
        }
        Some(Self {
            addr,
            done: 0,
            left: len,
        })
    }

    pub const fn is_done(&self) -> bool {
        self.left == 0
    }

    /// The next piece, at most `room` bytes long (what the current
    /// translation covers from `addr` on): its address, buffer offset and
    /// length. The transfer advances past it.
    pub fn take(&mut self, room: u64) -> (u64, usize, usize) {
        let n = usize::try_from(room).map_or(self.left, |r| r.min(self.left));
        let piece = (self.addr, self.done, n);
        let n64 = n as u64;
        // Cannot overflow: new() checked that the transfer fits.
        self.addr = self.addr.wrapping_add(n64);
        self.done = self.done.saturating_add(n);
        self.left = self.left.saturating_sub(n);
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wrapping() {
        assert!(Transfer::new(u64::MAX, 1).is_some());
        assert!(Transfer::new(u64::MAX, 2).is_none());
        assert!(Transfer::new(u64::MAX - 7, 8).is_some());
        assert!(Transfer::new(u64::MAX, 0).is_some());
    }

    #[test]
    fn pieces_cover_the_buffer_in_order() {
        let mut t = Transfer::new(0xffc, 10).unwrap();
        assert_eq!(t.take(4), (0xffc, 0, 4));
        assert_eq!(t.take(0x1000), (0x1000, 4, 6));
        assert!(t.is_done());
    }
}
