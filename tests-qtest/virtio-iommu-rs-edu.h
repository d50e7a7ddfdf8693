/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What the virtio-iommu-rs qtests that watch an endpoint's DMA share (the
 * translate and migration tests): edu (hw/misc/edu.c) as the DMA
 * initiator, the IOMMU's event queue for fault reports, and checks of
 * guest RAM.
 */

#ifndef VIRTIO_IOMMU_RS_EDU_H
#define VIRTIO_IOMMU_RS_EDU_H

#include "hw/pci/pci_regs.h"
#include "virtio-iommu-rs-queue.h"

#define EDU_DEVFN   QPCI_DEVFN(5, 0)
#define EDU_EP      EDU_DEVFN

/* ---- edu (hw/misc/edu.c) ------------------------------------------------ */

#define EDU_VENDOR_ID   0x1234
#define EDU_DEVICE_ID   0x11e8
#define EDU_REG_ID      0x00
#define EDU_ID_VALUE    0x010000ed
#define EDU_REG_DMA_SRC 0x80
#define EDU_REG_DMA_DST 0x88
#define EDU_REG_DMA_CNT 0x90
#define EDU_REG_DMA_CMD 0x98
#define EDU_DMA_RUN     0x1
#define EDU_DMA_TO_RAM  0x2     /* direction bit: edu buffer -> DMA address */
/* Where edu's own buffer sits in the DMA engine's address map, and its size */
#define EDU_BUF         0x40000
#define EDU_BUF_SIZE    0x1000
/*
 * edu starts a transfer from a virtual-clock timer 100 ms after the command
 * is written, and clamps DMA addresses to its dma_mask (28 bits by
 * default): every IOVA and GPA below stays under 256 MiB.
 */
#define EDU_DMA_DELAY_NS (101 * 1000 * 1000)
#define EDU_DMA_LIMIT    (on_arm() ? 1ULL << 48 : 1ULL << 28)   /* edu_args() */

/*
 * IOVAs live at 192 MiB: not RAM (q35 gets 128 MiB by default) and not
 * anything else, so an access that escaped translation would not reach
 * the buffers the checks look at.
 */
#define IOVA_BASE 0x0c000000ULL

/* ---- the virtio-iommu driver -------------------------------------------- */

#define REQ_MAX    64

#define FAULT_SIZE sizeof(struct virtio_iommu_fault)
#define F_READ     VIRTIO_IOMMU_FAULT_F_READ
#define F_WRITE    VIRTIO_IOMMU_FAULT_F_WRITE
#define F_ADDRESS  VIRTIO_IOMMU_FAULT_F_ADDRESS

/*
 * Event buffers are larger than a fault record, to see that the device
 * writes exactly one record and says so in the used length.
 */
#define EVT_BUFS      16
#define EVT_BUF_SIZE  32
#define EVT_FILL      0xa5

/* Both devices report within a millisecond; this only bounds a hang */
#define EVENT_TIMEOUT_US   (2 * G_USEC_PER_SEC)
/*
 * How long to watch the event queue before concluding that no fault is
 * coming.  Both devices report a fault from within the DMA access, so it
 * is in the used ring by the time qtest_clock_step() returns; the wait
 * gives a device that defers delivery (to a bottom half, say) a chance to
 * show it.
 */
#define QUIET_US           (50 * 1000)

/* ---- guest RAM used by the cases ---------------------------------------- */

#define RAM_SIZE    0x4000      /* four pages, page-aligned */
#define GUARD_FILL  0xcc        /* what no DMA wrote */

/* ---- machine ------------------------------------------------------------ */

typedef struct Rig {
    /* The IOMMU and its driver; out_area holds a request, in_area a tail */
    Iommu iommu;
    uint64_t evt_area;          /* EVT_BUFS event buffers */
    unsigned evt_posted;        /* event buffers handed to the device */
    uint32_t evt_desc[EVT_BUFS];    /* descriptor of each posted buffer */
    /* The endpoint */
    QPCIDevice *edu;
    QPCIBar edu_bar;
    uint32_t edu_ep;            /* its endpoint id: its requester id */
    /* RAM_SIZE bytes of guest RAM the DMA goes to and from */
    uint64_t ram;
} Rig;

/* Find edu at @devfn, map its MMIO BAR and let it master the bus (DMA) */
static inline void edu_init(Rig *r, int devfn)
{
    uint16_t cmd;

    r->edu = qpci_device_find(r->iommu.bus, devfn);
    r->edu_ep = devfn;
    g_assert_nonnull(r->edu);
    g_assert_cmphex(qpci_config_readw(r->edu, PCI_VENDOR_ID), ==,
                    EDU_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(r->edu, PCI_DEVICE_ID), ==,
                    EDU_DEVICE_ID);
    r->edu_bar = qpci_iomap(r->edu, 0, NULL);
    qpci_device_enable(r->edu);
    cmd = qpci_config_readw(r->edu, PCI_COMMAND);
    g_assert_cmphex(cmd & PCI_COMMAND_MASTER, ==, PCI_COMMAND_MASTER);
    g_assert_cmphex(qpci_io_readl(r->edu, r->edu_bar, EDU_REG_ID), ==,
                    EDU_ID_VALUE);
}

/* Give back what a rig took: edu's BAR, the guest buffers, the QEMU */
static inline void rig_stop(Rig *r)
{
    qpci_iounmap(r->edu, r->edu_bar);
    g_free(r->edu);
    guest_free(&r->iommu.alloc, r->evt_area);
    guest_free(&r->iommu.alloc, r->ram);
    iommu_stop(&r->iommu);
    memset(r, 0, sizeof(*r));
}

/* ---- the event queue ---------------------------------------------------- */

typedef struct Fault {
    uint8_t reason;
    uint32_t flags;
    uint32_t endpoint;
    uint64_t address;
} Fault;

/* Hand @n more device-writable buffers to the event queue */
static inline void evt_post(Rig *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t addr = r->evt_area + r->evt_posted * EVT_BUF_SIZE;
        uint32_t desc;

        g_assert_cmpuint(r->evt_posted, <, EVT_BUFS);
        qtest_memset(r->iommu.qts, addr, EVT_FILL, EVT_BUF_SIZE);
        desc = qvirtqueue_add(r->iommu.qts, r->iommu.evtq, addr,
                              EVT_BUF_SIZE, true, false);
        r->evt_desc[r->evt_posted++] = desc;
        qvirtqueue_kick(r->iommu.qts, &r->iommu.dev->vdev, r->iommu.evtq, desc);
    }
}

/*
 * The next used event buffer within @timeout_us, decoded.  The record must
 * fill exactly the first FAULT_SIZE bytes, with its reserved bytes zero.
 */
static inline bool evt_next(Rig *r, gint64 timeout_us, Fault *f)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;
    uint8_t buf[EVT_BUF_SIZE];
    uint32_t id, used_len;
    unsigned slot;

    while (!qvirtqueue_get_buf(r->iommu.qts, r->iommu.evtq, &id, &used_len)) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
    }
    for (slot = 0; slot < r->evt_posted && r->evt_desc[slot] != id; slot++) {
        continue;
    }
    g_assert_cmpuint(slot, <, r->evt_posted);
    g_assert_cmpuint(used_len, ==, FAULT_SIZE);
    qtest_memread(r->iommu.qts, r->evt_area + slot * EVT_BUF_SIZE, buf,
                  sizeof(buf));

    f->reason = buf[offsetof(struct virtio_iommu_fault, reason)];
    f->flags = ldl_le_p(buf + offsetof(struct virtio_iommu_fault, flags));
    f->endpoint = ldl_le_p(buf + offsetof(struct virtio_iommu_fault,
                                          endpoint));
    f->address = ldq_le_p(buf + offsetof(struct virtio_iommu_fault, address));
    for (size_t i = 0; i < sizeof_field(struct virtio_iommu_fault, reserved);
         i++) {
        g_assert_cmphex(buf[offsetof(struct virtio_iommu_fault, reserved) + i],
                        ==, 0);
    }
    for (size_t i = 0; i < sizeof_field(struct virtio_iommu_fault, reserved2);
         i++) {
        g_assert_cmphex(buf[offsetof(struct virtio_iommu_fault, reserved2) + i],
                        ==, 0);
    }
    for (size_t i = FAULT_SIZE; i < EVT_BUF_SIZE; i++) {
        g_assert_cmphex(buf[i], ==, EVT_FILL);
    }
    return true;
}

static inline void expect_fault(Rig *r, uint8_t reason, uint32_t flags,
                                uint64_t address)
{
    Fault f;

    if (!evt_next(r, EVENT_TIMEOUT_US, &f)) {
        g_error("%s reported no fault (expected reason %u flags 0x%x "
                "address 0x%" PRIx64 ")", r->iommu.device, reason, flags,
                address);
    }
    if (f.reason != reason || f.flags != flags || f.endpoint != r->edu_ep ||
        f.address != address) {
        g_error("%s reported reason %u flags 0x%x endpoint 0x%x address "
                "0x%" PRIx64 ", expected reason %u flags 0x%x endpoint 0x%x "
                "address 0x%" PRIx64, r->iommu.device, f.reason, f.flags,
                f.endpoint, f.address, reason, flags, r->edu_ep, address);
    }
}

static inline void expect_no_fault(Rig *r)
{
    Fault f;

    if (evt_next(r, QUIET_US, &f)) {
        g_error("%s reported an unexpected fault: reason %u flags 0x%x "
                "endpoint 0x%x address 0x%" PRIx64, r->iommu.device, f.reason,
                f.flags, f.endpoint, f.address);
    }
}

/* ---- DMA by edu --------------------------------------------------------- */

/* Run one edu transfer and wait for it: the timer fires on clock_step */
static inline void edu_dma(Rig *r, uint64_t src, uint64_t dst,
                           uint64_t len, bool to_ram)
{
    g_assert_cmpuint(len, <=, EDU_BUF_SIZE);
    qpci_io_writeq(r->edu, r->edu_bar, EDU_REG_DMA_SRC, src);
    qpci_io_writeq(r->edu, r->edu_bar, EDU_REG_DMA_DST, dst);
    qpci_io_writeq(r->edu, r->edu_bar, EDU_REG_DMA_CNT, len);
    qpci_io_writeq(r->edu, r->edu_bar, EDU_REG_DMA_CMD,
                   EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0));
    qtest_clock_step(r->iommu.qts, EDU_DMA_DELAY_NS);
    g_assert_cmphex(qpci_io_readq(r->edu, r->edu_bar, EDU_REG_DMA_CMD) &
                    EDU_DMA_RUN, ==, 0);
}

/* edu reads @len bytes at DMA address @addr into its buffer at @off */
static inline void dma_read(Rig *r, uint64_t addr, uint32_t off,
                            uint32_t len)
{
    g_assert_cmpuint(addr + len, <=, EDU_DMA_LIMIT);
    edu_dma(r, addr, EDU_BUF + off, len, false);
}

/* edu writes @len bytes of its buffer at @off to DMA address @addr */
static inline void dma_write(Rig *r, uint64_t addr, uint32_t off,
                             uint32_t len)
{
    g_assert_cmpuint(addr + len, <=, EDU_DMA_LIMIT);
    edu_dma(r, EDU_BUF + off, addr, len, true);
}

/* ---- checking guest RAM ------------------------------------------------- */

/* Bytes that no guard fill or other pattern can be mistaken for */
static inline void pattern(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = seed + i * 7 + (i >> 8);
    }
}

static inline void ram_write_pattern(Rig *r, uint64_t gpa, size_t len,
                                     uint8_t seed)
{
    g_autofree uint8_t *buf = g_malloc(len);

    pattern(buf, len, seed);
    qtest_memwrite(r->iommu.qts, gpa, buf, len);
}

static inline void ram_expect_pattern(Rig *r, uint64_t gpa, size_t len,
                                      uint8_t seed)
{
    g_autofree uint8_t *want = g_malloc(len);
    g_autofree uint8_t *got = g_malloc(len);

    pattern(want, len, seed);
    qtest_memread(r->iommu.qts, gpa, got, len);
    g_assert_cmpmem(got, len, want, len);
}

static inline void ram_expect_fill(Rig *r, uint64_t gpa, size_t len,
                                   uint8_t fill)
{
    g_autofree uint8_t *want = g_malloc(len);
    g_autofree uint8_t *got = g_malloc(len);

    memset(want, fill, len);
    qtest_memread(r->iommu.qts, gpa, got, len);
    g_assert_cmpmem(got, len, want, len);
}

/*
 * A RAM -> edu -> RAM round trip through DMA addresses @src and @dst that
 * should reach @src_gpa and @dst_gpa: @len bytes of a pattern must arrive,
 * and the guard bytes on either side of the destination stay as they are.
 */
static inline void round_trip(Rig *r, uint64_t src, uint64_t src_gpa,
                              uint64_t dst, uint64_t dst_gpa, uint32_t len,
                              uint8_t seed)
{
    ram_write_pattern(r, src_gpa, len, seed);
    qtest_memset(r->iommu.qts, dst_gpa - 1, GUARD_FILL, len + 2);
    dma_read(r, src, 0, len);
    dma_write(r, dst, 0, len);
    ram_expect_pattern(r, dst_gpa, len, seed);
    ram_expect_fill(r, dst_gpa - 1, 1, GUARD_FILL);
    ram_expect_fill(r, dst_gpa + len, 1, GUARD_FILL);
}

#endif
