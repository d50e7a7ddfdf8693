// SPDX-License-Identifier: GPL-2.0-or-later

//! The request queue's wire format (virtio spec 5.13.6): the little-endian
//! structs of the five requests, read the way QEMU's C device reads them.
//!
//! The device-readable part of a request is the concatenation of its
//! driver-to-device buffers; it starts with `struct virtio_iommu_req_head`,
//! and the C device reads each type's fields from offset 0 of it, head
//! included. So:
//!
//! - fewer bytes than the type's fields: `VIRTIO_IOMMU_S_INVAL` (not
//!   `DEVERR`: the C device has already found the tail, since it only ever
//!   writes from the start of the device-writable part);
//! - more bytes than the type's fields: the extra bytes are ignored;
//! - an unknown type: `VIRTIO_IOMMU_S_UNSUPP` (the spec would rather have the
//!   buffer returned unwritten, but the C device answers, and so do we);
//! - the `reserved` bytes of the head are ignored (spec MUST).
//!
//! Fewer than 4 readable bytes (no head at all) is not a status but a driver
//! error; that case is decided in [`crate::device`].

use crate::status::Status;

/// `VIRTIO_IOMMU_T_*`: the first byte of every request.
pub const T_ATTACH: u8 = 1;
pub const T_DETACH: u8 = 2;
pub const T_MAP: u8 = 3;
pub const T_UNMAP: u8 = 4;
pub const T_PROBE: u8 = 5;

/// `struct virtio_iommu_req_head` and `struct virtio_iommu_req_tail`.
pub const HEAD_SIZE: usize = 4;
pub const TAIL_SIZE: usize = 4;

/// Device-readable bytes of each request, head included: the C struct's
/// size without its tail (`virtio_iommu_req_probe` has no tail member).
pub const ATTACH_LEN: usize = 20;
pub const DETACH_LEN: usize = 20;
pub const MAP_LEN: usize = 36;
pub const UNMAP_LEN: usize = 28;
pub const PROBE_LEN: usize = 72;

/// `VIRTIO_IOMMU_ATTACH_F_BYPASS`: attach to (or create) a bypass domain.
pub const ATTACH_F_BYPASS: u32 = 1 << 0;

/// `VIRTIO_IOMMU_MAP_F_*`.
pub const MAP_F_READ: u32 = 1 << 0;
pub const MAP_F_WRITE: u32 = 1 << 1;
pub const MAP_F_MMIO: u32 = 1 << 2;
pub const MAP_F_MASK: u32 = MAP_F_READ | MAP_F_WRITE | MAP_F_MMIO;

/// `struct virtio_iommu_req_attach` without head and tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attach {
    pub domain: u32,
    pub endpoint: u32,
    pub flags: u32,
    /// Must be zero (spec 5.13.6.3.2); kept so the device can check it.
    pub reserved: [u8; 4],
}

/// `struct virtio_iommu_req_detach` without head and tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detach {
    pub domain: u32,
    pub endpoint: u32,
    /// Ignored by the device (spec 5.13.6.4.2).
    pub reserved: [u8; 8],
}

/// `struct virtio_iommu_req_map` without head and tail. The range is
/// inclusive: `[virt_start, virt_end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Map {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
    pub phys_start: u64,
    pub flags: u32,
}

/// `struct virtio_iommu_req_unmap` without head and tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmap {
    pub domain: u32,
    pub virt_start: u64,
    pub virt_end: u64,
    /// Ignored, as by the C device (the spec only allows INVAL here).
    pub reserved: [u8; 4],
}

/// The device-readable part of `struct virtio_iommu_req_probe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub endpoint: u32,
    /// Ignored by the device (spec 5.13.6.7.2).
    pub reserved: [u8; 64],
}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Attach(Attach),
    Detach(Detach),
    Map(Map),
    Unmap(Unmap),
    Probe(Probe),
}

/// Why a device-readable part is not a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than [`HEAD_SIZE`] bytes: not even a type.
    NoHead,
    /// A type this device does not know.
    UnknownType(u8),
    /// Fewer bytes than the type's fields.
    Truncated { kind: u8, len: usize },
}

impl DecodeError {
    /// The status the C device answers for it. `NoHead` never gets one
    /// (the device reports a driver error instead); `DEVERR` stands in.
    pub const fn status(self) -> Status {
        match self {
            Self::NoHead => Status::DevErr,
            Self::UnknownType(_) => Status::Unsupp,
            Self::Truncated { .. } => Status::Inval,
        }
    }
}

/// Reads little-endian fields in order; `None` once the bytes run out.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*field)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    // Each reads its type's fields in wire order, reserved bytes included,
    // so that a body one byte short of the C struct is refused.

    fn attach(mut self) -> Option<Attach> {
        Some(Attach {
            domain: self.u32()?,
            endpoint: self.u32()?,
            flags: self.u32()?,
            reserved: self.take()?,
        })
    }

    fn detach(mut self) -> Option<Detach> {
        Some(Detach {
            domain: self.u32()?,
            endpoint: self.u32()?,
            reserved: self.take()?,
        })
    }

    fn map(mut self) -> Option<Map> {
        Some(Map {
            domain: self.u32()?,
            virt_start: self.u64()?,
            virt_end: self.u64()?,
            phys_start: self.u64()?,
            flags: self.u32()?,
        })
    }

    fn unmap(mut self) -> Option<Unmap> {
        Some(Unmap {
            domain: self.u32()?,
            virt_start: self.u64()?,
            virt_end: self.u64()?,
            reserved: self.take()?,
        })
    }

    fn probe(mut self) -> Option<Probe> {
        Some(Probe {
            endpoint: self.u32()?,
            reserved: self.take()?,
        })
    }
}

/// Decode the device-readable part of a request.
pub fn decode(readable: &[u8]) -> Result<Request, DecodeError> {
    let Some((head, body)) = readable.split_first_chunk::<HEAD_SIZE>() else {
        return Err(DecodeError::NoHead);
    };
    let kind = head[0];
    let r = Reader { bytes: body };
    let decoded = match kind {
        T_ATTACH => r.attach().map(Request::Attach),
        T_DETACH => r.detach().map(Request::Detach),
        T_MAP => r.map().map(Request::Map),
        T_UNMAP => r.unmap().map(Request::Unmap),
        T_PROBE => r.probe().map(Request::Probe),
        _ => return Err(DecodeError::UnknownType(kind)),
    };
    decoded.ok_or(DecodeError::Truncated {
        kind,
        len: readable.len(),
    })
}

impl Request {
    /// `VIRTIO_IOMMU_T_*` of this request.
    pub const fn kind(&self) -> u8 {
        match self {
            Self::Attach(_) => T_ATTACH,
            Self::Detach(_) => T_DETACH,
            Self::Map(_) => T_MAP,
            Self::Unmap(_) => T_UNMAP,
            Self::Probe(_) => T_PROBE,
        }
    }

    /// The device-readable bytes a driver sends for this request (head
    /// reserved bytes zero). The inverse of [`decode`]; used by tests and
    /// by anything that plays the driver.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.kind(), 0, 0, 0];
        match self {
            Self::Attach(a) => {
                out.extend_from_slice(&a.domain.to_le_bytes());
                out.extend_from_slice(&a.endpoint.to_le_bytes());
                out.extend_from_slice(&a.flags.to_le_bytes());
                out.extend_from_slice(&a.reserved);
            }
            Self::Detach(d) => {
                out.extend_from_slice(&d.domain.to_le_bytes());
                out.extend_from_slice(&d.endpoint.to_le_bytes());
                out.extend_from_slice(&d.reserved);
            }
            Self::Map(m) => {
                out.extend_from_slice(&m.domain.to_le_bytes());
                out.extend_from_slice(&m.virt_start.to_le_bytes());
                out.extend_from_slice(&m.virt_end.to_le_bytes());
                out.extend_from_slice(&m.phys_start.to_le_bytes());
                out.extend_from_slice(&m.flags.to_le_bytes());
            }
            Self::Unmap(u) => {
                out.extend_from_slice(&u.domain.to_le_bytes());
                out.extend_from_slice(&u.virt_start.to_le_bytes());
                out.extend_from_slice(&u.virt_end.to_le_bytes());
                out.extend_from_slice(&u.reserved);
            }
            Self::Probe(p) => {
                out.extend_from_slice(&p.endpoint.to_le_bytes());
                out.extend_from_slice(&p.reserved);
            }
        }
        out
    }
}

/// `struct virtio_iommu_req_tail` with `status` and zero reserved bytes.
pub const fn tail(status: Status) -> [u8; TAIL_SIZE] {
    [status.code(), 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(domain: u32, endpoint: u32) -> Request {
        Request::Attach(Attach {
            domain,
            endpoint,
            flags: 0,
            reserved: [0; 4],
        })
    }

    fn samples() -> [Request; 5] {
        [
            Request::Attach(Attach {
                domain: 0x0403_0201,
                endpoint: 0x0807_0605,
                flags: 0x0c0b_0a09,
                reserved: [0x0d, 0x0e, 0x0f, 0x10],
            }),
            Request::Detach(Detach {
                domain: 0x0403_0201,
                endpoint: 0x0807_0605,
                reserved: [9, 10, 11, 12, 13, 14, 15, 16],
            }),
            Request::Map(Map {
                domain: 0x0403_0201,
                virt_start: 0x0c0b_0a09_0807_0605,
                virt_end: 0x1413_1211_100f_0e0d,
                phys_start: 0x1c1b_1a19_1817_1615,
                flags: 0x201f_1e1d,
            }),
            Request::Unmap(Unmap {
                domain: 0x0403_0201,
                virt_start: 0x0c0b_0a09_0807_0605,
                virt_end: 0x1413_1211_100f_0e0d,
                reserved: [0x15, 0x16, 0x17, 0x18],
            }),
            Request::Probe(Probe {
                endpoint: 0x0403_0201,
                reserved: std::array::from_fn(|i| i as u8 + 5),
            }),
        ]
    }

    #[test]
    fn lengths_are_the_c_struct_sizes_without_tail() {
        let lens: Vec<usize> = samples().iter().map(|r| r.encode().len()).collect();
        assert_eq!(
            lens,
            [ATTACH_LEN, DETACH_LEN, MAP_LEN, UNMAP_LEN, PROBE_LEN]
        );
        // sizeof(struct virtio_iommu_req_*) in C: 24, 24, 40, 32, 72.
        assert_eq!(
            [ATTACH_LEN, DETACH_LEN, MAP_LEN, UNMAP_LEN].map(|l| l + TAIL_SIZE),
            [24, 24, 40, 32]
        );
    }

    #[test]
    fn fields_are_little_endian_at_spec_offsets() {
        // Every sample numbers its bytes 1, 2, 3, ... after the head, so a
        // field at the wrong offset or in big-endian order shows up here.
        for req in samples() {
            let bytes = req.encode();
            assert_eq!(bytes[..4], [req.kind(), 0, 0, 0]);
            let body: Vec<u8> = (1..=(bytes.len() - 4) as u8).collect();
            assert_eq!(bytes[4..], body[..], "{req:?}");
            assert_eq!(decode(&bytes), Ok(req));
        }
    }

    #[test]
    fn big_endian_fields_decode_as_other_values() {
        let mut bytes = attach(0, 0).encode();
        bytes[4..8].copy_from_slice(&7u32.to_be_bytes());
        let Ok(Request::Attach(a)) = decode(&bytes) else {
            panic!("not an attach")
        };
        assert_eq!(a.domain, 0x0700_0000);
    }

    #[test]
    fn truncated_bodies_are_inval() {
        for req in samples() {
            let bytes = req.encode();
            for len in HEAD_SIZE..bytes.len() {
                let err = decode(&bytes[..len]).unwrap_err();
                assert_eq!(
                    err,
                    DecodeError::Truncated {
                        kind: req.kind(),
                        len
                    }
                );
                assert_eq!(err.status(), Status::Inval);
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        for req in samples() {
            let mut bytes = req.encode();
            bytes.extend_from_slice(&[0xff; 13]);
            assert_eq!(decode(&bytes), Ok(req));
        }
    }

    #[test]
    fn head_reserved_bytes_are_ignored() {
        let mut bytes = attach(1, 2).encode();
        bytes[1..4].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(decode(&bytes), Ok(attach(1, 2)));
    }

    #[test]
    fn unknown_types_are_unsupp() {
        for kind in [0u8, 6, 0x7f, 0xff] {
            let mut bytes = attach(1, 2).encode();
            bytes[0] = kind;
            let err = decode(&bytes).unwrap_err();
            assert_eq!(err, DecodeError::UnknownType(kind));
            assert_eq!(err.status(), Status::Unsupp);
            // Even a bare head of an unknown type.
            assert_eq!(decode(&bytes[..4]), Err(DecodeError::UnknownType(kind)));
        }
    }

    #[test]
    fn no_head() {
        for len in 0..HEAD_SIZE {
            assert_eq!(decode(&[T_ATTACH; 3][..len]), Err(DecodeError::NoHead));
        }
    }

    #[test]
    fn extreme_values_round_trip() {
        let reqs = [
            attach(u32::MAX, u32::MAX),
            Request::Map(Map {
                domain: u32::MAX,
                virt_start: u64::MAX,
                virt_end: u64::MAX,
                phys_start: u64::MAX,
                flags: u32::MAX,
            }),
        ];
        for req in reqs {
            assert_eq!(decode(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn tail_bytes() {
        assert_eq!(tail(Status::Ok), [0, 0, 0, 0]);
        assert_eq!(tail(Status::NoEnt), [6, 0, 0, 0]);
    }
}
