// SPDX-License-Identifier: GPL-2.0-or-later

//! The status codes a request's tail carries back (virtio spec 5.13.6).

/// `VIRTIO_IOMMU_S_*`: the first byte of `struct virtio_iommu_req_tail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    IoErr = 1,
    Unsupp = 2,
    DevErr = 3,
    Inval = 4,
    Range = 5,
    NoEnt = 6,
    Fault = 7,
    NoMem = 8,
}

impl Status {
    /// The byte the driver reads.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status a tail byte stands for, if it is a known one.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::IoErr,
            2 => Self::Unsupp,
            3 => Self::DevErr,
            4 => Self::Inval,
            5 => Self::Range,
            6 => Self::NoEnt,
            7 => Self::Fault,
            8 => Self::NoMem,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_spec_values() {
        let all = [
            (Status::Ok, 0),
            (Status::IoErr, 1),
            (Status::Unsupp, 2),
            (Status::DevErr, 3),
            (Status::Inval, 4),
            (Status::Range, 5),
            (Status::NoEnt, 6),
            (Status::Fault, 7),
            (Status::NoMem, 8),
        ];
        for (status, code) in all {
            assert_eq!(status.code(), code);
            assert_eq!(Status::from_code(code), Some(status));
        }
        assert_eq!(Status::from_code(9), None);
        assert_eq!(Status::from_code(0xff), None);
    }
}
