// SPDX-License-Identifier: GPL-2.0-or-later

//! `x-dma-test`: a PCI **test device** that does DMA on command, through
//! the Rust DMA API (the `dma` crate) or through QEMU's C path
//! (`pci_dma_rw`), so that one device checks and measures both. Its
//! registers are documented in docs/dma-test-device.md; the qtests and
//! `make bench` drive it. It is not meant for guests.

use std::{
    cell::Cell,
    ffi::CStr,
    pin::Pin,
    rc::Rc,
    sync::atomic::{fence, Ordering},
    time::Instant,
};

use bql::{BqlCell, BqlRefCell};
use common::uninit_field_mut;
use dma::{Access, Dma, DmaMap, Mode};
use hwcore::{DeviceImpl, DevicePropertiesImpl, ResettablePhasesImpl};
use migration::{vmstate_fields, VMStateDescription, VMStateDescriptionBuilder};
use pci::{
    PCIDevice, PCIDeviceClass, PCIDeviceImpl, PCIDeviceMethods, CONVENTIONAL_PCI_DEVICE,
    END_OF_INTERFACES, VMSTATE_PCI_DEVICE,
};
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use system::{
    bindings::{address_space_rw, MEMTX_DECODE_ERROR, MEMTX_OK},
    MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder, MEMTXATTRS_UNSPECIFIED,
};
use vmstate_io::{QemuFile, VMStateCodec};

pub const TYPE_DMA_TEST: &CStr = c"x-dma-test";

const ID_VALUE: u64 = 0x444d_4131;
const BUFFER_SIZE: usize = 64 * 1024;
const BUFFER_OFFSET: u64 = 0x10000;
const BAR_SIZE: u64 = 0x20000;

// Registers (docs/dma-test-device.md).
const REG_ID: u64 = 0x00;
const REG_SRC: u64 = 0x08;
const REG_DST: u64 = 0x10;
const REG_LEN: u64 = 0x18;
const REG_COUNT: u64 = 0x1c;
const REG_PATH: u64 = 0x20;
const REG_CMD: u64 = 0x24;
const REG_FAILED: u64 = 0x28;
const REG_RESULT: u64 = 0x2c;
const REG_ELAPSED: u64 = 0x30;
const REG_MODE: u64 = 0x38;
const REG_UNMAPS: u64 = 0x3c;
const REG_INVALIDATIONS: u64 = 0x40;
const REG_MAP_STATE: u64 = 0x44;
const REG_REPLAYED: u64 = 0x48;
const REG_MISSES: u64 = 0x4c;

/// Commands written to CMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Read = 1,
    Write = 2,
    Copy = 3,
    Map = 4,
    MapWrite = 5,
    MapRelease = 6,
    Replay = 7,
}

impl Command {
    const fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Copy,
            4 => Self::Map,
            5 => Self::MapWrite,
            6 => Self::MapRelease,
            7 => Self::Replay,
            _ => return None,
        })
    }
}

const fn is_reg64(reg: u64) -> bool {
    matches!(reg, REG_SRC | REG_DST | REG_ELAPSED)
}

/// The guest-visible registers.
#[derive(Clone, Copy, Debug, Default)]
struct Regs {
    src: u64,
    dst: u64,
    len: u32,
    count: u32,
    path: u32,
    failed: u32,
    result: u32,
    elapsed: u64,
    replayed: u32,
}

impl Regs {
    fn len(&self) -> usize {
        (self.len as usize).clamp(1, BUFFER_SIZE)
    }
}

/// Persistent map: 0 none, 1 mapped, 2 invalidated by the IOMMU.
const MAP_NONE: u32 = 0;
const MAP_LIVE: u32 = 1;
const MAP_INVALIDATED: u32 = 2;

#[repr(C)]
pub struct DmaTestDevice {
    parent_obj: ParentField<PCIDevice>,
    mmio: MemoryRegion,
    regs: BqlCell<Regs>,
    buffer: BqlRefCell<Vec<u8>>,
    /// Created at realize, dropped at exit.
    dma: BqlRefCell<Option<Pin<Box<Dma>>>>,
    map: BqlRefCell<Option<DmaMap>>,
    /// Shared with the map's invalidation callback.
    map_state: Rc<Cell<u32>>,
}

// SAFETY: only accessed with the BQL held (the Rc included: the callback
// runs from IOMMU notifiers, under the BQL).
unsafe impl Send for DmaTestDevice {}
unsafe impl Sync for DmaTestDevice {}

impl DmaTestDevice {
    unsafe fn init(mut this: ParentInit<Self>) {
        static OPS: MemoryRegionOps<DmaTestDevice> = MemoryRegionOpsBuilder::<DmaTestDevice>::new()
            .read(&DmaTestDevice::mmio_read)
            .write(&DmaTestDevice::mmio_write)
            .little_endian()
            .valid_sizes(1, 8)
            .impl_sizes(1, 8)
            .build();
        MemoryRegion::init_io(
            &mut uninit_field_mut!(*this, mmio),
            &OPS,
            "x-dma-test",
            BAR_SIZE,
        );
        uninit_field_mut!(*this, regs).write(BqlCell::new(Regs::default()));
        uninit_field_mut!(*this, buffer).write(BqlRefCell::new(vec![0; BUFFER_SIZE]));
        uninit_field_mut!(*this, dma).write(BqlRefCell::new(None));
        uninit_field_mut!(*this, map).write(BqlRefCell::new(None));
        uninit_field_mut!(*this, map_state).write(Rc::new(Cell::new(MAP_NONE)));
    }

    fn realize(&self) -> util::Result<()> {
        self.register_memory_bar(0, &self.mmio);
        *self.dma.borrow_mut() = Some(Dma::new(self.upcast()));
        Ok(())
    }

    fn exit(&self) {
        self.release_map();
        *self.dma.borrow_mut() = None;
    }

    fn with_dma<R>(&self, f: impl FnOnce(&Dma) -> R) -> Option<R> {
        let dma = self.dma.borrow();
        dma.as_deref().map(f)
    }

    fn mmio_read(&self, addr: u64, size: u32) -> u64 {
        if addr >= BUFFER_OFFSET {
            return self.buffer_read(addr - BUFFER_OFFSET, size);
        }
        // 8-byte registers may be read as two 4-byte halves.
        let v = if is_reg64(addr & !7) && addr & 7 == 4 {
            self.register(addr & !7) >> 32
        } else {
            self.register(addr)
        };
        if size >= 8 {
            v
        } else {
            v & ((1u64 << (size * 8)) - 1)
        }
    }

    /// A register's value (4-byte registers at their own offset, 8-byte
    /// ones at theirs; anything else reads 0).
    fn register(&self, reg: u64) -> u64 {
        let r = self.regs.get();
        let stats = self.with_dma(Dma::stats).unwrap_or_default();
        match reg {
            REG_ID => ID_VALUE,
            REG_SRC => r.src,
            REG_DST => r.dst,
            REG_LEN => r.len.into(),
            REG_COUNT => r.count.into(),
            REG_PATH => r.path.into(),
            REG_FAILED => r.failed.into(),
            REG_RESULT => r.result.into(),
            REG_ELAPSED => r.elapsed,
            REG_MODE => match self.with_dma(Dma::mode) {
                Some(Mode::Direct) => 0,
                Some(Mode::Iommu) => 1,
                Some(Mode::Off) | None => 2,
            },
            REG_UNMAPS => stats.unmap_notifications,
            REG_INVALIDATIONS => stats.invalidations,
            REG_MAP_STATE => self.map_state.get().into(),
            REG_REPLAYED => r.replayed.into(),
            REG_MISSES => stats.translations,
            _ => 0,
        }
    }

    fn mmio_write(&self, addr: u64, value: u64, size: u32) {
        if addr >= BUFFER_OFFSET {
            self.buffer_write(addr - BUFFER_OFFSET, value, size);
            return;
        }
        let mut r = self.regs.get();
        // A 4-byte write to either half of an 8-byte register.
        let merge = |old: u64| -> u64 {
            match (size, addr & 7) {
                (8, _) => value,
                (_, 0) => (old & !0xffff_ffff) | (value & 0xffff_ffff),
                _ => (old & 0xffff_ffff) | (value << 32),
            }
        };
        let v32 = value as u32;
        match addr & !3 {
            a if a & !7 == REG_SRC => r.src = merge(r.src),
            a if a & !7 == REG_DST => r.dst = merge(r.dst),
            REG_LEN => r.len = v32,
            REG_COUNT => r.count = v32,
            REG_PATH => r.path = v32,
            REG_CMD => {
                if let Some(cmd) = Command::from_u64(value) {
                    self.run(cmd);
                }
                return;
            }
            _ => return,
        }
        self.regs.set(r);
    }

    fn buffer_read(&self, offset: u64, size: u32) -> u64 {
        let buf = self.buffer.borrow();
        let mut bytes = [0u8; 8];
        let start = offset as usize;
        for (i, b) in bytes.iter_mut().enumerate().take(size as usize) {
            *b = buf.get(start + i).copied().unwrap_or(0);
        }
        u64::from_le_bytes(bytes)
    }

    fn buffer_write(&self, offset: u64, value: u64, size: u32) {
        let mut buf = self.buffer.borrow_mut();
        let start = offset as usize;
        for (i, b) in value.to_le_bytes().iter().enumerate().take(size as usize) {
            if let Some(slot) = buf.get_mut(start + i) {
                *slot = *b;
            }
        }
    }

    /// `count` transfers of `len` bytes for READ, WRITE or COPY: the
    /// number that failed and the last failure's `MemTxResult`.
    ///
    /// The buffer and the handle are borrowed once for the whole command:
    /// QEMU refuses a device's DMA into its own MMIO while it handles an
    /// access (the re-entrancy guard), so nothing can reach them meanwhile,
    /// and the loop measures the transfers, not the device.
    fn transfers(&self, cmd: Command, r: &Regs, len: usize, count: u32) -> (u32, u32) {
        let mut buf = self.buffer.borrow_mut();
        let data = &mut buf[..len.min(BUFFER_SIZE)];
        let dma = self.dma.borrow();
        let dma = if r.path == 1 { None } else { dma.as_deref() };
        let bus_master_as = self.bus_master_as();
        let (mut failed, mut last) = (0, MEMTX_OK);
        let mut note = |res: u32| {
            if res != MEMTX_OK {
                failed += 1;
                last = res;
            }
            res
        };
        for _ in 0..count {
            if cmd != Command::Write
                && note(transfer(dma, bus_master_as, r.src, data, Access::Read)) != MEMTX_OK
                && cmd == Command::Copy
            {
                continue;
            }
            if cmd != Command::Read {
                note(transfer(dma, bus_master_as, r.dst, data, Access::Write));
            }
        }
        (failed, last)
    }

    fn run(&self, cmd: Command) {
        let mut r = self.regs.get();
        let (len, count) = (r.len(), r.count.max(1));
        let start = Instant::now();
        let (failed, last) = match cmd {
            Command::Read | Command::Write | Command::Copy => self.transfers(cmd, &r, len, count),
            Command::Map => failure(self.map(r.dst, len)),
            Command::MapWrite => failure(self.map_write(len)),
            Command::MapRelease => {
                self.release_map();
                (0, MEMTX_OK)
            }
            Command::Replay => {
                r.replayed = self.with_dma(Dma::replay_count).unwrap_or(0);
                (0, MEMTX_OK)
            }
        };
        r.elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        r.failed = failed;
        r.result = last;
        self.regs.set(r);
    }

    fn map(&self, addr: u64, len: usize) -> u32 {
        self.release_map();
        let state = Rc::clone(&self.map_state);
        let on_invalidate = Box::new(move || state.set(MAP_INVALIDATED));
        match self.with_dma(|d| d.map(addr, len, Access::Write, on_invalidate)) {
            Some(Ok(m)) => {
                self.map_state.set(MAP_LIVE);
                *self.map.borrow_mut() = Some(m);
                MEMTX_OK
            }
            Some(Err(e)) => e.0,
            None => MEMTX_DECODE_ERROR,
        }
    }

    fn map_write(&self, len: usize) -> u32 {
        let map = self.map.borrow();
        let Some(m) = map.as_ref() else {
            return MEMTX_DECODE_ERROR;
        };
        let buf = self.buffer.borrow();
        let n = len.min(m.len());
        match self.with_dma(|d| d.map_write(m, 0, &buf[..n])) {
            Some(Ok(())) => MEMTX_OK,
            Some(Err(e)) => e.0,
            None => MEMTX_DECODE_ERROR,
        }
    }

    fn release_map(&self) {
        let map = self.map.borrow_mut().take();
        if let Some(m) = map {
            self.with_dma(|d| d.unmap(m));
        }
        self.map_state.set(MAP_NONE);
    }
}

/// One transfer between `data` and `addr`: through the Rust API's handle,
/// or (`dma` is `None`) through the body of `pci_dma_rw()`, which is
/// static inline in C: `dma_barrier()` then `address_space_rw()` on the
/// bus-master address space. Returns the `MemTxResult`.
fn transfer(
    dma: Option<&Dma>,
    bus_master_as: *mut system::bindings::AddressSpace,
    addr: u64,
    data: &mut [u8],
    access: Access,
) -> u32 {
    if let Some(d) = dma {
        let r = match access {
            Access::Read => d.read(addr, data),
            Access::Write => d.write(addr, data),
        };
        return r.err().map_or(MEMTX_OK, |e| e.0);
    }
    fence(Ordering::SeqCst);
    // SAFETY: the bus-master address space is initialized once the machine
    // is ready (before any MMIO); data is valid for its length.
    unsafe {
        address_space_rw(
            bus_master_as,
            addr,
            MEMTXATTRS_UNSPECIFIED,
            data.as_mut_ptr().cast(),
            data.len() as u64,
            access == Access::Write,
        )
    }
}

/// The FAILED and RESULT registers for a single operation's result.
const fn failure(res: u32) -> (u32, u32) {
    (if res == MEMTX_OK { 0 } else { 1 }, res)
}

qom_isa!(DmaTestDevice: PCIDevice, hwcore::DeviceState, Object);

// SAFETY: TYPE_NAME is unique, and the struct starts with its parent.
unsafe impl ObjectType for DmaTestDevice {
    type Class = PCIDeviceClass;
    const TYPE_NAME: &'static CStr = TYPE_DMA_TEST;
}

impl ObjectImpl for DmaTestDevice {
    type ParentType = PCIDevice;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
}

impl DmaTestDevice {
    fn class_init(klass: &mut PCIDeviceClass) {
        klass.class_init::<Self>();
        qom_props::add_class_property::<Self, DmaStatsProperty>(klass);
    }
}

/// `dma-stats`: the DMA handle's mode and IOTLB counters
/// ([`Dma::stats_json`]), or `null` before the handle exists.
struct DmaStatsProperty;

impl qom_props::JsonProperty<DmaTestDevice> for DmaStatsProperty {
    const NAME: &'static CStr = c"dma-stats";
    const TYPE: &'static CStr = c"DmaStats";
    const DESCRIPTION: &'static CStr =
        c"the DMA API handle's mode (direct, iommu, off) and IOTLB counters: hits, misses, \
          translations asked of the IOMMU, UNMAP notifications, invalidated persistent maps";

    fn value(dev: &DmaTestDevice) -> String {
        dev.with_dma(Dma::stats_json)
            .unwrap_or_else(|| "null".to_owned())
    }
}

/// QOM's default `TypeInfo` for the type, plus the interface PCI insists
/// on (the `#[derive(qom::Object)]` registration has no interfaces).
const TYPE_INFO: qom::bindings::TypeInfo = qom::bindings::TypeInfo {
    interfaces: [CONVENTIONAL_PCI_DEVICE, END_OF_INTERFACES].as_ptr(),
    ..<DmaTestDevice as ObjectImpl>::TYPE_INFO
};

// SAFETY: called once at QOM module init with a TypeInfo built from the
// type's own ObjectImpl.
util::module_init! {
    MODULE_INIT_QOM => unsafe {
        qom::type_register_static(&TYPE_INFO);
    }
}

/// Migrated: the PCI core's state, the registers and the buffer. A
/// persistent map is not: an operation that holds one cannot go on
/// elsewhere, so the destination starts without one (`MAP_STATE` reads 0),
/// as docs/migration.md asks of devices using the DMA API.
const VMSTATE_DMA_TEST: VMStateDescription<DmaTestDevice> =
    VMStateDescriptionBuilder::<DmaTestDevice>::new()
        .name(c"x-dma-test")
        .version_id(1)
        .minimum_version_id(1)
        .fields(vmstate_fields! {
            VMSTATE_PCI_DEVICE,
            vmstate_io::field::<DmaTestDevice>(c"state"),
        })
        .build();

impl VMStateCodec for DmaTestDevice {
    const TYPE_NAME: &'static CStr = c"x-dma-test-state";

    fn save(&self, f: &mut QemuFile<'_>) {
        let r = self.regs.get();
        let mut bytes = Vec::with_capacity(48 + BUFFER_SIZE);
        for v in [r.src, r.dst, r.elapsed] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        for v in [r.len, r.count, r.path, r.failed, r.result, r.replayed] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&self.buffer.borrow());
        f.put_bytes(&bytes);
    }

    fn load(&self, f: &mut QemuFile<'_>) -> util::Result<()> {
        let short = |_| util::Error::msg("x-dma-test: the migration stream ends early");
        let mut regs = Regs {
            src: f.get_be64().map_err(short)?,
            dst: f.get_be64().map_err(short)?,
            elapsed: f.get_be64().map_err(short)?,
            ..Regs::default()
        };
        for v in [
            &mut regs.len,
            &mut regs.count,
            &mut regs.path,
            &mut regs.failed,
            &mut regs.result,
            &mut regs.replayed,
        ] {
            *v = f.get_be32().map_err(short)?;
        }
        let mut buffer = vec![0; BUFFER_SIZE];
        f.get_bytes(&mut buffer).map_err(short)?;
        // Loaded over a running device (loadvm): its operation is gone.
        self.release_map();
        self.regs.set(regs);
        *self.buffer.borrow_mut() = buffer;
        Ok(())
    }
}

// SAFETY: no properties.
unsafe impl DevicePropertiesImpl for DmaTestDevice {}

impl DeviceImpl for DmaTestDevice {
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_DMA_TEST);
}

impl ResettablePhasesImpl for DmaTestDevice {}

impl PCIDeviceImpl for DmaTestDevice {
    const VENDOR_ID: Option<u16> = Some(0x1b36);
    const DEVICE_ID: Option<u16> = Some(0x10f0);
    const CLASS_ID: Option<u16> = Some(0xff00);
    const PCI_REALIZE: Option<fn(&Self) -> util::Result<()>> = Some(Self::realize);
    const PCI_EXIT: Option<fn(&Self)> = Some(Self::exit);
}
