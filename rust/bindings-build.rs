// SPDX-License-Identifier: GPL-2.0-or-later

//! Build script of the binding crates (pci, virtio, vmstate-io, qom-props)
//! when cargo builds them (rust-analyzer, `cargo clippy` in QEMU's `rust/`
//! directory): their bindings are the ones meson generated, found under
//! `MESON_BUILD_ROOT` as QEMU's own crates find theirs, and linked into
//! `OUT_DIR` where `bindings.rs` includes them outside meson.

use std::{env, fs, io, os::unix::fs::symlink, path::Path};

fn main() -> io::Result<()> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let krate = manifest_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a crate directory name");
    let Ok(root) = env::var("MESON_BUILD_ROOT") else {
        panic!(
            "\n    MESON_BUILD_ROOT is not set: point it to QEMU's build directory\n    \
             (build/qemu-build), or run cargo from `pyvenv/bin/meson devenv` there.\n"
        );
    };
    // The checkout is rust/hw/virtio-iommu-rs in QEMU's tree, and meson
    // writes each crate's bindings in the matching build directory.
    let file = format!("{root}/rust/hw/virtio-iommu-rs/rust/{krate}/bindings.inc.rs");
    assert!(
        Path::new(&file).exists(),
        "\n    {file} does not exist: build QEMU first (make build).\n"
    );
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bindings.inc.rs");
    if dest.symlink_metadata().is_ok() {
        fs::remove_file(&dest)?;
    }
    symlink(&file, &dest)?;
    println!("cargo:rerun-if-changed={file}");
    println!("cargo:rerun-if-env-changed=MESON_BUILD_ROOT");
    Ok(())
}
