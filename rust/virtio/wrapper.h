/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Input to bindgen for the virtio crate. */

#ifndef __CLANG_STDATOMIC_H
#define __CLANG_STDATOMIC_H
/* bindgen's libclang may lack stdatomic.h; QEMU's headers only name these. */
typedef enum memory_order {
  memory_order_relaxed, memory_order_consume, memory_order_acquire,
  memory_order_release, memory_order_acq_rel, memory_order_seq_cst,
} memory_order;
#endif

#include "qemu/osdep.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-pci.h"
#include "hw/virtio/virtio-mmio.h"
#include "hw/virtio/virtio-iommu.h"
#include "hw/qdev-properties-system.h"
#include "system/reset.h"
#include "standard-headers/linux/virtio_ids.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"
