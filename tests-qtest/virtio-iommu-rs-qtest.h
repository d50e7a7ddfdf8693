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

#include "libqtest.h"
#include "libqos/generic-pcihost.h"
#include "libqos/libqos-malloc.h"
#include "libqos/malloc-pc.h"
#include "libqos/pci.h"
#include "libqos/pci-pc.h"
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

/* ---- the machine: q35 (qemu-system-x86_64) or virt (qemu-system-aarch64) */

static inline bool on_arm(void)
{
    return strcmp(qtest_get_arch(), "aarch64") == 0;
}

/*
 * The machine's options.  virt gets a GICv3 and its ITS, so that the MSI
 * doorbell it reserves is the ITS's translation page.
 */
static inline const char *machine_args(void)
{
    return on_arm() ? "-M virt,gic-version=3 -cpu max -m 512M" : "-M q35";
}

/* virt's RAM, as libqos's arm/virt machine describes it */
#define VIRT_RAM_ADDR 0x40000000ULL
#define VIRT_RAM_SIZE 0x20000000ULL

static inline void machine_alloc_init(QGuestAllocator *alloc, QTestState *qts,
                                      QAllocOpts flags)
{
    if (on_arm()) {
        alloc_init(alloc, flags, VIRT_RAM_ADDR, VIRT_RAM_ADDR + VIRT_RAM_SIZE,
                   4096);
    } else {
        pc_alloc_init(alloc, qts, flags);
    }
}

/* The machine's PCI root bus as libqos drives it */
static inline QPCIBus *machine_pci_new(QTestState *qts, QGuestAllocator *alloc)
{
    QGenericPCIBus *gbus;

    if (!on_arm()) {
        return qpci_new_pc(qts, alloc);
    }
    gbus = g_new0(QGenericPCIBus, 1);
    qpci_init_generic(gbus, qts, alloc, false);
    return &gbus->bus;
}

static inline void machine_pci_free(QPCIBus *bus)
{
    if (on_arm()) {
        g_free(container_of(bus, QGenericPCIBus, bus));
    } else {
        qpci_free_pc(bus);
    }
}

/*
 * The MSI doorbell the machine declares as the reserved MSI region of a
 * virtio-iommu (either device: patches 0004 and 0006) when the user gives
 * no list: the APIC window on q35, the ITS translation page on virt.
 */
static inline uint64_t msi_start(void)
{
    return on_arm() ? 0x08090000 : 0xfee00000;
}

static inline uint64_t msi_end(void)
{
    return on_arm() ? 0x0809ffff : 0xfeefffff;
}

/* The same as a reserved-regions element */
static inline char *msi_region(void)
{
    return g_strdup_printf("0x%" PRIx64 ":0x%" PRIx64 ":1", msi_start(),
                           msi_end());
}

/*
 * edu's DMA engine masks addresses to 28 bits by default: below virt's
 * RAM, which starts at 1 GiB.
 */
static inline const char *edu_args(void)
{
    return on_arm() ? "edu,dma_mask=0xffffffffffff" : "edu";
}

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

/* ---- starting QEMU and expecting an outcome ------------------------------ */

/*
 * Run QEMU (the machine of machine_args(), then @extra_args) with the
 * device described by @fmt and expect @outcome, for example a refusal to
 * start: a normal exit with status 1 (not a crash) and @expected_msg on
 * stderr.
 *
 * QEMU also gets a QMP monitor whose input is a file asking it to quit.  If
 * the device is wrongly accepted, QEMU then exits 0 as soon as the main loop
 * runs instead of hanging the test forever.
 */
typedef enum QemuOutcome {
    QEMU_STARTS,        /* starts, then quits cleanly on QMP "quit" */
    QEMU_REFUSES,       /* exits with status 1 and expected_msg on stderr */
    QEMU_ABORTS,        /* killed by SIGABRT (a known C-device bug) */
} QemuOutcome;

static inline void G_GNUC_PRINTF(4, 5)
assert_qemu_outcome(QemuOutcome outcome, const char *expected_msg,
                    const char *extra_args, const char *fmt, ...)
{
    static const char qmp_quit[] =
        "{ \"execute\": \"qmp_capabilities\" }\n"
        "{ \"execute\": \"quit\" }\n";
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) qemu_argv = NULL;
    g_auto(GStrv) machine_argv = NULL;
    g_autofree char *device_arg = NULL;
    g_autofree char *qmp_file = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    int wait_status;
    va_list ap;
    int fd;

    va_start(ap, fmt);
    device_arg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_test_message("-device %s", device_arg);

    fd = g_file_open_tmp("virtio-iommu-rs-test-XXXXXX", &qmp_file, &err);
    g_assert_no_error(err);
    close(fd);
    g_file_set_contents(qmp_file, qmp_quit, -1, &err);
    g_assert_no_error(err);

    /* QTEST_QEMU_BINARY may carry arguments: libqtest runs it via sh -c */
    g_shell_parse_argv(qtest_qemu_binary(NULL), NULL, &qemu_argv, &err);
    g_assert_no_error(err);
    for (char **arg = qemu_argv; *arg; arg++) {
        g_ptr_array_add(argv, g_strdup(*arg));
    }
    g_shell_parse_argv(machine_args(), NULL, &machine_argv, &err);
    g_assert_no_error(err);
    for (char **arg = machine_argv; *arg; arg++) {
        g_ptr_array_add(argv, g_strdup(*arg));
    }
    g_ptr_array_add(argv, g_strdup("-accel"));
    g_ptr_array_add(argv, g_strdup("qtest"));
    g_ptr_array_add(argv, g_strdup("-display"));
    g_ptr_array_add(argv, g_strdup("none"));
    g_ptr_array_add(argv, g_strdup("-nodefaults"));
    g_ptr_array_add(argv, g_strdup("-S"));
    g_ptr_array_add(argv, g_strdup("-chardev"));
    g_ptr_array_add(argv, g_strdup_printf("file,id=qmp,path=/dev/null,"
                                          "input-path=%s", qmp_file));
    g_ptr_array_add(argv, g_strdup("-mon"));
    g_ptr_array_add(argv, g_strdup("chardev=qmp,mode=control"));
    if (extra_args) {
        g_auto(GStrv) extra = NULL;

        g_shell_parse_argv(extra_args, NULL, &extra, &err);
        g_assert_no_error(err);
        for (char **arg = extra; *arg; arg++) {
            g_ptr_array_add(argv, g_strdup(*arg));
        }
    }
    g_ptr_array_add(argv, g_strdup("-device"));
    g_ptr_array_add(argv, g_strdup(device_arg));
    g_ptr_array_add(argv, NULL);

    /* Capture stdout too: anything QEMU prints must not corrupt TAP output */
    g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH,
                 NULL, NULL, &out, &errout, &wait_status, &err);
    unlink(qmp_file);
    g_assert_no_error(err);

    g_test_message("QEMU stderr: %s", errout);
    switch (outcome) {
    case QEMU_STARTS:
        g_assert_true(WIFEXITED(wait_status));
        g_assert_cmpint(WEXITSTATUS(wait_status), ==, 0);
        break;
    case QEMU_REFUSES:
        g_assert_true(WIFEXITED(wait_status));
        g_assert_cmpint(WEXITSTATUS(wait_status), ==, 1);
        g_assert_nonnull(strstr(errout, expected_msg));
        break;
    case QEMU_ABORTS:
        g_assert_true(WIFSIGNALED(wait_status));
        g_assert_cmpint(WTERMSIG(wait_status), ==, SIGABRT);
        break;
    }
}

/* @text (@device's trace log) has the @n lines of @expected, in order */
static inline void assert_log_in_order(const char *device, const char *text,
                                       const char *const *expected, size_t n)
{
    const char *at = text;

    for (size_t i = 0; i < n; i++) {
        const char *found = strstr(at, expected[i]);

        if (!found) {
            g_error("%s: no '%s' (in this order) in its trace log:\n%s",
                    device, expected[i], text);
        }
        at = found;
    }
}

#define assert_qemu_refuses(msg, ...) \
    assert_qemu_outcome(QEMU_REFUSES, msg, NULL, __VA_ARGS__)

#endif
