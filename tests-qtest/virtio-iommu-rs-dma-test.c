/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest for the Rust DMA API (rust/dma), through the x-dma-test device
 * (docs/dma-test-device.md), which does each transfer either through the
 * API or through QEMU's C path (pci_dma_rw).
 *
 * With an IOMMU in front of the device, every case runs once behind QEMU's
 * C virtio-iommu-pci and once behind virtio-iommu-rs, and the basic and
 * differential cases also behind QEMU's intel-iommu (legacy page tables
 * written by the test, invalidated through the IOTLB registers): the API
 * must work with any IOMMU.  The cases check that no translation survives the UNMAP
 * that ended it (the API caches translations and host pointers), that a
 * read-only translation never serves a write, that bypass switches and
 * remaps take effect at once, that persistent maps are invalidated by an
 * UNMAP under them, that the IOMMU's replay reaches a notifier, and that
 * random sequences of DMAs interleaved with MAP/UNMAP give the same bytes
 * and the same MemTxResult through the API as through pci_dma_rw.
 *
 * Every case runs in a subprocess with its own QEMU.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "hw/pci/pci_regs.h"
#include "hw/i386/intel_iommu.h"
#include "hw/i386/intel_iommu_internal.h"
#include "virtio-iommu-rs-queue.h"
#include "virtio-iommu-rs-stream.h"

/* x-dma-test at 05.0 on q35's root bus: its endpoint id is its devfn */
#define DT_DEVFN      QPCI_DEVFN(5, 0)
#define DT_EP         DT_DEVFN
#define DT_VENDOR_ID  0x1b36
#define DT_DEVICE_ID  0x10f0

#define REG_ID        0x00
#define REG_SRC       0x08
#define REG_DST       0x10
#define REG_LEN       0x18
#define REG_COUNT     0x1c
#define REG_PATH      0x20
#define REG_CMD       0x24
#define REG_FAILED    0x28
#define REG_RESULT    0x2c
#define REG_MODE      0x38
#define REG_UNMAPS    0x3c
#define REG_INVALIDATIONS 0x40
#define REG_MAP_STATE 0x44
#define REG_REPLAYED  0x48
#define REG_MISSES    0x4c
#define REG_BUFFER    0x10000

#define ID_VALUE      0x444d4131

/* edu (hw/misc/edu.c), an MMIO target: its ID register is at 0 */
#define EDU_DEVFN     QPCI_DEVFN(6, 0)
#define EDU_ID_VALUE  0x010000ed

#define CMD_READ        1
#define CMD_WRITE       2
#define CMD_COPY        3
#define CMD_MAP         4
#define CMD_MAP_WRITE   5
#define CMD_MAP_RELEASE 6
#define CMD_REPLAY      7

#define PATH_RUST 0
#define PATH_C    1

#define MODE_DIRECT 0
#define MODE_IOMMU  1
#define MODE_OFF    2

#define MAP_NONE        0
#define MAP_LIVE        1
#define MAP_INVALIDATED 2

/* MEMTX_DECODE_ERROR (exec/memattrs.h, which intel_iommu.h brings in) */

#define REQ_MAX   64
#define PAGE      0x1000ULL
#define RAM_PAGES 8
#define RAM_SIZE  (RAM_PAGES * PAGE)
#define GUARD     0xcc

/* IOVAs at 192 MiB: neither RAM nor anything else on q35 */
#define IOVA_BASE 0x0c000000ULL
#define IOVA(page) (IOVA_BASE + (page) * PAGE)

#define REQUIRED_FEATURES                             \
    (BIT_ULL(VIRTIO_F_VERSION_1) |                    \
     BIT_ULL(VIRTIO_IOMMU_F_MAP_UNMAP) |              \
     BIT_ULL(VIRTIO_IOMMU_F_BYPASS_CONFIG))

#define CASE_TIMEOUT_US (60 * G_USEC_PER_SEC)

/* The third IOMMU: QEMU's VT-d, programmed through its registers */
#define INTEL_DEVICE "intel-iommu"
#define VTD(reg)     (Q35_HOST_BRIDGE_IOMMU_ADDR + (reg))
#define VTD_DID      1

typedef struct Rig {
    Iommu iommu;            /* a virtio-iommu's driver, if any */
    QTestState *qts;
    QPCIBus *bus;
    QGuestAllocator *alloc;
    QGuestAllocator own_alloc;  /* without an IOMMU */
    QPCIDevice *dev;
    QPCIBar bar;
    uint64_t ram;           /* RAM_SIZE bytes of guest RAM, page-aligned */
    /* VT-d: root table, context table, 3-level second-level tables */
    bool intel;
    uint64_t vtd_root, vtd_ctx, vtd_l3, vtd_l2, vtd_l1;
} Rig;

static uint8_t send_raw(Iommu *m, const void *req, size_t len)
{
    return send_polled(m, req, len, REQ_MAX);
}

/* ---- the test device ---------------------------------------------------- */

static uint32_t rd(Rig *r, uint64_t reg)
{
    return qpci_io_readl(r->dev, r->bar, reg);
}

static void wr(Rig *r, uint64_t reg, uint32_t v)
{
    qpci_io_writel(r->dev, r->bar, reg, v);
}

/*
 * Run @cmd with the given transfer registers; returns how many transfers
 * failed.  The command runs inside the MMIO write.
 */
static uint32_t dt_run(Rig *r, uint32_t cmd, int path, uint64_t src,
                       uint64_t dst, uint32_t len)
{
    qpci_io_writeq(r->dev, r->bar, REG_SRC, src);
    qpci_io_writeq(r->dev, r->bar, REG_DST, dst);
    wr(r, REG_LEN, len);
    wr(r, REG_COUNT, 1);
    wr(r, REG_PATH, path);
    wr(r, REG_CMD, cmd);
    return rd(r, REG_FAILED);
}

static void buffer_set(Rig *r, const uint8_t *data, size_t len)
{
    qpci_memwrite(r->dev, r->bar, REG_BUFFER, data, len);
}

static void buffer_get(Rig *r, uint8_t *data, size_t len)
{
    qpci_memread(r->dev, r->bar, REG_BUFFER, data, len);
}

/* Bytes no guard fill can be mistaken for */
static void pattern(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 8)) | 1;
    }
}

static void ram_fill(Rig *r, uint8_t value)
{
    qtest_memset(r->qts, r->ram, value, RAM_SIZE);
}

/* Guest RAM at page @page + @off holds @len bytes of @seed's pattern */
static void assert_ram(Rig *r, unsigned page, uint64_t off, size_t len,
                       uint8_t seed)
{
    g_autofree uint8_t *want = g_malloc(len);
    g_autofree uint8_t *got = g_malloc(len);

    pattern(want, len, seed);
    qtest_memread(r->qts, r->ram + page * PAGE + off, got, len);
    g_assert_cmpmem(got, len, want, len);
}

/* Guest RAM is all @value */
static void assert_ram_all(Rig *r, uint8_t value)
{
    g_autofree uint8_t *got = g_malloc(RAM_SIZE);

    qtest_memread(r->qts, r->ram, got, RAM_SIZE);
    for (size_t i = 0; i < RAM_SIZE; i++) {
        if (got[i] != value) {
            g_error("RAM byte 0x%zx is 0x%02x, expected 0x%02x", i, got[i],
                    value);
        }
    }
}

static void dt_init(Rig *r)
{
    r->dev = qpci_device_find(r->bus, DT_DEVFN);
    g_assert_nonnull(r->dev);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_VENDOR_ID), ==,
                    DT_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_DEVICE_ID), ==,
                    DT_DEVICE_ID);
    r->bar = qpci_iomap(r->dev, 0, NULL);
    qpci_device_enable(r->dev);
    g_assert_cmphex(rd(r, REG_ID), ==, ID_VALUE);
}

static void rig_ram(Rig *r)
{
    r->ram = guest_alloc(r->alloc, RAM_SIZE);
    g_assert_cmphex(r->ram & (PAGE - 1), ==, 0);
    ram_fill(r, GUARD);
}

/*
 * The machine with @device (NULL: no IOMMU) at 04.0, x-dma-test at 05.0
 * and edu at 06.0
 */
static void rig_start_with(Rig *r, const char *device, bool boot_bypass,
                           const char *extra_args)
{
    memset(r, 0, sizeof(*r));
    if (device && strcmp(device, INTEL_DEVICE) != 0) {
        g_autofree char *props =
            g_strdup_printf(",\"boot-bypass\":%s,\"id\":\"iommu\"",
                            boot_bypass ? "true" : "false");
        g_autofree char *args =
            g_strdup_printf("-device x-dma-test,addr=05.0,id=dma %s",
                            extra_args);

        iommu_boot(&r->iommu, device, props, args,
                   REQUIRED_FEATURES, REQ_MAX, TAIL_SIZE);
        r->qts = r->iommu.qts;
        r->bus = r->iommu.bus;
        r->alloc = &r->iommu.alloc;
    } else {
        /* intel-iommu first: devices take their DMA space at realize */
        r->intel = device && strcmp(device, INTEL_DEVICE) == 0;
        r->qts = qtest_initf("%s -nodefaults %s "
                             "-device x-dma-test,addr=05.0,id=dma "
                             "-device %s,addr=06.0 %s", machine_args(),
                             r->intel ? "-device intel-iommu" : "",
                             edu_args(), extra_args);
        machine_alloc_init(&r->own_alloc, r->qts, ALLOC_LEAK_ASSERT);
        r->alloc = &r->own_alloc;
        r->bus = machine_pci_new(r->qts, r->alloc);
    }
    rig_ram(r);
    dt_init(r);
}

static void rig_start(Rig *r, const char *device, bool boot_bypass)
{
    rig_start_with(r, device, boot_bypass, "");
}

static void rig_stop(Rig *r)
{
    qpci_iounmap(r->dev, r->bar);
    g_free(r->dev);
    guest_free(r->alloc, r->ram);
    if (r->intel) {
        guest_free(r->alloc, r->vtd_root);
        guest_free(r->alloc, r->vtd_ctx);
        guest_free(r->alloc, r->vtd_l3);
        guest_free(r->alloc, r->vtd_l2);
        guest_free(r->alloc, r->vtd_l1);
    }
    if (r->iommu.qts) {
        iommu_stop(&r->iommu);
    } else {
        machine_pci_free(r->bus);
        alloc_destroy(r->alloc);
        qtest_quit(r->qts);
    }
}

/* ---- VT-d (legacy mode, 39-bit, 3-level second-level tables) ------------ */

static uint64_t vtd_table(Rig *r)
{
    uint64_t t = guest_alloc(r->alloc, PAGE);

    g_assert_cmphex(t & (PAGE - 1), ==, 0);
    qtest_memset(r->qts, t, 0, PAGE);
    return t;
}

static void vtd_wait_status(Rig *r, uint32_t bit)
{
    gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC;

    while (!(qtest_readl(r->qts, VTD(DMAR_GSTS_REG)) & bit)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
    }
}

/*
 * Tables mapping nothing yet for the test device (bus 0, DT_DEVFN) in
 * domain VTD_DID, then DMA remapping on.  IOVA_BASE is 2 MiB-aligned, so
 * the RAM_PAGES IOVA pages share one last-level table.
 */
static void vtd_enable(Rig *r)
{
    r->vtd_root = vtd_table(r);
    r->vtd_ctx = vtd_table(r);
    r->vtd_l3 = vtd_table(r);
    r->vtd_l2 = vtd_table(r);
    r->vtd_l1 = vtd_table(r);
    qtest_writeq(r->qts, r->vtd_root, r->vtd_ctx | VTD_ROOT_ENTRY_P);
    qtest_writeq(r->qts, r->vtd_ctx + DT_DEVFN * 16,
                 r->vtd_l3 | VTD_CONTEXT_ENTRY_P | VTD_CONTEXT_TT_MULTI_LEVEL);
    /* AW 1: 39-bit, 3 levels */
    qtest_writeq(r->qts, r->vtd_ctx + DT_DEVFN * 16 + 8, 1 | (VTD_DID << 8));
    qtest_writeq(r->qts, r->vtd_l3 + ((IOVA_BASE >> 30) & 0x1ff) * 8,
                 r->vtd_l2 | VTD_SL_R | VTD_SL_W);
    qtest_writeq(r->qts, r->vtd_l2 + ((IOVA_BASE >> 21) & 0x1ff) * 8,
                 r->vtd_l1 | VTD_SL_R | VTD_SL_W);
    qtest_writeq(r->qts, VTD(DMAR_RTADDR_REG), r->vtd_root);
    qtest_writel(r->qts, VTD(DMAR_GCMD_REG), VTD_GCMD_SRTP);
    vtd_wait_status(r, VTD_GSTS_RTPS);
    qtest_writel(r->qts, VTD(DMAR_GCMD_REG), VTD_GCMD_TE);
    vtd_wait_status(r, VTD_GSTS_TES);
}

static uint64_t vtd_pte(Rig *r, unsigned page)
{
    return r->vtd_l1 + (((IOVA(page) >> 12) & 0x1ff) * 8);
}

/* A page-selective IOTLB invalidation of one IOVA page, and its end */
static void vtd_invalidate(Rig *r, unsigned page)
{
    gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC;

    qtest_writeq(r->qts, VTD(DMAR_IVA_REG), IOVA(page));
    qtest_writeq(r->qts, VTD(DMAR_IOTLB_REG), VTD_TLB_IVT | VTD_TLB_PSI_FLUSH |
                 ((uint64_t)VTD_DID << 32));
    while (qtest_readq(r->qts, VTD(DMAR_IOTLB_REG)) & VTD_TLB_IVT) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
    }
}

/* ---- map and unmap, whichever the IOMMU ---------------------------------- */

/* Map IOVA page @page to RAM page @to with the virtio-iommu flags @flags */
static void iommu_map_page(Rig *r, unsigned page, unsigned to, uint32_t flags)
{
    if (r->intel) {
        /* VT-d caches no non-present entry: no invalidation needed */
        qtest_writeq(r->qts, vtd_pte(r, page),
                     (r->ram + to * PAGE) | (flags & R ? VTD_SL_R : 0) |
                     (flags & W ? VTD_SL_W : 0));
        return;
    }
    assert_status(map(&r->iommu, 1, IOVA(page), IOVA(page + 1) - 1,
                      r->ram + to * PAGE, flags), S_OK);
}

/* Unmap IOVA pages [first, first + n), each mapped on its own */
static void iommu_unmap_pages(Rig *r, unsigned first, unsigned n)
{
    if (r->intel) {
        for (unsigned p = first; p < first + n; p++) {
            qtest_writeq(r->qts, vtd_pte(r, p), 0);
            vtd_invalidate(r, p);
        }
        return;
    }
    assert_status(unmap(&r->iommu, 1, IOVA(first), IOVA(first + n) - 1),
                  S_OK);
}

/*
 * Map IOVA pages [first, first + n) to the same RAM pages, one mapping per
 * page so that each can be unmapped on its own (a virtio-iommu UNMAP may
 * not split a mapping).
 */
static void map_pages(Rig *r, unsigned first, unsigned n, uint32_t flags)
{
    for (unsigned p = first; p < first + n; p++) {
        iommu_map_page(r, p, p, flags);
    }
}

/* Give the test device a translated address space: attach it, or turn on */
static void iommu_translate_device(Rig *r)
{
    if (r->intel) {
        vtd_enable(r);
        return;
    }
    assert_status(attach(&r->iommu, 1, DT_EP), S_OK);
}

/* ---- cases without an IOMMU --------------------------------------------- */

static void test_direct(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x300];
    QPCIDevice *edu;
    QPCIBar edu_bar;
    uint32_t id;
    uint16_t cmd;

    rig_start(&r, NULL, true);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_DIRECT);

    /* Copy within RAM, crossing a page, through either path */
    pattern(data, sizeof(data), 1);
    qtest_memwrite(r.qts, r.ram + 0xf00, data, sizeof(data));
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        uint64_t dst = r.ram + 3 * PAGE + 0x80 + path * 0x400;

        g_assert_cmpuint(dt_run(&r, CMD_COPY, path, r.ram + 0xf00, dst,
                                sizeof(data)), ==, 0);
        assert_ram(&r, 3, 0x80 + path * 0x400, sizeof(data), 1);
    }

    /*
     * An MMIO target: edu's ID register (not the device's own: QEMU blocks
     * a device's DMA to itself while it handles an MMIO access)
     */
    edu = qpci_device_find(r.bus, EDU_DEVFN);
    g_assert_nonnull(edu);
    edu_bar = qpci_iomap(edu, 0, NULL);
    qpci_device_enable(edu);
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        g_assert_cmpuint(dt_run(&r, CMD_READ, path, edu_bar.addr, 0, 4), ==,
                         0);
        buffer_get(&r, (uint8_t *)&id, 4);
        g_assert_cmphex(le32_to_cpu(id), ==, EDU_ID_VALUE);
        buffer_set(&r, (const uint8_t *)"\0\0\0\0", 4);
    }
    qpci_iounmap(edu, edu_bar);
    g_free(edu);

    /* Bus mastering off: nothing moves, both paths fail alike */
    cmd = qpci_config_readw(r.dev, PCI_COMMAND);
    qpci_config_writew(r.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_OFF);
    ram_fill(&r, GUARD);
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        g_assert_cmpuint(dt_run(&r, CMD_WRITE, path, 0, r.ram, 64), ==, 1);
        g_assert_cmpuint(rd(&r, REG_RESULT), ==, MEMTX_DECODE_ERROR);
    }
    assert_ram_all(&r, GUARD);

    /* And on again */
    qpci_config_writew(r.dev, PCI_COMMAND, cmd);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_DIRECT);
    pattern(data, 64, 2);
    buffer_set(&r, data, 64);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram, 64), ==, 0);
    assert_ram(&r, 0, 0, 64, 2);
    rig_stop(&r);
}

/*
 * Hot-unplug of a device whose handle is registered (listeners) and holds a
 * persistent map: the handle goes with the device, QEMU goes on, and a new
 * device in the same slot works.  On pc, whose ACPI PCI hotplug libqos
 * drives; no IOMMU.
 */
#define HP_SLOT 6

static void test_unplug(const TestCase *tc)
{
    QTestState *qts = qtest_init("-M pc -nodefaults");
    QGuestAllocator alloc;
    QPCIBus *bus;
    uint8_t data[0x40];

    pc_alloc_init(&alloc, qts, ALLOC_LEAK_ASSERT);
    bus = qpci_new_pc(qts, &alloc);
    for (int round = 0; round < 2; round++) {
        Rig r = { .qts = qts, .bus = bus, .alloc = &alloc };

        qtest_qmp_device_add(qts, "x-dma-test", "dt", "{'addr': '0x06'}");
        r.dev = qpci_device_find(bus, QPCI_DEVFN(HP_SLOT, 0));
        g_assert_nonnull(r.dev);
        r.bar = qpci_iomap(r.dev, 0, NULL);
        qpci_device_enable(r.dev);
        rig_ram(&r);
        g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_DIRECT);
        pattern(data, sizeof(data), 10 + round);
        buffer_set(&r, data, sizeof(data));
        g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram,
                                sizeof(data)), ==, 0);
        assert_ram(&r, 0, 0, sizeof(data), 10 + round);
        g_assert_cmpuint(dt_run(&r, CMD_MAP, PATH_RUST, 0, r.ram + PAGE,
                                PAGE), ==, 0);
        g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_LIVE);

        qpci_iounmap(r.dev, r.bar);
        g_free(r.dev);
        qpci_unplug_acpi_device_test(qts, "dt", HP_SLOT);
        /* QEMU is alive and its memory as the device left it */
        assert_ram(&r, 0, 0, sizeof(data), 10 + round);
        guest_free(&alloc, r.ram);
    }
    qpci_free_pc(bus);
    alloc_destroy(&alloc);
    qtest_quit(qts);
}

/* ---- cases behind each IOMMU -------------------------------------------- */

/* x-dma-test's dma-stats property (qdev id "dma"): member @key */
static int64_t dma_stat(Rig *r, const char *key)
{
    QDict *rsp = qtest_qmp(r->qts, "{'execute':'qom-get','arguments':"
                           "{'path':'/machine/peripheral/dma',"
                           "'property':'dma-stats'}}");
    QDict *stats = qdict_get_qdict(rsp, "return");
    int64_t v;

    g_assert_nonnull(stats);
    if (strcmp(key, "mode") == 0) {
        const char *mode = qdict_get_str(stats, "mode");

        v = strcmp(mode, "direct") == 0 ? MODE_DIRECT :
            strcmp(mode, "iommu") == 0 ? MODE_IOMMU : -1;
    } else {
        v = qdict_get_int(stats, key);
    }
    qobject_unref(rsp);
    return v;
}

static void test_map_copy(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x180];

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 4, RW);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_IOMMU);

    pattern(data, sizeof(data), 3);
    qtest_memwrite(r.qts, r.ram + PAGE - 0x80, data, sizeof(data));
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        /* Source and destination both cross a page boundary */
        uint64_t dst_off = 2 * PAGE - 0x40 + path * 0x1000;

        g_assert_cmpuint(dt_run(&r, CMD_COPY, path, IOVA(0) + PAGE - 0x80,
                                IOVA(0) + dst_off, sizeof(data)), ==, 0);
        assert_ram(&r, 0, dst_off, sizeof(data), 3);
    }
    /* The API asked the IOMMU, and caches: a second copy asks nothing */
    g_assert_cmpuint(rd(&r, REG_MISSES), >, 0);
    {
        uint32_t misses = rd(&r, REG_MISSES);
        int64_t hits = dma_stat(&r, "hits");

        /* dma-stats counts what the registers count, and more */
        g_assert_cmpint(dma_stat(&r, "mode"), ==, MODE_IOMMU);
        g_assert_cmpint(dma_stat(&r, "translations"), ==, misses);
        g_assert_cmpint(dma_stat(&r, "misses"), ==, misses);
        g_assert_cmpint(dma_stat(&r, "unmap-notifications"), ==, 0);
        g_assert_cmpuint(dt_run(&r, CMD_COPY, PATH_RUST,
                                IOVA(0) + PAGE - 0x80,
                                IOVA(0) + 2 * PAGE - 0x40, sizeof(data)),
                         ==, 0);
        g_assert_cmpuint(rd(&r, REG_MISSES), ==, misses);
        /* Two pages read, two written: four hits, no miss */
        g_assert_cmpint(dma_stat(&r, "hits"), ==, hits + 4);
        g_assert_cmpint(dma_stat(&r, "misses"), ==, misses);
        iommu_unmap_pages(&r, 0, 1);
        g_assert_cmpint(dma_stat(&r, "unmap-notifications"), >=, 1);
    }
    rig_stop(&r);
}

/* virtio-iommu-rs's counter @key (qdev id "iommu") */
static int64_t iommu_counter(Rig *r, const char *key)
{
    QDict *rsp = qtest_qmp(r->qts, "{'execute':'qom-get','arguments':"
                           "{'path':'/machine/peripheral/iommu',"
                           "'property':'counters'}}");
    int64_t v = qdict_get_int(qdict_get_qdict(rsp, "return"), key);

    qobject_unref(rsp);
    return v;
}

/* @count COPYs of @len bytes through pci_dma_rw: the IOMMU translates each */
static uint32_t dt_copies(Rig *r, uint64_t src, uint64_t dst, uint32_t len,
                          uint32_t count)
{
    qpci_io_writeq(r->dev, r->bar, REG_SRC, src);
    qpci_io_writeq(r->dev, r->bar, REG_DST, dst);
    wr(r, REG_LEN, len);
    wr(r, REG_COUNT, count);
    wr(r, REG_PATH, PATH_C);
    wr(r, REG_CMD, CMD_COPY);
    return rd(r, REG_FAILED);
}

/*
 * virtio-iommu-rs translates without a lock once the mappings have been
 * read more than they change (a snapshot of its state); the next change
 * withdraws the snapshot before it is answered.  So the DMA right after an
 * UNMAP faults, the DMA right after a MAP goes through, and a snapshot is
 * published again once the mappings are read often enough.
 */
static void test_lock_free_translation(const TestCase *tc)
{
    uint8_t data[8];
    Rig r;

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 2, RW);
    pattern(data, sizeof(data), 6);
    qtest_memwrite(r.qts, r.ram, data, sizeof(data));
    g_assert_cmpint(iommu_counter(&r, "translation-snapshots"), ==, 0);
    /* 200 COPYs, 400 translations: read far more than changed */
    g_assert_cmpuint(dt_copies(&r, IOVA(0), IOVA(1), 8, 200), ==, 0);
    assert_ram(&r, 1, 0, sizeof(data), 6);
    g_assert_cmpint(iommu_counter(&r, "translation-snapshots"), ==, 1);

    /* The UNMAP is answered: the very next DMA to the page faults */
    iommu_unmap_pages(&r, 1, 1);
    qtest_memset(r.qts, r.ram + PAGE, GUARD, PAGE);
    g_assert_cmpuint(dt_copies(&r, IOVA(0), IOVA(1), 8, 1), ==, 1);
    g_assert_cmpuint(qtest_readb(r.qts, r.ram + PAGE), ==, GUARD);

    /* Reads again, many: a new snapshot, which still has no page 1 */
    g_assert_cmpuint(dt_copies(&r, IOVA(0), IOVA(0) + 0x100, 8, 200), ==, 0);
    g_assert_cmpint(iommu_counter(&r, "translation-snapshots"), ==, 2);
    g_assert_cmpuint(dt_copies(&r, IOVA(0), IOVA(1), 8, 1), ==, 1);

    /* A MAP is answered: the very next DMA goes through */
    map_pages(&r, 1, 1, RW);
    g_assert_cmpuint(dt_copies(&r, IOVA(0), IOVA(1), 8, 1), ==, 0);
    assert_ram(&r, 1, 0, sizeof(data), 6);
    rig_stop(&r);
}

/*
 * The DMA API's trace events (and virtio-iommu-rs's own) fire: the handle
 * switches to IOMMU mode, fills its IOTLB on the first DMA and drops the
 * entry when the IOMMU unmaps the page.
 */
static void test_trace_events(const TestCase *tc)
{
    static const char *const expected[] = {
        "rust_dma_mode x-dma-test devfn 0x28: DMA through an IOMMU",
        "rust_dma_iotlb_fill x-dma-test devfn 0x28: IOTLB fill 0x" ,
        "rust_dma_iotlb_invalidate x-dma-test devfn 0x28: IOMMU UNMAP",
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL;
    g_autofree char *args = NULL;
    g_autofree char *text = NULL;
    uint8_t data[0x40];
    Rig r;
    int fd = g_file_open_tmp("virtio-iommu-rs-trace-XXXXXX", &log, &err);

    g_assert_no_error(err);
    close(fd);
    args = g_strdup_printf("-trace enable=rust_dma_* "
                           "-trace enable=virtio_iommu_rs_* -D %s", log);
    rig_start_with(&r, tc->device, false, args);
    iommu_translate_device(&r);
    map_pages(&r, 0, 1, RW);
    pattern(data, sizeof(data), 5);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0) + 0x10,
                            sizeof(data)), ==, 0);
    iommu_unmap_pages(&r, 0, 1);
    /* QEMU has written and closed its log once it has quit */
    rig_stop(&r);

    g_file_get_contents(log, &text, NULL, &err);
    unlink(log);
    g_assert_no_error(err);
    assert_log_in_order(tc->device, text, expected, ARRAY_SIZE(expected));
    /* Only the Rust IOMMU has endpoint events, one per device behind it */
    g_assert_cmpint(strstr(text, "virtio_iommu_rs_endpoint endpoint 0x28: "
                           "address space ") != NULL, ==,
                    strcmp(tc->device, RUST_DEVICE) == 0);
}

/*
 * Map, DMA (the API caches the page), UNMAP, DMA: the second DMA faults and
 * writes nothing, and the API's notifier heard of the UNMAP.
 */
static void test_unmap_no_stale(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x100];

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 2, RW);
    pattern(data, sizeof(data), 4);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(1) + 0x10,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 1, 0x10, sizeof(data), 4);
    g_assert_cmpuint(rd(&r, REG_UNMAPS), ==, 0);

    iommu_unmap_pages(&r, 1, 1);
    g_assert_cmpuint(rd(&r, REG_UNMAPS), >=, 1);
    ram_fill(&r, GUARD);
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        g_assert_cmpuint(dt_run(&r, CMD_WRITE, path, 0, IOVA(1) + 0x10,
                                sizeof(data)), ==, 1);
        g_assert_cmpuint(rd(&r, REG_RESULT), ==, MEMTX_DECODE_ERROR);
    }
    assert_ram_all(&r, GUARD);
    /* Page 0 is still mapped and still works */
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0),
                            sizeof(data)), ==, 0);
    assert_ram(&r, 0, 0, sizeof(data), 4);

    /* Detaching the endpoint unmaps everything too */
    if (!r.intel) {
        assert_status(detach(&r.iommu, 1, DT_EP), S_OK);
        ram_fill(&r, GUARD);
        g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0),
                                sizeof(data)), ==, 1);
        assert_ram_all(&r, GUARD);
    }
    rig_stop(&r);
}

/* A read-only mapping: reads work, writes fault, even once cached */
static void test_read_only(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x40], got[0x40];

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 1, R);
    pattern(data, sizeof(data), 5);
    qtest_memwrite(r.qts, r.ram + 0x100, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_READ, PATH_RUST, IOVA(0) + 0x100, 0,
                            sizeof(data)), ==, 0);
    buffer_get(&r, got, sizeof(got));
    g_assert_cmpmem(got, sizeof(got), data, sizeof(data));

    /* The page is in the API's IOTLB, read-only: a write must not use it */
    for (int path = PATH_RUST; path <= PATH_C; path++) {
        g_assert_cmpuint(dt_run(&r, CMD_WRITE, path, 0, IOVA(0),
                                sizeof(data)), ==, 1);
        g_assert_cmpuint(rd(&r, REG_RESULT), ==, MEMTX_DECODE_ERROR);
    }
    g_assert_cmphex(qtest_readb(r.qts, r.ram), ==, GUARD);
    rig_stop(&r);
}

/* An IOVA remapped elsewhere with new rights goes to the new page at once */
static void test_remap(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x40];

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 1, R);
    g_assert_cmpuint(dt_run(&r, CMD_READ, PATH_RUST, IOVA(0), 0, 8), ==, 0);
    iommu_unmap_pages(&r, 0, 1);
    /* IOVA page 0 now goes to RAM page 5, writable */
    iommu_map_page(&r, 0, 5, RW);
    pattern(data, sizeof(data), 6);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0) + 0x20,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 5, 0x20, sizeof(data), 6);
    g_assert_cmphex(qtest_readb(r.qts, r.ram + 0x20), ==, GUARD);
    rig_stop(&r);
}

/*
 * Bypass switches (the config's bypass bit, a bypass domain) move the
 * device between translation and identity at once, both ways.
 */
static void test_bypass_switch(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x40];

    rig_start(&r, tc->device, false);
    pattern(data, sizeof(data), 7);
    buffer_set(&r, data, sizeof(data));

    /* Not attached, no bypass: the GPA is not reachable */
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_IOMMU);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram,
                            sizeof(data)), ==, 1);

    iommu_write_bypass(r.iommu.dev, 1);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_DIRECT);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 0, 0, sizeof(data), 7);

    iommu_write_bypass(r.iommu.dev, 0);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_IOMMU);
    ram_fill(&r, GUARD);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram,
                            sizeof(data)), ==, 1);
    assert_ram_all(&r, GUARD);

    /* A bypass domain, then a translated one */
    assert_status(attach_flags(&r.iommu, 2, DT_EP,
                               VIRTIO_IOMMU_ATTACH_F_BYPASS), S_OK);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_DIRECT);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram + PAGE,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 1, 0, sizeof(data), 7);
    assert_status(attach(&r.iommu, 1, DT_EP), S_OK);
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_IOMMU);
    ram_fill(&r, GUARD);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, r.ram + PAGE,
                            sizeof(data)), ==, 1);
    assert_ram_all(&r, GUARD);
    rig_stop(&r);
}

/* A persistent map dies with the UNMAP under it, and says so */
static void test_persistent_map(const TestCase *tc)
{
    Rig r;
    uint8_t data[0x80];

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 2, 2, RW);

    /* Mapping an unmapped IOVA fails */
    g_assert_cmpuint(dt_run(&r, CMD_MAP, PATH_RUST, 0, IOVA(0), PAGE), ==, 1);
    g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_NONE);

    g_assert_cmpuint(dt_run(&r, CMD_MAP, PATH_RUST, 0, IOVA(2) + 0x100,
                            PAGE), ==, 0);
    g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_LIVE);
    pattern(data, sizeof(data), 8);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_MAP_WRITE, PATH_RUST, 0, 0,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 2, 0x100, sizeof(data), 8);

    /* An UNMAP elsewhere leaves it alone */
    map_pages(&r, 6, 1, RW);
    iommu_unmap_pages(&r, 6, 1);
    g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_LIVE);
    g_assert_cmpuint(rd(&r, REG_INVALIDATIONS), ==, 0);

    /* The UNMAP of its second page invalidates it */
    iommu_unmap_pages(&r, 3, 1);
    g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_INVALIDATED);
    g_assert_cmpuint(rd(&r, REG_INVALIDATIONS), ==, 1);
    ram_fill(&r, GUARD);
    g_assert_cmpuint(dt_run(&r, CMD_MAP_WRITE, PATH_RUST, 0, 0,
                            sizeof(data)), ==, 1);
    g_assert_cmpuint(dt_run(&r, CMD_MAP_RELEASE, PATH_RUST, 0, 0, 0), ==, 0);
    g_assert_cmpuint(rd(&r, REG_MAP_STATE), ==, MAP_NONE);
    /* Released after the invalidation: the map wrote nothing more */
    assert_ram_all(&r, GUARD);
    rig_stop(&r);
}

/* The IOMMU replays its current mappings to a newly registered notifier */
static void test_replay(const TestCase *tc)
{
    Rig r;

    rig_start(&r, tc->device, false);
    assert_status(attach(&r.iommu, 1, DT_EP), S_OK);
    g_assert_cmpuint(dt_run(&r, CMD_REPLAY, PATH_RUST, 0, 0, 0), ==, 0);
    g_assert_cmpuint(rd(&r, REG_REPLAYED), ==, 0);
    map_pages(&r, 0, 1, RW);
    map_pages(&r, 2, 1, R);
    map_pages(&r, 4, 1, W);
    g_assert_cmpuint(dt_run(&r, CMD_REPLAY, PATH_RUST, 0, 0, 0), ==, 0);
    g_assert_cmpuint(rd(&r, REG_REPLAYED), ==, 3);
    assert_status(unmap(&r.iommu, 1, IOVA(2), IOVA(3) - 1), S_OK);
    g_assert_cmpuint(dt_run(&r, CMD_REPLAY, PATH_RUST, 0, 0, 0), ==, 0);
    g_assert_cmpuint(rd(&r, REG_REPLAYED), ==, 2);
    rig_stop(&r);
}

/*
 * Random DMAs interleaved with MAP and UNMAP: each DMA runs through the
 * API and through pci_dma_rw from the same state, and must give the same
 * bytes (in the device's buffer for reads, in RAM for writes) and the same
 * failures.
 */
#define DIFF_OPS 120

static void diff_read(Rig *r, uint64_t iova, uint32_t len)
{
    g_autofree uint8_t *a = g_malloc(len);
    g_autofree uint8_t *b = g_malloc(len);
    g_autofree uint8_t *junk = g_malloc(len);
    uint32_t fa, fb, ra, rb;

    memset(junk, 0x5a, len);
    buffer_set(r, junk, len);
    fa = dt_run(r, CMD_READ, PATH_RUST, iova, 0, len);
    ra = rd(r, REG_RESULT);
    buffer_get(r, a, len);
    buffer_set(r, junk, len);
    fb = dt_run(r, CMD_READ, PATH_C, iova, 0, len);
    rb = rd(r, REG_RESULT);
    buffer_get(r, b, len);
    g_assert_cmpuint(fa, ==, fb);
    g_assert_cmpuint(ra, ==, rb);
    g_assert_cmpmem(a, len, b, len);
}

static void diff_write(Rig *r, uint64_t iova, uint32_t len, uint8_t seed)
{
    g_autofree uint8_t *before = g_malloc(RAM_SIZE);
    g_autofree uint8_t *a = g_malloc(RAM_SIZE);
    g_autofree uint8_t *b = g_malloc(RAM_SIZE);
    g_autofree uint8_t *data = g_malloc(len);
    uint32_t fa, fb, ra, rb;

    pattern(data, len, seed);
    buffer_set(r, data, len);
    qtest_memread(r->qts, r->ram, before, RAM_SIZE);
    fa = dt_run(r, CMD_WRITE, PATH_RUST, 0, iova, len);
    ra = rd(r, REG_RESULT);
    qtest_memread(r->qts, r->ram, a, RAM_SIZE);
    qtest_memwrite(r->qts, r->ram, before, RAM_SIZE);
    fb = dt_run(r, CMD_WRITE, PATH_C, 0, iova, len);
    rb = rd(r, REG_RESULT);
    qtest_memread(r->qts, r->ram, b, RAM_SIZE);
    g_assert_cmpuint(fa, ==, fb);
    g_assert_cmpuint(ra, ==, rb);
    g_assert_cmpmem(a, RAM_SIZE, b, RAM_SIZE);
}

static void test_differential(const TestCase *tc)
{
    static const uint32_t perms[] = { R, W, RW };
    GRand *rng = g_rand_new_with_seed(tc->seed);
    bool mapped[RAM_PAGES] = { false };
    Rig r;

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    {
        g_autofree uint8_t *fill = g_malloc(RAM_SIZE);

        pattern(fill, RAM_SIZE, 9);
        qtest_memwrite(r.qts, r.ram, fill, RAM_SIZE);
    }
    for (int i = 0; i < DIFF_OPS; i++) {
        unsigned page = g_rand_int_range(rng, 0, RAM_PAGES);
        unsigned op = g_rand_int_range(rng, 0, 10);

        if (op < 2) {
            /* Map an unmapped IOVA page to a random RAM page */
            if (!mapped[page]) {
                unsigned to = g_rand_int_range(rng, 0, RAM_PAGES);

                iommu_map_page(&r, page, to,
                               perms[g_rand_int_range(rng, 0, 3)]);
                mapped[page] = true;
            }
        } else if (op < 3) {
            /* Unmap a run of pages (whole mappings only: one page each) */
            unsigned n = g_rand_int_range(rng, 1, 4);

            n = MIN(n, RAM_PAGES - page);
            iommu_unmap_pages(&r, page, n);
            for (unsigned p = page; p < page + n; p++) {
                mapped[p] = false;
            }
        } else {
            uint64_t iova = IOVA(page) + g_rand_int_range(rng, 0, PAGE);
            uint32_t len = g_rand_int_range(rng, 1, 3 * PAGE);

            /* Stay inside the IOVA window the pages cover, mostly */
            len = MIN(len, IOVA(RAM_PAGES) + PAGE - iova);
            if (op < 7) {
                diff_read(&r, iova, len);
            } else {
                diff_write(&r, iova, len, i);
            }
        }
    }
    g_rand_free(rng);
    rig_stop(&r);
}

/*
 * Issue 14: a MAP with virt_start > virt_end, then an UNMAP covering it, on
 * an endpoint with a registered UNMAP notifier (the DMA API handle of
 * x-dma-test has one).  The C device accepts that MAP and then loops
 * forever walking the UNMAP's notifier blocks, so a guest can hang QEMU
 * (docs/differences.md); ours refuses the MAP (RANGE), the UNMAP removes
 * nothing, and the device goes on answering and translating.
 */
static void test_reversed_map_unmap(const TestCase *tc)
{
    uint8_t data[0x40];
    Rig r;

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    assert_status(map(&r.iommu, 1, IOVA(3), IOVA(1) - 1, r.ram, RW), S_RANGE);
    assert_status(unmap(&r.iommu, 1, IOVA(0), IOVA(4) - 1), S_OK);
    g_assert_cmpuint(rd(&r, REG_UNMAPS), ==, 0);

    map_pages(&r, 0, 1, RW);
    pattern(data, sizeof(data), 9);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0) + 0x20,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 0, 0x20, sizeof(data), 9);
    /* The notifier the C device would loop on is there */
    iommu_unmap_pages(&r, 0, 1);
    g_assert_cmpuint(rd(&r, REG_UNMAPS), >=, 1);
    rig_stop(&r);
}

static void skip_c_reversed_map_unmap(void)
{
    g_test_skip("QEMU's C virtio-iommu-pci accepts the reversed MAP and then "
                "hangs QEMU in the UNMAP (docs/differences.md)");
}

/* ---- migration ---------------------------------------------------------- */

static const char *other_device(const char *device)
{
    return strcmp(device, C_DEVICE) == 0 ? RUST_DEVICE : C_DEVICE;
}

/*
 * A device using the DMA API migrates (docs/migration.md): x-dma-test
 * caches a translation through its handle, the VM moves to a new QEMU
 * with the same IOMMU (seed 0) or the other one (seed 1), and there the
 * new, empty handle translates through the loaded mappings, its notifier
 * (registered on the destination's region) hears an UNMAP, and the next
 * DMA to the unmapped page faults.
 */
static void test_migration(const TestCase *tc)
{
    const char *dst_device = tc->seed ? other_device(tc->device) : tc->device;
    g_autofree char *path = stream_path();
    g_autofree char *cmdline =
        iommu_cmdline(dst_device, ",\"boot-bypass\":false",
                      "-device x-dma-test,addr=05.0 -incoming defer");
    uint8_t data[0x80], got[sizeof(data)];
    QTestState *dst;
    Rig r;

    rig_start(&r, tc->device, false);
    iommu_translate_device(&r);
    map_pages(&r, 0, 2, RW);
    pattern(data, sizeof(data), 11);
    buffer_set(&r, data, sizeof(data));
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(1) + 0x40,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 1, 0x40, sizeof(data), 11);

    save_to(r.qts, path);
    dst = qtest_init(cmdline);
    g_assert_true(load_into(dst, path));
    unlink(path);
    qtest_quit(r.qts);
    r.qts = r.iommu.qts = r.bus->qts = dst;
    r.iommu.device = dst_device;

    /* The registers and the buffer came along, the handle is translating */
    buffer_get(&r, got, sizeof(got));
    g_assert_cmpmem(got, sizeof(got), data, sizeof(data));
    g_assert_cmpuint(rd(&r, REG_MODE), ==, MODE_IOMMU);
    assert_ram(&r, 1, 0x40, sizeof(data), 11);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0) + 0x10,
                            sizeof(data)), ==, 0);
    assert_ram(&r, 0, 0x10, sizeof(data), 11);

    g_assert_cmpuint(rd(&r, REG_UNMAPS), ==, 0);
    iommu_unmap_pages(&r, 0, 1);
    g_assert_cmpuint(rd(&r, REG_UNMAPS), >=, 1);
    ram_fill(&r, GUARD);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(0) + 0x10,
                            sizeof(data)), ==, 1);
    g_assert_cmpuint(rd(&r, REG_RESULT), ==, MEMTX_DECODE_ERROR);
    assert_ram_all(&r, GUARD);
    g_assert_cmpuint(dt_run(&r, CMD_WRITE, PATH_RUST, 0, IOVA(1),
                            sizeof(data)), ==, 0);
    assert_ram(&r, 1, 0, sizeof(data), 11);
    rig_stop(&r);
}

/* ---- registration ------------------------------------------------------- */

/* The cases any IOMMU runs (bypass and replay are virtio-iommu's) */
static const DeviceCase iommu_cases[] = {
    { "map-copy", test_map_copy },
    { "unmap-no-stale", test_unmap_no_stale },
    { "read-only", test_read_only },
    { "remap", test_remap },
    { "persistent-map", test_persistent_map },
    { "trace-events", test_trace_events },
};

static const DeviceCase rust_iommu_cases[] = {
    { "lock-free-translation", test_lock_free_translation },
};

static const DeviceCase virtio_iommu_cases[] = {
    { "bypass-switch", test_bypass_switch },
    { "replay", test_replay },
};

int main(int argc, char **argv)
{
    static const char *const devices[] = {
        C_DEVICE, RUST_DEVICE, INTEL_DEVICE
    };

    g_test_init(&argc, &argv, NULL);
    add_case("/virtio-iommu-rs/dma/no-iommu/direct", NULL, 0,
             CASE_TIMEOUT_US, test_direct);
    if (!on_arm()) {
        /* ACPI PCI hotplug of pc */
        add_case("/virtio-iommu-rs/dma/no-iommu/unplug", NULL, 0,
                 CASE_TIMEOUT_US, test_unplug);
    }
    add_case("/virtio-iommu-rs/dma/" RUST_DEVICE "/reversed-map-unmap",
             RUST_DEVICE, 0, CASE_TIMEOUT_US, test_reversed_map_unmap);
    qtest_add_func("/virtio-iommu-rs/dma/" C_DEVICE "/reversed-map-unmap",
                   skip_c_reversed_map_unmap);
    for (size_t d = 0; d < G_N_ELEMENTS(devices); d++) {
        bool virtio = strcmp(devices[d], INTEL_DEVICE) != 0;

        if (!virtio && on_arm()) {
            continue;
        }
        add_device_cases("/virtio-iommu-rs/dma", devices[d], iommu_cases,
                         G_N_ELEMENTS(iommu_cases), CASE_TIMEOUT_US);
        if (virtio) {
            add_device_cases("/virtio-iommu-rs/dma", devices[d],
                             virtio_iommu_cases,
                             G_N_ELEMENTS(virtio_iommu_cases),
                             CASE_TIMEOUT_US);
        }
        if (strcmp(devices[d], RUST_DEVICE) == 0) {
            add_device_cases("/virtio-iommu-rs/dma", devices[d],
                             rust_iommu_cases, G_N_ELEMENTS(rust_iommu_cases),
                             CASE_TIMEOUT_US);
        }
        for (unsigned seed = 0; virtio && seed < 2; seed++) {
            g_autofree char *path =
                g_strdup_printf("/virtio-iommu-rs/dma/%s/migration/%s",
                                devices[d], seed ? "to-other" : "to-same");

            add_case(path, devices[d], seed, CASE_TIMEOUT_US,
                     test_migration);
        }
        for (unsigned seed = 1; seed <= (virtio ? 4 : 2); seed++) {
            g_autofree char *path =
                g_strdup_printf("/virtio-iommu-rs/dma/%s/differential/%u",
                                devices[d], seed);

            add_case(path, devices[d], seed, CASE_TIMEOUT_US,
                     test_differential);
        }
    }
    return g_test_run();
}
