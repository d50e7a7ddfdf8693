// SPDX-License-Identifier: GPL-2.0-or-later

//! The vocabulary of IOMMU translation, without QEMU: what an access does
//! ([`Access`]), the rights an IOMMU grants or an access needs ([`Perm`],
//! QEMU's `IOMMUAccessFlags`), and one translated block ([`TlbEntry`],
//! QEMU's `IOMMUTLBEntry` into system memory). An IOMMU's core answers in
//! these types and the DMA API caches them; the `iommu` crate converts
//! them to and from QEMU's C types.

#![forbid(unsafe_code)]
// Addresses come from guests: nothing here may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

/// What one DMA access does to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The device reads memory (`DMA_DIRECTION_TO_DEVICE`).
    Read,
    /// The device writes memory (`DMA_DIRECTION_FROM_DEVICE`).
    Write,
}

/// Access rights: those an IOMMU grants to a block, or those an access
/// needs (`NONE` when a caller only asks where an address goes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perm {
    pub read: bool,
    pub write: bool,
}

impl Perm {
    pub const NONE: Self = Self {
        read: false,
        write: false,
    };
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    pub const WRITE: Self = Self {
        read: false,
        write: true,
    };
    pub const RW: Self = Self {
        read: true,
        write: true,
    };

    /// Whether these rights include every right in `need`.
    pub const fn allows(self, need: Self) -> bool {
        (self.read || !need.read) && (self.write || !need.write)
    }

    pub const fn is_none(self) -> bool {
        !self.read && !self.write
    }
}

impl From<Access> for Perm {
    /// The right an access needs.
    fn from(access: Access) -> Self {
        match access {
            Access::Read => Self::READ,
            Access::Write => Self::WRITE,
        }
    }
}

/// One translated block, as QEMU's `IOMMUTLBEntry` into system memory:
/// the block `[iova & !addr_mask, iova | addr_mask]` goes to the block at
/// `translated_addr & !addr_mask`, with rights `perm` (none: the access
/// faults; in a notification, the block was unmapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    pub iova: u64,
    pub translated_addr: u64,
    /// The block's size minus one: `2^k - 1`.
    pub addr_mask: u64,
    pub perm: Perm,
}

impl TlbEntry {
    /// Where `addr` (inside the block) goes.
    pub const fn target(&self, addr: u64) -> u64 {
        (self.translated_addr & !self.addr_mask) | (addr & self.addr_mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_allow_what_they_include() {
        let all = [Perm::NONE, Perm::READ, Perm::WRITE, Perm::RW];
        for have in all {
            for need in all {
                let want = (have.read || !need.read) && (have.write || !need.write);
                assert_eq!(have.allows(need), want, "{have:?} {need:?}");
            }
        }
        assert!(Perm::READ.allows(Access::Read.into()));
        assert!(!Perm::READ.allows(Access::Write.into()));
        assert!(Perm::NONE.is_none() && !Perm::WRITE.is_none());
    }

    #[test]
    fn a_block_keeps_the_offset() {
        let e = TlbEntry {
            iova: 0x1234,
            translated_addr: 0xabc000,
            addr_mask: 0xfff,
            perm: Perm::RW,
        };
        assert_eq!(e.target(0x1234), 0xabc234);
        assert_eq!(e.target(0x1fff), 0xabcfff);
    }
}
