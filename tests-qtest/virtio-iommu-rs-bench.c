/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The device-level measurements behind `make bench`: raw samples, one
 * "BENCH key=value..." line each, which scripts/bench.py turns into
 * medians, ratios and target lines.  Nothing here is a pass/fail test of
 * speed; the assertions only make sure each sample measured what its line
 * says (the right path, the right machine, every transfer and request
 * succeeded).
 *
 *   /virtio-iommu-rs-bench/dma        x-dma-test COPY through the Rust DMA
 *       API and through pci_dma_rw, with no IOMMU and behind each IOMMU
 *       (endpoint attached, its IOVAs mapped); ns per COPY from the
 *       device's own ELAPSED register, so qtest's socket is not counted.
 *   /virtio-iommu-rs-bench/map-unmap  MAP then UNMAP of distinct 4 KiB
 *       IOVAs in batches of as many requests as the request queue holds,
 *       host wall clock per pair (the qtest driver's cost included, the
 *       same driver for both devices).
 *   /virtio-iommu-rs-bench/strict-cycle  MAP, one COPY into the mapped
 *       buffer, UNMAP: a strict-mode guest's I/O, device time per cycle.
 *   /virtio-iommu-rs-bench/scaling    translation (pci_dma_rw), MAP and
 *       UNMAP with 10^3, 10^5 and 10^6 mappings in the domain.
 *   /virtio-iommu-rs-bench/memory     the QEMU process's anonymous RSS
 *       before and after many MAP requests, per mapping.
 *
 * Sizes come from the environment (scripts/bench.py sets them); without
 * it every case runs at a small scale, a smoke test of a few seconds.
 *   VIOMMU_BENCH_REPS      repetitions of each DMA and MAP+UNMAP sample
 *   VIOMMU_BENCH_COUNT_SCALE  multiplies the DMA COUNT of every size
 *   VIOMMU_BENCH_PAIRS     MAP+UNMAP pairs per repetition
 *   VIOMMU_BENCH_CYCLES    strict-mode cycles per repetition
 *   VIOMMU_BENCH_SCALE_MAX the largest mapping count of the scaling case
 *   VIOMMU_BENCH_MAPPINGS  mappings for the memory figure
 *   VIOMMU_BENCH_MEMORY_REPS  fresh QEMUs per device for the memory figure
 *
 * All QEMUs of a case run at once and the samples are interleaved (each
 * repetition visits every machine, the order of the two DMA paths
 * alternating), so that a change in host load while the case runs falls
 * on every figure alike instead of on whichever machine ran last.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "hw/pci/pci_regs.h"
#include "standard-headers/linux/virtio_ring.h"
#include "virtio-iommu-rs-queue.h"
#include "virtio-iommu-rs-stream.h"

/* ---- the machines ------------------------------------------------------- */

/*
 * The IOMMU at 04.0 and the endpoint at 05.0 on q35's root bus: the
 * endpoint id is its devfn.  The IOMMU comes first on the command line, as
 * a PCI device takes its DMA address space from the bus when realized.
 */
#define EP_DEVFN    QPCI_DEVFN(5, 0)
#define EP          EP_DEVFN

/* docs/dma-test-device.md */
#define DT_VENDOR_ID    0x1b36
#define DT_DEVICE_ID    0x10f0
#define DT_ID           0x00
#define DT_ID_VALUE     0x444d4131
#define DT_SRC          0x08
#define DT_DST          0x10
#define DT_LEN          0x18
#define DT_COUNT        0x1c
#define DT_PATH         0x20
#define DT_CMD          0x24
#define DT_FAILED       0x28
#define DT_RESULT       0x2c
#define DT_ELAPSED      0x30
#define DT_MODE         0x38
#define DT_PATH_RUST    0
#define DT_PATH_C       1
#define DT_CMD_COPY     3
#define DT_MODE_DIRECT  0
#define DT_MODE_IOMMU   1
#define DT_MAX_LEN      0x10000

/*
 * The DMA buffers' IOVAs, behind an IOMMU: not RAM (q35 has 128 MiB by
 * default), so a transfer that escaped translation could not land in the
 * buffers the check compares.
 */
#define IOVA_SRC    0x0c000000ULL
#define IOVA_DST    0x0c100000ULL
/*
 * The MAP+UNMAP and memory figures map from 4 GiB up: clear of the MSI
 * doorbell (a reserved region on both devices) however many mappings.
 * Every other 4 KiB page, so no two mappings touch and no device could
 * store a run of them as one.
 */
#define IOVA_MANY   0x100000000ULL
#define MANY_STRIDE 0x2000ULL
#define PAGE        0x1000ULL

#define REQUIRED_FEATURES                             \
    (BIT_ULL(VIRTIO_F_VERSION_1) |                    \
     BIT_ULL(VIRTIO_IOMMU_F_MAP_UNMAP))

typedef enum Machine { NO_IOMMU, BEHIND_C, BEHIND_RUST, MACHINES } Machine;

static const char *const machine_key[MACHINES] = {
    [NO_IOMMU] = "none", [BEHIND_C] = "c", [BEHIND_RUST] = "rust",
};

static const char *const machine_device[MACHINES] = {
    [NO_IOMMU] = NULL, [BEHIND_C] = C_DEVICE, [BEHIND_RUST] = RUST_DEVICE,
};


/* ---- a batching request-queue driver ------------------------------------ */

/*
 * The requests go through a driver of our own rather than libqos'
 * qvirtqueue_add/kick, which cost a few qtest round trips per descriptor
 * and kick once per request: here a whole batch (as many requests as the
 * queue has descriptor pairs) is one write of the request slots, one of
 * the avail ring, one notify, one poll and one read of the statuses, so
 * that the MAP+UNMAP figure is mostly the device's work and not the
 * socket's.  Both devices get this same driver.
 *
 * Request i of a batch always sits in slot i: descriptor 2i is its
 * readable part, 2i+1 its writable tail.  The descriptor table therefore
 * only changes with the request length, and is written again only then.
 */
#define SLOT_SIZE   48      /* the largest request used (MAP) + padding */
#define SLOT_TAIL   40      /* offset of the tail in a slot */

typedef struct Queue {
    Iommu *m;
    unsigned max;           /* requests per batch */
    uint64_t slots;         /* guest RAM: max slots */
    uint8_t *buf;           /* host copy of the slots */
    uint16_t *ring;         /* the avail ring entries the next batch needs */
    uint16_t *ring_guest;   /* ...and those guest RAM holds */
    uint32_t desc_len;      /* request length in the descriptor table */
    uint16_t avail_idx;
    /* The case's requests so far, to name the request that failed */
    uint64_t sent;
    /*
     * Under qtest, virtio-pci runs the request handler inside the notify
     * write (no ioeventfd), so the notify's round trip is the device's
     * work on the whole batch plus one qtest round trip; the first poll
     * of the used index right after it is one round trip alone.  Their
     * sums give the device's own time, free of the driver's.
     */
    int64_t kick_ns;
    int64_t rtt_ns;
} Queue;

/* The monotonic clock in ns (GLib's is in microseconds) */
static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void queue_init(Queue *q, Iommu *m)
{
    memset(q, 0, sizeof(*q));
    q->m = m;
    q->max = m->reqq->size / 2;
    q->slots = guest_alloc(&m->alloc, q->max * SLOT_SIZE);
    q->buf = g_malloc0(q->max * SLOT_SIZE);
    q->ring = g_new0(uint16_t, m->reqq->size);
    /* libqos left the ring zeroed */
    q->ring_guest = g_new0(uint16_t, m->reqq->size);
    /* Touch the slots now, so that the memory figure's baseline has them */
    qtest_memset(m->qts, q->slots, 0, q->max * SLOT_SIZE);
}

static void queue_fini(Queue *q)
{
    guest_free(&q->m->alloc, q->slots);
    g_free(q->buf);
    g_free(q->ring);
    g_free(q->ring_guest);
}

static void queue_write_descs(Queue *q, uint32_t len)
{
    g_autofree uint8_t *t = g_malloc0(q->max * 2 * 16);

    for (unsigned i = 0; i < q->max; i++) {
        uint8_t *rd = t + 2 * i * 16, *wr = rd + 16;

        stq_le_p(rd, q->slots + i * SLOT_SIZE);
        stl_le_p(rd + 8, len);
        stw_le_p(rd + 12, VRING_DESC_F_NEXT);
        stw_le_p(rd + 14, 2 * i + 1);
        stq_le_p(wr, q->slots + i * SLOT_SIZE + SLOT_TAIL);
        stl_le_p(wr + 8, TAIL_SIZE);
        stw_le_p(wr + 12, VRING_DESC_F_WRITE);
    }
    qtest_memwrite(q->m->qts, q->m->reqq->desc, t, q->max * 2 * 16);
    q->desc_len = len;
}

/* Slot @i of the next batch, to encode a request into */
static uint8_t *queue_slot(Queue *q, unsigned i)
{
    g_assert_cmpuint(i, <, q->max);
    return q->buf + i * SLOT_SIZE;
}

/*
 * Send the @n requests of @len bytes encoded in slots 0..n-1 with one
 * notify and wait for all of them; their statuses are then in
 * queue_status().
 */
static void queue_run(Queue *q, unsigned n, uint32_t len)
{
    QVirtQueue *vq = q->m->reqq;
    QTestState *qts = q->m->qts;
    uint16_t want = q->avail_idx + n;
    int64_t t0, t1, t2;
    uint16_t used;

    g_assert_cmpuint(n, >=, 1);
    g_assert_cmpuint(n, <=, q->max);
    g_assert_cmpuint(len, <=, SLOT_TAIL);
    if (len != q->desc_len) {
        queue_write_descs(q, len);
    }
    for (unsigned i = 0; i < n; i++) {
        /* A status the device never writes: an unanswered request shows */
        memset(q->buf + i * SLOT_SIZE + SLOT_TAIL, 0xff, TAIL_SIZE);
        q->ring[(uint16_t)(q->avail_idx + i) % vq->size] = cpu_to_le16(2 * i);
    }
    qtest_memwrite(qts, q->slots, q->buf, n * SLOT_SIZE);
    /*
     * Full batches reuse the same entries (slot j of the ring always names
     * request j % max), so after the first few this write is skipped.
     */
    if (memcmp(q->ring, q->ring_guest, vq->size * 2) != 0) {
        qtest_memwrite(qts, vq->avail + 4, q->ring, vq->size * 2);
        memcpy(q->ring_guest, q->ring, vq->size * 2);
    }
    /* The index last: the device may look at the ring once it moves */
    qtest_writew(qts, vq->avail + 2, want);
    q->avail_idx = want;
    t0 = now_ns();
    q->m->dev->vdev.bus->virtqueue_kick(&q->m->dev->vdev, vq);
    t1 = now_ns();
    used = qtest_readw(qts, vq->used + offsetof(struct vring_used, idx));
    t2 = now_ns();
    /* The device answered everything inside the notify, as assumed */
    g_assert_cmpuint(used, ==, want);
    q->kick_ns += t1 - t0;
    q->rtt_ns += t2 - t1;
    qtest_memread(qts, q->slots, q->buf, n * SLOT_SIZE);
    q->sent += n;
}

static uint8_t queue_status(Queue *q, unsigned i)
{
    return queue_slot(q, i)[SLOT_TAIL];
}

/* Every request of the last batch succeeded */
static void queue_expect_ok(Queue *q, unsigned n, const char *what)
{
    for (unsigned i = 0; i < n; i++) {
        if (queue_status(q, i) != S_OK) {
            g_error("%s: %s request %" PRIu64 " of the case: %s",
                    q->m->device, what, q->sent - n + i,
                    status_name(queue_status(q, i)));
        }
    }
}

/* ---- a machine: an IOMMU (or none) and an endpoint ---------------------- */

typedef struct Rig {
    Iommu iommu;            /* first: send_raw() finds the Rig from it */
    Machine machine;
    Queue q;
    QTestState *qts;
    QGuestAllocator *alloc;
    QPCIBus *bus;
    QGuestAllocator own_alloc;   /* without an IOMMU */
    QPCIDevice *ep;
    QPCIBar bar;
    uint64_t src, dst;      /* DT_MAX_LEN bytes of guest RAM each */
} Rig;

/* The request helpers of virtio-iommu-rs-queue.h: a batch of one */
static uint8_t send_raw(Iommu *m, const void *req, size_t len)
{
    Rig *r = container_of(m, Rig, iommu);

    memcpy(queue_slot(&r->q, 0), req, len);
    queue_run(&r->q, 1, len);
    return queue_status(&r->q, 0);
}

static void ep_init(Rig *r, uint16_t vendor, uint16_t device)
{
    r->ep = qpci_device_find(r->bus, EP_DEVFN);
    g_assert_nonnull(r->ep);
    g_assert_cmphex(qpci_config_readw(r->ep, PCI_VENDOR_ID), ==, vendor);
    g_assert_cmphex(qpci_config_readw(r->ep, PCI_DEVICE_ID), ==, device);
    r->bar = qpci_iomap(r->ep, 0, NULL);
    /* Memory decoding and bus mastering: the endpoint may now DMA */
    qpci_device_enable(r->ep);
    g_assert_cmphex(qpci_config_readw(r->ep, PCI_COMMAND) & PCI_COMMAND_MASTER,
                    ==, PCI_COMMAND_MASTER);
}

/*
 * Boot q35 with the IOMMU of @machine and @ep_device at 05.0, bring the
 * IOMMU up as a guest driver would and attach the endpoint to domain 1.
 */
static void rig_start(Rig *r, Machine machine, const char *ep_device,
                      uint16_t ep_vendor, uint16_t ep_id)
{
    g_autofree char *ep_arg = g_strdup_printf("-device %s,addr=05.0",
                                              ep_device);
    const char *device = machine_device[machine];

    memset(r, 0, sizeof(*r));
    r->machine = machine;
    if (device) {
        iommu_boot(&r->iommu, device, "", ep_arg,
                   REQUIRED_FEATURES, 8, 8);
        r->qts = r->iommu.qts;
        r->alloc = &r->iommu.alloc;
        r->bus = r->iommu.bus;
        queue_init(&r->q, &r->iommu);
        assert_status(attach(&r->iommu, 1, EP), S_OK);
    } else {
        r->qts = qtest_initf("-M q35 -nodefaults %s", ep_arg);
        pc_alloc_init(&r->own_alloc, r->qts, ALLOC_LEAK_ASSERT);
        r->alloc = &r->own_alloc;
        r->bus = qpci_new_pc(r->qts, r->alloc);
    }
    ep_init(r, ep_vendor, ep_id);
}

static void rig_stop(Rig *r)
{
    qpci_iounmap(r->ep, r->bar);
    g_free(r->ep);
    if (r->src) {
        guest_free(r->alloc, r->src);
        guest_free(r->alloc, r->dst);
    }
    if (machine_device[r->machine]) {
        queue_fini(&r->q);
        iommu_stop(&r->iommu);
    } else {
        qpci_free_pc(r->bus);
        alloc_destroy(&r->own_alloc);
        qtest_quit(r->qts);
    }
}

/* ---- parameters --------------------------------------------------------- */

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *s = g_getenv(name);
    char *end;
    unsigned long v;

    if (!s || !*s) {
        return dflt;
    }
    v = strtoul(s, &end, 10);
    if (*end || v == 0 || v > UINT_MAX) {
        g_error("%s=%s: a positive integer, please", name, s);
    }
    return v;
}

/* ---- /dma --------------------------------------------------------------- */

/*
 * The transfer sizes and how many COPYs one command does at each: enough
 * that a command takes some 10 ms (on the 2-core development machine),
 * far above the clock's resolution and the MMIO exit around it, yet few
 * enough that a run of all of them stays within seconds.
 */
static const struct {
    uint32_t len;
    uint32_t count;
} dma_sizes[] = {
    { 8, 100000 },
    { 64, 100000 },
    { 4096, 20000 },
    { 65536, 2000 },
};

static uint32_t dt_rd(Rig *r, uint64_t off)
{
    return qpci_io_readl(r->ep, r->bar, off);
}

static void dt_wr(Rig *r, uint64_t off, uint32_t v)
{
    qpci_io_writel(r->ep, r->bar, off, v);
}

/* One COPY command: @count times @len bytes from SRC to DST; its ns */
static uint64_t dt_copy(Rig *r, uint32_t path, uint32_t len, uint32_t count)
{
    uint32_t failed;

    dt_wr(r, DT_PATH, path);
    dt_wr(r, DT_LEN, len);
    dt_wr(r, DT_COUNT, count);
    dt_wr(r, DT_CMD, DT_CMD_COPY);
    failed = dt_rd(r, DT_FAILED);
    if (failed) {
        g_error("%s: %u of %u COPYs of %u bytes on path %u failed "
                "(MemTxResult %u)", machine_key[r->machine], failed, count,
                len, path, dt_rd(r, DT_RESULT));
    }
    return qpci_io_readq(r->ep, r->bar, DT_ELAPSED);
}

static void dma_rig_start(Rig *r, Machine machine)
{
    uint32_t expect_mode = machine == NO_IOMMU ? DT_MODE_DIRECT
                                               : DT_MODE_IOMMU;
    g_autofree uint8_t *want = g_malloc(DT_MAX_LEN);
    g_autofree uint8_t *got = g_malloc(DT_MAX_LEN);

    rig_start(r, machine, "x-dma-test", DT_VENDOR_ID, DT_DEVICE_ID);
    g_assert_cmphex(dt_rd(r, DT_ID), ==, DT_ID_VALUE);
    r->src = guest_alloc(r->alloc, DT_MAX_LEN);
    r->dst = guest_alloc(r->alloc, DT_MAX_LEN);
    if (machine == NO_IOMMU) {
        qpci_io_writeq(r->ep, r->bar, DT_SRC, r->src);
        qpci_io_writeq(r->ep, r->bar, DT_DST, r->dst);
    } else {
        /* Read-only and write-only, as a guest driver would map them */
        assert_status(map(&r->iommu, 1, IOVA_SRC, IOVA_SRC + DT_MAX_LEN - 1,
                          r->src, R), S_OK);
        assert_status(map(&r->iommu, 1, IOVA_DST, IOVA_DST + DT_MAX_LEN - 1,
                          r->dst, W), S_OK);
        qpci_io_writeq(r->ep, r->bar, DT_SRC, IOVA_SRC);
        qpci_io_writeq(r->ep, r->bar, DT_DST, IOVA_DST);
    }

    /*
     * Each path once with the largest size, checked byte for byte: the
     * figures are of transfers that land where they should.  This also
     * warms up whatever either path caches.
     */
    for (uint32_t path = DT_PATH_RUST; path <= DT_PATH_C; path++) {
        for (size_t i = 0; i < DT_MAX_LEN; i++) {
            want[i] = (uint8_t)(i * 7 + path * 31 + machine);
        }
        qtest_memwrite(r->qts, r->src, want, DT_MAX_LEN);
        qtest_memset(r->qts, r->dst, 0, DT_MAX_LEN);
        dt_copy(r, path, DT_MAX_LEN, 1);
        qtest_memread(r->qts, r->dst, got, DT_MAX_LEN);
        g_assert_cmpmem(got, DT_MAX_LEN, want, DT_MAX_LEN);
    }
    /*
     * The Rust handle must see what the row says it measures: direct
     * access without an IOMMU, translation behind one.
     */
    g_assert_cmpuint(dt_rd(r, DT_MODE), ==, expect_mode);
}

static void bench_dma(void)
{
    unsigned reps = env_uint("VIOMMU_BENCH_REPS", 3);
    /* Without the environment: a tenth of the counts, a smoke test */
    unsigned scale = env_uint("VIOMMU_BENCH_COUNT_SCALE", 1);
    bool quick = !g_getenv("VIOMMU_BENCH_COUNT_SCALE");
    Rig rigs[MACHINES];

    for (Machine mc = 0; mc < MACHINES; mc++) {
        dma_rig_start(&rigs[mc], mc);
    }
    for (unsigned rep = 0; rep < reps; rep++) {
        for (size_t s = 0; s < ARRAY_SIZE(dma_sizes); s++) {
            uint32_t len = dma_sizes[s].len;
            uint32_t count = quick ? MAX(dma_sizes[s].count / 10, 1)
                                   : dma_sizes[s].count * scale;

            for (Machine mc = 0; mc < MACHINES; mc++) {
                for (unsigned k = 0; k < 2; k++) {
                    /* Which path goes first alternates with each rep */
                    uint32_t path = (rep + k) % 2;
                    uint64_t ns = dt_copy(&rigs[mc], path, len, count);

                    printf("BENCH dma iommu=%s path=%s size=%u rep=%u "
                           "count=%u elapsed_ns=%" PRIu64 "\n",
                           machine_key[mc],
                           path == DT_PATH_RUST ? "rust" : "c",
                           len, rep, count, ns);
                }
                g_assert_cmpuint(dt_rd(&rigs[mc], DT_MODE), ==,
                                 mc == NO_IOMMU ? DT_MODE_DIRECT
                                                : DT_MODE_IOMMU);
            }
        }
        fflush(stdout);
    }
    for (Machine mc = 0; mc < MACHINES; mc++) {
        rig_stop(&rigs[mc]);
    }
}

/* ---- MAP and UNMAP in batches ------------------------------------------- */

/*
 * The endpoint the domain is attached to for the request figures: edu, a
 * device without IOMMU notifiers, so that a MAP or UNMAP costs the IOMMU's
 * own work and no listener's.
 */
#define EDU_VENDOR_ID   0x1234
#define EDU_DEVICE_ID   0x11e8

static void req_rig_start(Rig *r, Machine machine)
{
    rig_start(r, machine, "edu", EDU_VENDOR_ID, EDU_DEVICE_ID);
    /* All mappings point at one page: only the IOVAs need to differ */
    r->src = guest_alloc(r->alloc, PAGE);
    r->dst = guest_alloc(r->alloc, PAGE);
}

/* MAP @n pages from mapping number @first on, in full batches */
static void map_many(Rig *r, uint64_t first, uint64_t n)
{
    Queue *q = &r->q;

    for (uint64_t done = 0; done < n;) {
        unsigned b = MIN(n - done, q->max);

        for (unsigned i = 0; i < b; i++) {
            uint64_t iova = IOVA_MANY + (first + done + i) * MANY_STRIDE;

            enc_map(queue_slot(q, i), 1, iova, iova + PAGE - 1, r->src, RW);
        }
        queue_run(q, b, MAP_LEN);
        queue_expect_ok(q, b, "MAP");
        done += b;
    }
}

/* UNMAP, one request per mapping, what map_many() mapped */
static void unmap_many(Rig *r, uint64_t first, uint64_t n)
{
    Queue *q = &r->q;

    for (uint64_t done = 0; done < n;) {
        unsigned b = MIN(n - done, q->max);

        for (unsigned i = 0; i < b; i++) {
            uint64_t iova = IOVA_MANY + (first + done + i) * MANY_STRIDE;

            enc_unmap(queue_slot(q, i), 1, iova, iova + PAGE - 1);
        }
        queue_run(q, b, UNMAP_LEN);
        queue_expect_ok(q, b, "UNMAP");
        done += b;
    }
}

static void bench_map_unmap(void)
{
    unsigned reps = env_uint("VIOMMU_BENCH_REPS", 3);
    unsigned pairs = env_uint("VIOMMU_BENCH_PAIRS", 2048);
    Rig rigs[MACHINES];

    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        req_rig_start(&rigs[mc], mc);
        /* Warm up: the first MAPs grow the device's structures */
        map_many(&rigs[mc], 0, pairs);
        unmap_many(&rigs[mc], 0, pairs);
    }
    for (unsigned rep = 0; rep < reps; rep++) {
        for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
            Queue *q = &rigs[mc].q;
            int64_t kick0 = q->kick_ns, rtt0 = q->rtt_ns;
            gint64 t0 = g_get_monotonic_time();
            gint64 t1;

            map_many(&rigs[mc], 0, pairs);
            unmap_many(&rigs[mc], 0, pairs);
            t1 = g_get_monotonic_time();
            /*
             * elapsed_ns: wall clock, the driver included; device_ns: the
             * notifies' time less one round trip each (see Queue)
             */
            printf("BENCH mapunmap iommu=%s rep=%u pairs=%u batch=%u "
                   "elapsed_ns=%" PRId64 " device_ns=%" PRId64 "\n",
                   machine_key[mc], rep, pairs, q->max, (t1 - t0) * 1000,
                   (q->kick_ns - kick0) - (q->rtt_ns - rtt0));
        }
        fflush(stdout);
    }
    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        rig_stop(&rigs[mc]);
    }
}

/* ---- the strict-mode I/O cycle ------------------------------------------ */

/*
 * What a Linux guest in strict mode makes of every I/O: MAP the buffer,
 * the device's DMA into it, UNMAP it, and only then is the I/O complete.
 * Here as a guest with a batch of I/Os in flight (as many as the request
 * queue holds): the batch's MAPs in one notify, then one COPY into each
 * buffer, then the batch's UNMAPs in one notify.  Every buffer is mapped,
 * written and unmapped in that order, at its own IOVA (all of them onto
 * the same guest RAM); x-dma-test's source stays mapped, as a driver's
 * long-lived ring would.
 *
 * The time is the device's: the notifies less one round trip each (see
 * Queue), spread over the batch so that the socket's jitter is too, plus
 * each COPY's own ELAPSED.  Each line gives the median ns of one MAP, one
 * COPY and one UNMAP.
 */
static const uint32_t cycle_sizes[] = { 4096, 65536 };
#define CYCLE_STRIDE    0x10000ULL

typedef struct Cycle {
    int64_t map_ns, dma_ns, unmap_ns;
} Cycle;

static int64_t device_ns(Queue *q, int64_t kick0, int64_t rtt0)
{
    return (q->kick_ns - kick0) - (q->rtt_ns - rtt0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static int64_t median_i64(int64_t *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    return v[n / 2];
}

/*
 * @batches batches of cycles of @len bytes through @path: the median ns
 * per MAP and per UNMAP (over batches) and per COPY.  Medians, not means:
 * now and then the host stalls one round trip for hundreds of
 * microseconds, which would outweigh a whole batch of requests.
 */
static Cycle cycle_run(Rig *r, uint32_t path, uint32_t len, unsigned batches)
{
    Queue *q = &r->q;
    g_autofree int64_t *m = g_new(int64_t, batches);
    g_autofree int64_t *u = g_new(int64_t, batches);
    g_autofree int64_t *d = g_new(int64_t, batches * q->max);

    for (unsigned b = 0; b < batches; b++) {
        int64_t k0 = q->kick_ns, t0 = q->rtt_ns;

        for (unsigned i = 0; i < q->max; i++) {
            uint64_t iova = IOVA_DST + i * CYCLE_STRIDE;

            enc_map(queue_slot(q, i), 1, iova, iova + len - 1, r->dst, W);
        }
        queue_run(q, q->max, MAP_LEN);
        queue_expect_ok(q, q->max, "MAP");
        m[b] = device_ns(q, k0, t0) / q->max;
        for (unsigned i = 0; i < q->max; i++) {
            qpci_io_writeq(r->ep, r->bar, DT_DST, IOVA_DST + i * CYCLE_STRIDE);
            d[b * q->max + i] = dt_copy(r, path, len, 1);
        }
        k0 = q->kick_ns;
        t0 = q->rtt_ns;
        for (unsigned i = 0; i < q->max; i++) {
            uint64_t iova = IOVA_DST + i * CYCLE_STRIDE;

            enc_unmap(queue_slot(q, i), 1, iova, iova + len - 1);
        }
        queue_run(q, q->max, UNMAP_LEN);
        queue_expect_ok(q, q->max, "UNMAP");
        u[b] = device_ns(q, k0, t0) / q->max;
    }
    qpci_io_writeq(r->ep, r->bar, DT_DST, IOVA_DST);
    return (Cycle) {
        .map_ns = median_i64(m, batches),
        .dma_ns = median_i64(d, batches * q->max),
        .unmap_ns = median_i64(u, batches),
    };
}

static void bench_strict_cycle(void)
{
    unsigned reps = env_uint("VIOMMU_BENCH_REPS", 3);
    unsigned n = env_uint("VIOMMU_BENCH_CYCLES", 256);
    g_autofree uint8_t *got = g_malloc(DT_MAX_LEN);
    Rig rigs[MACHINES];

    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        dma_rig_start(&rigs[mc], mc);
        /* The destination is mapped by each cycle, not for good */
        assert_status(unmap(&rigs[mc].iommu, 1, IOVA_DST,
                            IOVA_DST + DT_MAX_LEN - 1), S_OK);
    }
    for (unsigned rep = 0; rep < reps; rep++) {
        for (size_t s = 0; s < ARRAY_SIZE(cycle_sizes); s++) {
            for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
                for (unsigned k = 0; k < 2; k++) {
                    uint32_t path = (rep + k) % 2;
                    unsigned batches = DIV_ROUND_UP(n, rigs[mc].q.max);
                    Cycle c = cycle_run(&rigs[mc], path, cycle_sizes[s],
                                        batches);

                    printf("BENCH cycle iommu=%s path=%s size=%u rep=%u "
                           "cycles=%u map_ns=%" PRId64 " dma_ns=%" PRId64
                           " unmap_ns=%" PRId64 "\n", machine_key[mc],
                           path == DT_PATH_RUST ? "rust" : "c",
                           cycle_sizes[s], rep, batches * rigs[mc].q.max,
                           c.map_ns, c.dma_ns, c.unmap_ns);
                }
            }
        }
        fflush(stdout);
    }
    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        Rig *r = &rigs[mc];

        /*
         * The cycles moved real data: the last COPY's bytes are in the
         * destination, and with the mapping gone the device can no longer
         * reach it.
         */
        qtest_memread(r->qts, r->dst, got, cycle_sizes[1]);
        for (size_t i = 0; i < cycle_sizes[1]; i++) {
            g_assert_cmpuint(got[i], ==,
                             (uint8_t)(i * 7 + DT_PATH_C * 31 + mc));
        }
        dt_wr(r, DT_PATH, DT_PATH_C);
        dt_wr(r, DT_LEN, 8);
        dt_wr(r, DT_COUNT, 1);
        dt_wr(r, DT_CMD, DT_CMD_COPY);
        g_assert_cmpuint(dt_rd(r, DT_FAILED), ==, 1);
        rig_stop(r);
    }
}

/* ---- cost against the number of mappings -------------------------------- */

/*
 * Translation, MAP and UNMAP with 10^3, 10^5 and 10^6 other mappings in
 * the endpoint's domain (one QEMU per device, grown from one count to the
 * next).  Translation: 8-byte COPYs through pci_dma_rw, which asks the
 * IOMMU on every access (the Rust API would cache it).  MAP and UNMAP:
 * batches of distinct pages above the others, device time per request.
 */
static const unsigned scale_counts[] = { 1000, 100000, 1000000 };

static void bench_scaling(void)
{
    unsigned reps = env_uint("VIOMMU_BENCH_REPS", 3);
    unsigned max = env_uint("VIOMMU_BENCH_SCALE_MAX", 20000);
    unsigned pairs = env_uint("VIOMMU_BENCH_PAIRS", 2048);
    bool quick = !g_getenv("VIOMMU_BENCH_COUNT_SCALE");
    uint32_t copies = quick ? 2000 : 200000;
    unsigned have[MACHINES] = { 0 };
    Rig rigs[MACHINES];

    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        dma_rig_start(&rigs[mc], mc);
        /* Warm up the request path, as for the MAP+UNMAP figure */
        map_many(&rigs[mc], max, pairs);
        unmap_many(&rigs[mc], max, pairs);
    }
    for (size_t s = 0; s < ARRAY_SIZE(scale_counts); s++) {
        unsigned n = MIN(scale_counts[s], max);

        for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
            map_many(&rigs[mc], have[mc], n - have[mc]);
            have[mc] = n;
        }
        for (unsigned rep = 0; rep < reps; rep++) {
            for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
                Rig *r = &rigs[mc];
                Queue *q = &r->q;
                int64_t k0 = q->kick_ns, t0 = q->rtt_ns, map_ns;
                uint64_t dma_ns = dt_copy(r, DT_PATH_C, 8, copies);

                map_many(r, max, pairs);
                map_ns = (q->kick_ns - k0) - (q->rtt_ns - t0);
                k0 = q->kick_ns;
                t0 = q->rtt_ns;
                unmap_many(r, max, pairs);
                printf("BENCH scale iommu=%s mappings=%u rep=%u copies=%u "
                       "copy_ns=%" PRIu64 " requests=%u map_ns=%" PRId64
                       " unmap_ns=%" PRId64 "\n", machine_key[mc], n, rep,
                       copies, dma_ns, pairs, map_ns,
                       (q->kick_ns - k0) - (q->rtt_ns - t0));
            }
            fflush(stdout);
        }
        if (n == max) {
            break;
        }
    }
    for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
        rig_stop(&rigs[mc]);
    }
}

/* ---- memory per mapping ------------------------------------------------- */

/*
 * A field of /proc/PID/status in KiB.  RssAnon, the anonymous pages the
 * process has resident: where the heap (and so a device's mapping table)
 * lives.  Guest RAM is anonymous too, but the pages the driver touches are
 * touched before the baseline and not again.
 */
static uint64_t proc_status_kib(pid_t pid, const char *field)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    size_t flen = strlen(field);

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        if (strncmp(*l, field, flen) == 0 && (*l)[flen] == ':') {
            return g_ascii_strtoull(*l + flen + 1, NULL, 10);
        }
    }
    g_error("no %s in %s", field, path);
}

/*
 * A fresh QEMU with @machine's IOMMU goes from no mappings to @n: one
 * sample of the memory figure.
 */
static void memory_once(Machine mc, unsigned rep, unsigned n)
{
    uint64_t mid = IOVA_MANY + (n / 2) * MANY_STRIDE;
    g_autofree char *exe_link = NULL;
    g_autofree char *exe = NULL;
    uint64_t anon0, anon1, rss0, rss1;
    gint64 t0, t1;
    pid_t pid;
    Rig r;

    req_rig_start(&r, mc);
    pid = qtest_pid(r.qts);
    /* The pid must be QEMU's own, not a shell's that started it */
    exe_link = g_strdup_printf("/proc/%d/exe", (int)pid);
    exe = g_file_read_link(exe_link, NULL);
    g_assert_nonnull(exe);
    g_assert_true(g_str_has_suffix(exe, "qemu-system-x86_64"));
    /*
     * A few batches first, so that the baseline includes what any first
     * request allocates (the queue's buffers, a domain's empty table) and
     * only the per-mapping growth remains.
     */
    map_many(&r, 0, 4 * r.q.max);
    unmap_many(&r, 0, 4 * r.q.max);
    anon0 = proc_status_kib(pid, "RssAnon");
    rss0 = proc_status_kib(pid, "VmRSS");
    t0 = g_get_monotonic_time();
    map_many(&r, 0, n);
    t1 = g_get_monotonic_time();
    anon1 = proc_status_kib(pid, "RssAnon");
    rss1 = proc_status_kib(pid, "VmRSS");
    printf("BENCH memory iommu=%s rep=%u mappings=%u rss_anon_before_kib=%"
           PRIu64 " rss_anon_after_kib=%" PRIu64 " vmrss_before_kib=%" PRIu64
           " vmrss_after_kib=%" PRIu64 " map_ns=%" PRId64 "\n",
           machine_key[mc], rep, n, anon0, anon1, rss0, rss1,
           (t1 - t0) * 1000);
    fflush(stdout);
    /*
     * One mapping from the middle is really there: a second MAP of it
     * must now be refused (both devices reject overlaps).
     */
    g_assert_cmpuint(map(&r.iommu, 1, mid, mid + PAGE - 1, r.src, RW), !=,
                     S_OK);
    rig_stop(&r);
}

static void bench_memory(void)
{
    unsigned n = env_uint("VIOMMU_BENCH_MAPPINGS", 20000);
    unsigned reps = env_uint("VIOMMU_BENCH_MEMORY_REPS", 1);

    /* One QEMU at a time: each one's RSS is its own anyway */
    for (unsigned rep = 0; rep < reps; rep++) {
        for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
            memory_once(mc, rep, n);
        }
    }
}

/* ---- migration at many mappings ----------------------------------------- */

/* Have @qts log trace event @event (QEMU's log backend) to the file @log */
static void trace_to(QTestState *qts, const char *event, const char *log)
{
    g_free(qtest_hmp(qts, "logfile %s", log));
    qtest_qmp_assert_success(qts, "{'execute':'trace-event-set-state',"
                             "'arguments':{'name':%s,'enable':true}}", event);
}

/*
 * The time in microseconds that QEMU's vmstate_downtime_save or _load
 * trace event in @log gives the virtio-iommu section: the time it spent
 * saving or loading it while the VM is stopped.
 */
static int64_t section_downtime(const char *log)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        const char *d = strstr(*l, " downtime=");

        if (strstr(*l, "idstr=0000:00:04.0/virtio-iommu ") && d) {
            return g_ascii_strtoll(d + strlen(" downtime="), NULL, 10);
        }
    }
    g_error("no downtime of the virtio-iommu section in %s", log);
}

/*
 * @n mappings on @machine's IOMMU, saved to a file and loaded by a new
 * QEMU with the same IOMMU: the section's size, and its save and load
 * times from QEMU's own downtime trace events.
 */
static void migration_once(Machine mc, unsigned rep, unsigned n)
{
    const char *device = machine_device[mc];
    g_autofree char *path = stream_path();
    g_autofree char *save_log = stream_path();
    g_autofree char *load_log = stream_path();
    g_autofree char *cmdline =
        iommu_cmdline(device, "",
                      "-device edu,addr=05.0 -incoming defer");
    g_autofree uint8_t *buf = NULL;
    size_t len, start, size;
    QTestState *dst;
    Rig r;

    req_rig_start(&r, mc);
    map_many(&r, 0, n);
    trace_to(r.qts, "vmstate_downtime_save", save_log);
    save_to(r.qts, path);
    g_assert_true(g_file_get_contents(path, (char **)&buf, &len, NULL));
    find_section(buf, len, &start, &size);

    dst = qtest_init(cmdline);
    trace_to(dst, "vmstate_downtime_load", load_log);
    g_assert_true(load_into(dst, path));
    printf("BENCH migration iommu=%s rep=%u mappings=%u section_bytes=%zu "
           "save_us=%" PRId64 " load_us=%" PRId64 "\n", machine_key[mc], rep,
           n, size, section_downtime(save_log), section_downtime(load_log));
    fflush(stdout);
    qtest_quit(dst);
    unlink(path);
    unlink(save_log);
    unlink(load_log);
    rig_stop(&r);
}

static void bench_migration(void)
{
    unsigned n = env_uint("VIOMMU_BENCH_MIGRATION_MAPPINGS", 100000);
    unsigned reps = env_uint("VIOMMU_BENCH_MIGRATION_REPS", 3);

    for (unsigned rep = 0; rep < reps; rep++) {
        for (Machine mc = BEHIND_C; mc < MACHINES; mc++) {
            migration_once(mc, rep, n);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/virtio-iommu-rs-bench/dma", bench_dma);
    qtest_add_func("/virtio-iommu-rs-bench/map-unmap", bench_map_unmap);
    qtest_add_func("/virtio-iommu-rs-bench/strict-cycle", bench_strict_cycle);
    qtest_add_func("/virtio-iommu-rs-bench/scaling", bench_scaling);
    qtest_add_func("/virtio-iommu-rs-bench/memory", bench_memory);
    qtest_add_func("/virtio-iommu-rs-bench/migration", bench_migration);
    return g_test_run();
}
