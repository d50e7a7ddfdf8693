/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What the virtio-iommu-rs qtests share: the two devices under test, how
 * a guest driver finds one on the PCI bus and how it reaches the device
 * configuration.  What the tests that drive the queues share is in
 * virtio-iommu-rs-queue.h.
 */

#ifndef VIRTIO_IOMMU_RS_QTEST_H
#define VIRTIO_IOMMU_RS_QTEST_H

#include "libqos/pci.h"
#include "libqos/virtio-pci.h"
#include "libqos/virtio.h"
#include "standard-headers/linux/virtio_ids.h"
#include "standard-headers/linux/virtio_iommu.h"

/* The reference (QEMU's C device) and ours */
#define C_DEVICE    "virtio-iommu-pci"
#define RUST_DEVICE "virtio-iommu-rs"

/* Modern-only virtio PCI identity (virtio 1.x spec, 4.1.2) */
#define VIRTIO_PCI_VENDOR_ID       0x1af4
#define VIRTIO_IOMMU_PCI_DEVICE_ID (0x1040 + VIRTIO_ID_IOMMU)

#define CFG_BYPASS offsetof(struct virtio_iommu_config, bypass)

static inline void iommu_save_devfn(QPCIDevice *pdev, int devfn, void *opaque)
{
    GArray *devfns = opaque;

    g_array_append_val(devfns, devfn);
    g_free(pdev);
}

/*
 * Enumerate the bus by vendor/device ID, as a guest driver matches devices,
 * and bind libqos' virtio-pci driver to the one IOMMU found.
 */
static inline QVirtioPCIDevice *iommu_find(QPCIBus *bus)
{
    g_autoptr(GArray) devfns = g_array_new(false, false, sizeof(int));
    QPCIAddress addr = { 0 };
    QVirtioPCIDevice *dev;

    qpci_device_foreach(bus, VIRTIO_PCI_VENDOR_ID, VIRTIO_IOMMU_PCI_DEVICE_ID,
                        iommu_save_devfn, devfns);
    g_assert_cmpuint(devfns->len, ==, 1);

    addr.devfn = g_array_index(devfns, int, 0);
    dev = virtio_pci_new(bus, &addr);
    g_assert_nonnull(dev);

    /*
     * libqos silently falls back to the legacy interface when the virtio
     * vendor capabilities are missing; it then takes the device type from
     * the subsystem ID, which would not be VIRTIO_ID_IOMMU.
     */
    g_assert_cmpuint(dev->vdev.device_type, ==, VIRTIO_ID_IOMMU);

    qvirtio_pci_device_enable(dev);
    return dev;
}

/* Undo iommu_find() */
static inline void iommu_release(QVirtioPCIDevice *dev)
{
    qvirtio_pci_device_disable(dev);
    g_free(dev->pdev);
    g_free(dev);
}

static inline uint8_t iommu_status(QVirtioPCIDevice *dev)
{
    return dev->vdev.bus->get_status(&dev->vdev);
}

static inline uint8_t iommu_read_bypass(QVirtioPCIDevice *dev)
{
    return qvirtio_config_readb(&dev->vdev, CFG_BYPASS);
}

/*
 * libqos has no config write helper: store straight into the device
 * configuration structure located through the virtio vendor capability.
 */
static inline void iommu_write_bypass(QVirtioPCIDevice *dev, uint8_t value)
{
    qpci_io_writeb(dev->pdev, dev->bar, dev->device_cfg_offset + CFG_BYPASS,
                   value);
}

#endif
