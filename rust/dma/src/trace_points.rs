// SPDX-License-Identifier: GPL-2.0-or-later

//! The DMA API's trace events (`rust_dma_*` in the project's trace-events
//! file): mode changes, IOTLB fills and invalidations, persistent maps
//! invalidated. Each names the device as QEMU's PCI events do, by the
//! PCI core's name for it and its devfn.

use std::ffi::CStr;

use pci::PCIDeviceMethods;
use qemu_dma_core::Perm;

use crate::{Dma, Mode};

::trace::include_trace!("rust_hw_virtio_iommu_rs");

impl Dma {
    /// The PCI core's name for the device (its type name) and its devfn.
    fn trace_name(&self) -> (&CStr, i32) {
        // SAFETY: the device outlives its handle (Dma::new); its name is a
        // NUL-terminated array written when it was registered on its bus
        // and fixed afterwards.
        let dev = unsafe { self.dev.as_ref() };
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr((*dev.as_ptr()).name.as_ptr()) };
        (name, dev.devfn().into())
    }

    pub(crate) fn trace_mode(&self, mode: Mode) {
        let (name, devfn) = self.trace_name();
        let mode = match mode {
            Mode::Direct => c"direct",
            Mode::Iommu => c"through an IOMMU",
            Mode::Off => c"off",
        };
        trace::trace_rust_dma_mode(name, devfn, mode);
    }

    pub(crate) fn trace_fill(&self, addr: u64, target: u64, perm: Perm) {
        let (name, devfn) = self.trace_name();
        let perm = match (perm.read, perm.write) {
            (true, true) => c"rw",
            (true, false) => c"r",
            (false, true) => c"w",
            (false, false) => c"none",
        };
        trace::trace_rust_dma_iotlb_fill(name, devfn, addr, target, perm);
    }

    pub(crate) fn trace_invalidate(&self, first: u64, last: u64, entries: usize) {
        let (name, devfn) = self.trace_name();
        let entries = u32::try_from(entries).unwrap_or(u32::MAX);
        trace::trace_rust_dma_iotlb_invalidate(name, devfn, first, last, entries);
    }

    pub(crate) fn trace_flush(&self, entries: usize) {
        let (name, devfn) = self.trace_name();
        trace::trace_rust_dma_iotlb_flush(name, devfn, u32::try_from(entries).unwrap_or(u32::MAX));
    }

    pub(crate) fn trace_map_invalidated(&self, id: u64) {
        let (name, devfn) = self.trace_name();
        trace::trace_rust_dma_map_invalidated(name, devfn, id);
    }
}
