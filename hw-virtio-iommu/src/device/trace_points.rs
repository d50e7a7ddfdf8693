// SPDX-License-Identifier: GPL-2.0-or-later

//! The C device's trace events (`virtio_iommu_*` in QEMU's
//! hw/virtio/trace-events), emitted at the same points with the same
//! arguments, so that `-trace virtio_iommu_*` shows either device. Memory
//! region names, which the C device passes, are the device's type name
//! here (its regions are named per endpoint, the events per device).

use std::ffi::{c_int, CStr};

use virtio_iommu_core::{config::Config, decode, Request};

::trace::include_trace!("hw_virtio");

pub(super) use self::trace::{
    trace_virtio_iommu_device_reset_exit as device_reset_exit,
    trace_virtio_iommu_get_features as get_features,
    trace_virtio_iommu_notify_flag_add as notify_flag_add,
    trace_virtio_iommu_notify_flag_del as notify_flag_del,
    trace_virtio_iommu_report_fault as report_fault, trace_virtio_iommu_set_config as set_config,
    trace_virtio_iommu_system_reset as system_reset,
    trace_virtio_iommu_translate_out as translate_out,
};

/// The events only virtio-iommu-rs has (the project's trace-events).
mod rust_only {
    ::trace::include_trace!("rust_hw_virtio_iommu_rs");
    pub(in crate::device) use self::trace::{
        trace_virtio_iommu_rs_endpoint as endpoint,
        trace_virtio_iommu_rs_mmio_transport as mmio_transport,
    };
}

/// An endpoint got its address space (`name`); `unmanaged`: it is in
/// `bypass-devices`, never translated.
pub(super) fn endpoint(id: u32, name: &str, unmanaged: bool) {
    let name = std::ffi::CString::new(name).unwrap_or_default();
    rust_only::endpoint(id, &name, unmanaged.into());
}

pub(super) use rust_only::mmio_transport;

/// What the events name as the memory region.
const REGION: &CStr = c"virtio-iommu-rs";

/// A request, as the C device traces it when it starts handling one.
pub(super) fn request(bytes: &[u8]) {
    match decode(bytes) {
        Ok(Request::Attach(a)) => trace::trace_virtio_iommu_attach(a.domain, a.endpoint),
        Ok(Request::Detach(d)) => trace::trace_virtio_iommu_detach(d.domain, d.endpoint),
        Ok(Request::Map(m)) => {
            trace::trace_virtio_iommu_map(m.domain, m.virt_start, m.virt_end, m.phys_start, m.flags)
        }
        Ok(Request::Unmap(u)) => {
            trace::trace_virtio_iommu_unmap(u.domain, u.virt_start, u.virt_end);
        }
        Ok(Request::Probe(_)) | Err(_) => {}
    }
}

pub(super) fn get_config(c: &Config) {
    trace::trace_virtio_iommu_get_config(
        c.page_size_mask,
        c.input_start,
        c.input_end,
        c.domain_start,
        c.domain_end,
        c.probe_size,
        c.bypass,
    );
}

pub(super) fn translate(endpoint: u32, iova: u64, flag: u32) {
    trace::trace_virtio_iommu_translate(REGION, endpoint, iova, c_int::try_from(flag).unwrap_or(0));
}

pub(super) fn notify_map(iova: u64, end: u64, phys: u64, flags: u32) {
    trace::trace_virtio_iommu_notify_map(REGION, iova, end, phys, flags);
}

pub(super) fn notify_unmap(iova: u64, end: u64) {
    trace::trace_virtio_iommu_notify_unmap(REGION, iova, end);
}

/// An endpoint's DMA moved to the IOMMU region (`on`) or the bypass alias;
/// the C event names it by PCI bus, slot and function.
pub(super) fn switch_address_space(endpoint: u32, on: bool) {
    let [_, _, bus, devfn] = endpoint.to_be_bytes();
    trace::trace_virtio_iommu_switch_address_space(bus, devfn >> 3, devfn & 7, on);
}
