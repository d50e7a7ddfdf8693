// SPDX-License-Identifier: GPL-2.0-or-later

//! `struct virtio_iommu_config` (virtio spec 5.13.4): its little-endian
//! layout, the values the device advertises, and driver writes to `bypass`.

use std::fmt;

use crate::properties::{input_range_end, Granule, PropertyError};

/// Size of the config space: 40 bytes.
pub const CONFIG_SIZE: usize = 40;

/// Offset of the driver-writable `bypass` byte (after `page_size_mask`,
/// `input_range`, `domain_range` and `probe_size`).
pub const OFF_BYPASS: usize = 36;

/// Bytes the device offers for each PROBE answer's properties (the C
/// device's `VIOMMU_PROBE_SIZE`).
pub const PROBE_SIZE: u32 = 512;

/// The config space values. Only `bypass` changes after realize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub page_size_mask: u64,
    pub input_start: u64,
    pub input_end: u64,
    pub domain_start: u32,
    pub domain_end: u32,
    pub probe_size: u32,
    pub bypass: u8,
}

impl Config {
    /// The config a device with these properties advertises.
    pub fn new(
        aw_bits: u8,
        granule: Granule,
        host_page_size: u64,
        boot_bypass: bool,
    ) -> Result<Self, PropertyError> {
        Ok(Self {
            page_size_mask: granule.page_size_mask(host_page_size),
            input_start: 0,
            input_end: input_range_end(aw_bits)?,
            domain_start: 0,
            domain_end: u32::MAX,
            probe_size: PROBE_SIZE,
            bypass: boot_bypass.into(),
        })
    }

    /// The little-endian bytes the driver reads: the fields in order,
    /// then 3 reserved zero bytes.
    pub fn to_bytes(&self) -> [u8; CONFIG_SIZE] {
        let fields: [&[u8]; 7] = [
            &self.page_size_mask.to_le_bytes(),
            &self.input_start.to_le_bytes(),
            &self.input_end.to_le_bytes(),
            &self.domain_start.to_le_bytes(),
            &self.domain_end.to_le_bytes(),
            &self.probe_size.to_le_bytes(),
            &[self.bypass],
        ];
        let mut out = [0u8; CONFIG_SIZE];
        for (dst, src) in out.iter_mut().zip(fields.into_iter().flatten()) {
            *dst = *src;
        }
        out
    }

    /// Apply a driver write into the config space: only `bypass` is
    /// writable; everything else the driver wrote is ignored, as the next
    /// read shows the device's values again. Returns whether `bypass`
    /// changed.
    pub fn driver_write(
        &mut self,
        written: &[u8],
        bypass_config_negotiated: bool,
    ) -> Result<bool, ConfigWriteError> {
        let Some(&value) = written.get(OFF_BYPASS) else {
            return Ok(false);
        };
        if value == self.bypass {
            return Ok(false);
        }
        if !bypass_config_negotiated {
            return Err(ConfigWriteError::BypassNotNegotiated);
        }
        if value > 1 {
            return Err(ConfigWriteError::InvalidBypass(value));
        }
        self.bypass = value;
        Ok(true)
    }
}

/// A driver write the device refuses; the glue reports it with
/// `virtio_error`, like the C device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigWriteError {
    BypassNotNegotiated,
    InvalidBypass(u8),
}

impl fmt::Display for ConfigWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BypassNotNegotiated => write!(f, "cannot set config.bypass"),
            Self::InvalidBypass(v) => write!(f, "invalid config.bypass value '{v}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_config() -> Config {
        Config::new(64, Granule::Host, 4096, true).unwrap()
    }

    #[test]
    fn defaults_match_the_c_device() {
        let c = default_config();
        assert_eq!(c.page_size_mask, !0xfff);
        assert_eq!((c.input_start, c.input_end), (0, u64::MAX));
        assert_eq!((c.domain_start, c.domain_end), (0, u32::MAX));
        assert_eq!(c.probe_size, 512);
        assert_eq!(c.bypass, 1);
        assert_eq!(
            Config::new(64, Granule::Host, 4096, false).unwrap().bypass,
            0
        );
    }

    #[test]
    fn bad_aw_bits_is_refused() {
        assert_eq!(
            Config::new(31, Granule::Size4K, 4096, true),
            Err(PropertyError::AwBits(31))
        );
    }

    #[test]
    fn layout_is_little_endian_at_spec_offsets() {
        let c = Config {
            page_size_mask: 0x0102_0304_0506_0708,
            input_start: 0x1112_1314_1516_1718,
            input_end: 0x2122_2324_2526_2728,
            domain_start: 0x3132_3334,
            domain_end: 0x4142_4344,
            probe_size: 0x5152_5354,
            bypass: 1,
        };
        let b = c.to_bytes();
        assert_eq!(b[0..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(b[8..16], [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
        assert_eq!(b[16..24], [0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21]);
        assert_eq!(b[24..28], [0x34, 0x33, 0x32, 0x31]);
        assert_eq!(b[28..32], [0x44, 0x43, 0x42, 0x41]);
        assert_eq!(b[32..36], [0x54, 0x53, 0x52, 0x51]);
        assert_eq!(b[36..40], [1, 0, 0, 0], "bypass then 3 reserved bytes");
    }

    #[test]
    fn driver_writes_bypass() {
        let mut c = default_config();
        let mut w = c.to_bytes();
        w[OFF_BYPASS] = 0;
        assert_eq!(c.driver_write(&w, true), Ok(true));
        assert_eq!(c.bypass, 0);
        assert_eq!(c.driver_write(&w, true), Ok(false), "same value: no change");
        w[OFF_BYPASS] = 1;
        assert_eq!(c.driver_write(&w, true), Ok(true));
        assert_eq!(c.bypass, 1);
    }

    #[test]
    fn driver_cannot_write_other_fields() {
        let mut c = default_config();
        let mut w = [0xffu8; CONFIG_SIZE];
        w[OFF_BYPASS] = c.bypass;
        assert_eq!(c.driver_write(&w, true), Ok(false));
        assert_eq!(c, default_config());
    }

    #[test]
    fn refused_bypass_writes() {
        let mut c = default_config();
        let mut w = c.to_bytes();
        w[OFF_BYPASS] = 0;
        assert_eq!(
            c.driver_write(&w, false),
            Err(ConfigWriteError::BypassNotNegotiated)
        );
        w[OFF_BYPASS] = 2;
        assert_eq!(
            c.driver_write(&w, true),
            Err(ConfigWriteError::InvalidBypass(2))
        );
        assert_eq!(c.bypass, 1, "a refused write changes nothing");
        assert_eq!(
            ConfigWriteError::InvalidBypass(2).to_string(),
            "invalid config.bypass value '2'"
        );
        assert_eq!(
            c.driver_write(&w[..OFF_BYPASS], true),
            Ok(false),
            "short buffer"
        );
    }
}
