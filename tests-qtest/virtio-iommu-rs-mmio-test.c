/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * virtio-mmio endpoints on arm virt (patches/qemu/0007-0009): a
 * virtio-rng device on a modern virtio-mmio transport, plugged with
 * iommu_platform=on, writes random bytes into the buffers a small driver
 * here gives it.  Behind virtio-iommu-rs its DMA (rings and buffers) is
 * translated at the transport's endpoint id, faults and bypass work as for
 * PCI endpoints; virtio-iommu-pci manages PCI devices only, so there the
 * same device's DMA goes straight to memory and its endpoint id is unknown.
 * Bad coherency and endpoint configurations are refused at start.
 */

#include "qemu/osdep.h"
#include "standard-headers/linux/virtio_mmio.h"
#include "standard-headers/linux/virtio_ring.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnull.h"
#include "virtio-iommu-rs-queue.h"
#include "virtio-iommu-rs-edu.h"
#include "virtio-iommu-rs-stream.h"

#define REQUIRED_FEATURES 0

/* arm virt's virtio-mmio transports (hw/arm/virt.c), lowest address first */
#define VIRT_MMIO_BASE       0x0a000000ULL
#define VIRT_MMIO_SIZE       0x200
#define VIRT_MMIO_TRANSPORTS 32
/* The endpoint id virt gives transport i (patch 0008) */
#define MMIO_ENDPOINT(i)     (0x10000 + (i))

#define VIRTIO_MMIO_MAGIC    0x74726976     /* "virt" */

/*
 * The rng's rings and buffer: one page of rings (descriptors, then the
 * driver area at +0x100, the device area at +0x200) and one page of buffer.
 * Through the IOMMU they sit at MMIO_IOVA, which is not RAM on virt (RAM
 * starts at 1 GiB), so an access that escaped translation lands nowhere
 * the checks look.
 */
#define QSIZE        8
#define RINGS_SIZE   0x1000
#define AVAIL_OFF    0x100
#define USED_OFF     0x200
#define BUF_OFF      0x1000
#define BUF_LEN      64
#define MMIO_IOVA    0x100000000ULL

/* How long the rng may take to fill a buffer (a bottom half) */
#define RNG_TIMEOUT_US (2 * G_USEC_PER_SEC)

static uint8_t send_raw(Iommu *m, const void *req, size_t len)
{
    return send_polled(m, req, len, REQ_MAX);
}

/* The IOMMU (a Rig without edu) and the rng on its transport */
typedef struct MmioRig {
    Rig r;
    uint64_t base;      /* the rng's transport */
    uint32_t ep;        /* its endpoint id */
    uint64_t gpa;       /* RINGS_SIZE + a page of guest RAM, page-aligned */
} MmioRig;

/*
 * Boot virt with @device (boot-bypass @boot_bypass, more -device JSON
 * members @props) and a virtio-rng on a modern virtio-mmio transport with
 * the qdev id rng0, created after the IOMMU.
 */
#define RNG_ARGS "-global virtio-mmio.force-legacy=false " \
    "-device '{\"driver\":\"virtio-rng-device\",\"id\":\"rng0\"," \
    "\"iommu_platform\":true}'"

static void mrig_start(MmioRig *t, const char *device, bool boot_bypass,
                       const char *props)
{
    g_autofree char *all = g_strdup_printf(",\"boot-bypass\":%s%s",
                                           boot_bypass ? "true" : "false",
                                           props);
    const char *args = RNG_ARGS;
    QTestState *qts;

    memset(t, 0, sizeof(*t));
    iommu_boot(&t->r.iommu, device, all, args, REQUIRED_FEATURES, REQ_MAX,
               TAIL_SIZE);
    qts = t->r.iommu.qts;
    t->r.evt_area = guest_alloc(&t->r.iommu.alloc, EVT_BUFS * EVT_BUF_SIZE);
    t->r.ram = guest_alloc(&t->r.iommu.alloc, RAM_SIZE);
    g_assert_cmphex(t->r.ram & 0xfff, ==, 0);
    t->gpa = t->r.ram;
    /* Rings start zeroed (indices 0); the rest shows what DMA wrote */
    qtest_memset(qts, t->gpa, 0, RINGS_SIZE);
    qtest_memset(qts, t->gpa + RINGS_SIZE, GUARD_FILL, RAM_SIZE - RINGS_SIZE);
    evt_post(&t->r, EVT_BUFS);

    for (int i = 0; i < VIRT_MMIO_TRANSPORTS; i++) {
        uint64_t base = VIRT_MMIO_BASE + i * VIRT_MMIO_SIZE;

        if (qtest_readl(qts, base + VIRTIO_MMIO_MAGIC_VALUE) ==
            VIRTIO_MMIO_MAGIC &&
            qtest_readl(qts, base + VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_RNG) {
            t->base = base;
            t->ep = MMIO_ENDPOINT(i);
        }
    }
    g_assert_cmphex(t->base, !=, 0);
    g_assert_cmpuint(qtest_readl(qts, t->base + VIRTIO_MMIO_VERSION), ==, 2);
    /* What evt_next() compares a fault's endpoint with */
    t->r.edu_ep = t->ep;
}

static void mrig_stop(MmioRig *t)
{
    guest_free(&t->r.iommu.alloc, t->r.evt_area);
    guest_free(&t->r.iommu.alloc, t->r.ram);
    iommu_stop(&t->r.iommu);
}

static uint32_t mreg(MmioRig *t, unsigned off)
{
    return qtest_readl(t->r.iommu.qts, t->base + off);
}

static void mreg_set(MmioRig *t, unsigned off, uint32_t v)
{
    qtest_writel(t->r.iommu.qts, t->base + off, v);
}

static void mreg_set64(MmioRig *t, unsigned low, uint64_t v)
{
    mreg_set(t, low, (uint32_t)v);
    mreg_set(t, low + 4, v >> 32);
}

/*
 * Bring the rng up as a virtio 1.x driver would, with VERSION_1 and
 * ACCESS_PLATFORM, its rings at @rings (an IOVA or a GPA: whatever the
 * device's DMA goes through).
 */
static void rng_driver_init(MmioRig *t, uint64_t rings)
{
    uint32_t hi;

    mreg_set(t, VIRTIO_MMIO_STATUS, 0);
    mreg_set(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE |
             VIRTIO_CONFIG_S_DRIVER);
    mreg_set(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    hi = mreg(t, VIRTIO_MMIO_DEVICE_FEATURES);
    /* iommu_platform=on: the device offers ACCESS_PLATFORM and needs it */
    g_assert_cmphex(hi & 3, ==, 3);
    mreg_set(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mreg_set(t, VIRTIO_MMIO_DRIVER_FEATURES, 3);
    mreg_set(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    mreg_set(t, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    mreg_set(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE |
             VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    g_assert_cmphex(mreg(t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK,
                    ==, VIRTIO_CONFIG_S_FEATURES_OK);

    mreg_set(t, VIRTIO_MMIO_QUEUE_SEL, 0);
    g_assert_cmpuint(mreg(t, VIRTIO_MMIO_QUEUE_NUM_MAX), >=, QSIZE);
    mreg_set(t, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    mreg_set64(t, VIRTIO_MMIO_QUEUE_DESC_LOW, rings);
    mreg_set64(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, rings + AVAIL_OFF);
    mreg_set64(t, VIRTIO_MMIO_QUEUE_USED_LOW, rings + USED_OFF);
    mreg_set(t, VIRTIO_MMIO_QUEUE_READY, 1);
    mreg_set(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE |
             VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
             VIRTIO_CONFIG_S_DRIVER_OK);
}

/*
 * Hand the rng one device-writable buffer of BUF_LEN at @buf (its DMA
 * address), through the rings in guest RAM at t->gpa, and kick it: the
 * @n-th request (from 1), always in descriptor 0.
 */
static void rng_request_n(MmioRig *t, uint64_t buf, uint16_t n)
{
    QTestState *qts = t->r.iommu.qts;
    uint8_t desc[16];

    stq_le_p(desc, buf);
    stl_le_p(desc + 8, BUF_LEN);
    stw_le_p(desc + 12, VRING_DESC_F_WRITE);
    stw_le_p(desc + 14, 0);
    qtest_memwrite(qts, t->gpa, desc, sizeof(desc));
    /* ring[n - 1] = descriptor 0, then the index */
    qtest_writew(qts, t->gpa + AVAIL_OFF + 4 + 2 * ((n - 1) % QSIZE), 0);
    qtest_writew(qts, t->gpa + AVAIL_OFF + 2, n);
    mreg_set(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static void rng_request(MmioRig *t, uint64_t buf)
{
    rng_request_n(t, buf, 1);
}

/* Wait for the rng's @n-th answer in the used ring; false if none came */
static bool rng_wait_used_n(MmioRig *t, uint16_t n)
{
    QTestState *qts = t->r.iommu.qts;
    gint64 deadline = g_get_monotonic_time() + RNG_TIMEOUT_US;
    uint64_t elem = t->gpa + USED_OFF + 4 + 8 * ((n - 1) % QSIZE);

    while (qtest_readw(qts, t->gpa + USED_OFF + 2) != n) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        qtest_clock_step(qts, 1000 * 1000);
    }
    g_assert_cmpuint(qtest_readl(qts, elem), ==, 0);
    g_assert_cmpuint(qtest_readl(qts, elem + 4), ==, BUF_LEN);
    return true;
}

static bool rng_wait_used(MmioRig *t)
{
    return rng_wait_used_n(t, 1);
}

/* The rng wrote its buffer at @gpa: not all of it is still the guard fill */
static void expect_random_at(MmioRig *t, uint64_t gpa)
{
    uint8_t buf[BUF_LEN];
    size_t same = 0;

    qtest_memread(t->r.iommu.qts, gpa, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++) {
        same += buf[i] == GUARD_FILL;
    }
    g_assert_cmpuint(same, <, sizeof(buf));
}

/*
 * PROBE the transport's endpoint with an answer buffer of the config's
 * probe_size: the status, and the type of the first property in @type.
 */
static uint8_t probe_mmio(MmioRig *t, uint16_t *type)
{
    Iommu *m = &t->r.iommu;
    uint32_t size = qvirtio_config_readl(&m->dev->vdev,
                        offsetof(struct virtio_iommu_config, probe_size));
    uint64_t in = guest_alloc(&m->alloc, size + TAIL_SIZE);
    gint64 deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
    uint8_t req[PROBE_LEN];
    uint32_t head, id, used_len;
    uint8_t status;

    m->reqq->free_head = 0;
    m->reqq->num_free = m->reqq->size;
    qtest_memwrite(m->qts, m->out_area, req, enc_probe(req, t->ep));
    head = qvirtqueue_add(m->qts, m->reqq, m->out_area, PROBE_LEN, false, true);
    qvirtqueue_add(m->qts, m->reqq, in, size + TAIL_SIZE, true, false);
    qvirtqueue_kick(m->qts, &m->dev->vdev, m->reqq, head);
    while (!qvirtqueue_get_buf(m->qts, m->reqq, &id, &used_len)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
    }
    g_assert_cmpuint(used_len, ==, size + TAIL_SIZE);
    *type = qtest_readw(m->qts, in);
    status = qtest_readb(m->qts, in + size);
    guest_free(&m->alloc, in);
    return status;
}

/*
 * The `endpoints` property's entry for the rng's endpoint (the IOMMU has
 * the qdev id "iommu"), checked field by field.
 */
static void expect_endpoint_entry(MmioRig *t, int64_t domain,
                                  bool bypass_devices, const char *space,
                                  const char *dma)
{
    QDict *rsp = qtest_qmp(t->r.iommu.qts, "{'execute':'qom-get','arguments':"
                           "{'path':'/machine/peripheral/iommu',"
                           "'property':'endpoints'}}");
    QList *list = qdict_get_qlist(rsp, "return");
    g_autofree char *address = g_strdup_printf("0x%" PRIx64, t->base);
    QListEntry *e;
    bool found = false;

    g_assert_nonnull(list);
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *ep = qobject_to(QDict, qlist_entry_obj(e));

        if (qdict_get_int(ep, "id") != t->ep) {
            continue;
        }
        found = true;
        g_assert_cmpstr(qdict_get_str(ep, "bus"), ==, "virtio-mmio");
        g_assert_cmpstr(qdict_get_str(ep, "address"), ==, address);
        g_assert_cmpstr(qdict_get_str(ep, "device"), ==, "rng0");
        if (domain < 0) {
            g_assert_true(qobject_type(qdict_get(ep, "domain")) == QTYPE_QNULL);
        } else {
            g_assert_cmpint(qdict_get_int(ep, "domain"), ==, domain);
        }
        g_assert_cmpint(qdict_get_bool(ep, "bypass-devices"), ==,
                        bypass_devices);
        g_assert_cmpstr(qdict_get_str(ep, "address-space"), ==, space);
        g_assert_cmpstr(qdict_get_str(ep, "dma"), ==, dma);
    }
    g_assert_true(found);
    qobject_unref(rsp);
}

/* ---- cases: virtio-iommu-rs ----------------------------------------------- */

/*
 * The transport's endpoint, attached and mapped: PROBE answers for it, the
 * rng's ring and buffer accesses are translated, and nothing faults.
 */
static void test_translated(const TestCase *tc)
{
    MmioRig t;
    Iommu *m;
    uint16_t type;

    mrig_start(&t, tc->device, false, ",\"id\":\"iommu\"");
    m = &t.r.iommu;
    /* Not attached, boot-bypass off: through the IOMMU (it faults) */
    expect_endpoint_entry(&t, -1, false, "iommu", "coherent");

    /* QEMU plugs the first virtio-mmio device into the last transport */
    g_assert_cmpuint(t.ep, ==, MMIO_ENDPOINT(31));
    /* The endpoint's reserved regions: virt's MSI doorbell */
    assert_status(probe_mmio(&t, &type), S_OK);
    g_assert_cmpuint(type, ==, VIRTIO_IOMMU_PROBE_T_RESV_MEM);
    assert_status(attach(m, 1, t.ep), S_OK);
    assert_status(map(m, 1, MMIO_IOVA, MMIO_IOVA + RAM_SIZE - 1, t.gpa, RW),
                  S_OK);
    expect_endpoint_entry(&t, 1, false, "iommu", "coherent");
    rng_driver_init(&t, MMIO_IOVA);
    rng_request(&t, MMIO_IOVA + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    expect_random_at(&t, t.gpa + BUF_OFF);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/* The endpoints property shows a non-coherent description */
static void test_noncoherent_endpoint(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, true,
               ",\"id\":\"iommu\",\"noncoherent-devices\":[\"rng0\"]");
    /* boot-bypass on: unattached endpoints bypass */
    expect_endpoint_entry(&t, -1, false, "bypass", "non-coherent");
    mrig_stop(&t);
}

/*
 * Rings mapped, buffer not: the rng's write to the buffer faults at its
 * IOVA (no mapping: reason MAPPING, only the address flag, as the C device
 * reports it), reported for the transport's endpoint.  The virtio core then
 * maps the buffer to a bounce buffer whose write-back goes nowhere: the rng
 * answers, and no guest memory changed.
 */
static void test_fault(const TestCase *tc)
{
    MmioRig t;
    Iommu *m;
    uint8_t buf[BUF_LEN];

    mrig_start(&t, tc->device, false, "");
    m = &t.r.iommu;
    assert_status(attach(m, 1, t.ep), S_OK);
    assert_status(map(m, 1, MMIO_IOVA, MMIO_IOVA + RINGS_SIZE - 1, t.gpa, RW),
                  S_OK);
    rng_driver_init(&t, MMIO_IOVA);
    rng_request(&t, MMIO_IOVA + BUF_OFF);
    expect_fault(&t.r, VIRTIO_IOMMU_FAULT_R_MAPPING, F_ADDRESS,
                 MMIO_IOVA + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    qtest_memread(m->qts, t.gpa + BUF_OFF, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmphex(buf[i], ==, GUARD_FILL);
    }
    g_assert_cmphex(mreg(&t, VIRTIO_MMIO_STATUS) &
                    VIRTIO_CONFIG_S_NEEDS_RESET, ==, 0);
    mrig_stop(&t);
}

/*
 * boot-bypass on, endpoint never attached: its DMA goes to the guest
 * addresses untranslated.
 */
static void test_bypass(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, true, "");
    rng_driver_init(&t, t.gpa);
    rng_request(&t, t.gpa + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    expect_random_at(&t, t.gpa + BUF_OFF);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/*
 * boot-bypass off, the endpoint attached to a bypass domain: its DMA goes
 * to the guest addresses untranslated, and the endpoints property says so.
 */
static void test_bypass_domain(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, false, ",\"id\":\"iommu\"");
    assert_status(attach_flags(&t.r.iommu, 2, t.ep,
                               VIRTIO_IOMMU_ATTACH_F_BYPASS), S_OK);
    expect_endpoint_entry(&t, 2, false, "bypass", "coherent");
    rng_driver_init(&t, t.gpa);
    rng_request(&t, t.gpa + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    expect_random_at(&t, t.gpa + BUF_OFF);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/*
 * bypass-devices names the rng (boot-bypass off): its DMA is never
 * translated, and requests naming its endpoint answer NOENT, as for a
 * device the IOMMU does not manage.
 */
static void test_bypass_devices(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, false,
               ",\"id\":\"iommu\",\"bypass-devices\":[\"rng0\"]");
    assert_status(attach(&t.r.iommu, 1, t.ep), S_NOENT);
    expect_endpoint_entry(&t, -1, true, "bypass", "coherent");
    rng_driver_init(&t, t.gpa);
    rng_request(&t, t.gpa + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    expect_random_at(&t, t.gpa + BUF_OFF);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/*
 * Save the rig (the rng attached and mapped, one request answered) and
 * load it into a new QEMU with @dst: whether the load completed.  On
 * success the rig goes on in the new QEMU; else both QEMUs are left as
 * they were (the destination answering, the source running again).
 */
static bool mrig_migrate(MmioRig *t, const char *dst)
{
    g_autofree char *path = stream_path();
    g_autofree char *props = g_strdup_printf(",\"boot-bypass\":false");
    g_autofree char *cmdline = iommu_cmdline(dst, props,
                                             RNG_ARGS " -incoming defer");
    QTestState *qts;
    bool loaded;

    save_to(t->r.iommu.qts, path);
    qts = qtest_init(cmdline);
    loaded = load_into(qts, path);
    unlink(path);
    if (!loaded) {
        /* Refused cleanly: the destination is alive and says why */
        g_autofree char *status = wait_migration(qts);

        g_assert_cmpstr(status, ==, "failed");
        qtest_quit(qts);
        /* The source stopped when its state was saved: it goes on */
        qtest_qmp_assert_success(t->r.iommu.qts, "{'execute':'cont'}");
        return false;
    }
    qtest_quit(t->r.iommu.qts);
    t->r.iommu.qts = qts;
    t->r.iommu.bus->qts = qts;
    t->r.iommu.device = dst;
    return true;
}

/* Attach and map the rng as test_translated does, and run one request */
static void set_up_translated(MmioRig *t)
{
    Iommu *m = &t->r.iommu;

    assert_status(attach(m, 1, t->ep), S_OK);
    assert_status(map(m, 1, MMIO_IOVA, MMIO_IOVA + RAM_SIZE - 1, t->gpa, RW),
                  S_OK);
    rng_driver_init(t, MMIO_IOVA);
    rng_request(t, MMIO_IOVA + BUF_OFF);
    g_assert_true(rng_wait_used(t));
}

/*
 * virtio-iommu-rs to virtio-iommu-rs: the endpoint's attachment (in the
 * subsection the C layout has no room for) and mappings come along; the
 * rng's next request on the destination is translated the same way.
 */
static void test_migrate_rust_to_rust(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, false, "");
    set_up_translated(&t);
    qtest_memset(t.r.iommu.qts, t.gpa + BUF_OFF, GUARD_FILL, BUF_LEN);
    g_assert_true(mrig_migrate(&t, RUST_DEVICE));
    rng_request_n(&t, MMIO_IOVA + BUF_OFF, 2);
    g_assert_true(rng_wait_used_n(&t, 2));
    expect_random_at(&t, t.gpa + BUF_OFF);
    /* Attached there: the same ATTACH is a no-op, a MAP overlaps */
    assert_status(map(&t.r.iommu, 1, MMIO_IOVA, MMIO_IOVA + 0xfff, t.gpa, RW),
                  S_INVAL);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/*
 * virtio-iommu-rs to virtio-iommu-pci with a virtio-mmio endpoint
 * attached: the C device cannot hold it (it would abort on an endpoint it
 * has no device for), so the stream carries it in a subsection C does not
 * know, and the C destination refuses the stream cleanly.  With nothing
 * attached at that endpoint, the same migration goes through (and on the C
 * device the rng's DMA is direct: its rings at IOVAs are no longer valid,
 * as QEMU then says; a driver must not rely on that endpoint there).
 */
static void test_migrate_rust_to_c(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, false, "");
    set_up_translated(&t);
    g_assert_false(mrig_migrate(&t, C_DEVICE));
    assert_status(detach(&t.r.iommu, 1, t.ep), S_OK);
    g_assert_true(mrig_migrate(&t, C_DEVICE));
    mrig_stop(&t);
}

/* ---- cases: virtio-iommu-pci ---------------------------------------------- */

/*
 * The C device manages PCI devices only: with boot-bypass off the rng's
 * DMA still goes straight to memory, and its endpoint id is unknown.
 */
static void test_c_untranslated(const TestCase *tc)
{
    MmioRig t;

    mrig_start(&t, tc->device, false, "");
    assert_status(attach(&t.r.iommu, 1, t.ep), S_NOENT);
    rng_driver_init(&t, t.gpa);
    rng_request(&t, t.gpa + BUF_OFF);
    g_assert_true(rng_wait_used(&t));
    expect_random_at(&t, t.gpa + BUF_OFF);
    expect_no_fault(&t.r);
    mrig_stop(&t);
}

/* ---- configurations refused at start -------------------------------------- */

/*
 * Start virt with virtio-iommu-rs (its -device JSON members @props, then
 * @more arguments) and, created after it, @dev; expect @outcome.
 */
static void mmio_outcome(QemuOutcome outcome, const char *msg,
                         const char *props, const char *more, const char *dev)
{
    g_autofree char *args = g_strdup_printf(
        "-global virtio-mmio.force-legacy=false "
        "-device '{\"driver\":\"%s\"%s}' %s", RUST_DEVICE, props, more);

    assert_qemu_outcome(outcome, msg, args, "%s", dev);
}

#define RNG0 "{\"driver\":\"virtio-rng-device\",\"id\":\"rng0\"," \
    "\"iommu_platform\":true}"

static void test_refused(const void *data)
{
    /* A PCI device takes its coherency from its host bridge */
    mmio_outcome(QEMU_REFUSES, "'00:02.0' is a PCI address",
                 ",\"noncoherent-devices\":[\"00:02.0\"]", "", RNG0);
    mmio_outcome(QEMU_REFUSES, "'prng' names no device plugged into a "
                 "virtio-mmio transport",
                 ",\"noncoherent-devices\":[\"prng\"]",
                 "-device virtio-rng-pci,id=prng", RNG0);
    mmio_outcome(QEMU_REFUSES, "'nosuch' names no device",
                 ",\"noncoherent-devices\":[\"nosuch\"]", "", RNG0);
    /* A device plugged before the IOMMU would go past it */
    assert_qemu_outcome(QEMU_REFUSES, "'rng1' (iommu_platform=on) was "
                        "created before virtio-iommu-rs",
                        "-global virtio-mmio.force-legacy=false -device "
                        "virtio-rng-device,id=rng1,iommu_platform=on",
                        "{\"driver\":\"%s\"}", RUST_DEVICE);
    /* A legacy transport cannot negotiate ACCESS_PLATFORM */
    assert_qemu_outcome(QEMU_REFUSES, "needs a modern virtio-mmio transport",
                        "-device '{\"driver\":\"" RUST_DEVICE "\"}'",
                        "%s", RNG0);
    /* Described non-coherent, and a transport without IOMMU use: starts */
    mmio_outcome(QEMU_STARTS, NULL, ",\"noncoherent-devices\":[\"rng0\"]",
                 "-device virtio-rng-device", RNG0);
}

int main(int argc, char **argv)
{
    static const DeviceCase rust_cases[] = {
        { "translated", test_translated },
        { "fault", test_fault },
        { "bypass", test_bypass },
        { "bypass-domain", test_bypass_domain },
        { "bypass-devices", test_bypass_devices },
        { "noncoherent-endpoint", test_noncoherent_endpoint },
        { "migrate-rust-to-rust", test_migrate_rust_to_rust },
        { "migrate-rust-to-c", test_migrate_rust_to_c },
    };
    static const DeviceCase c_cases[] = {
        { "untranslated", test_c_untranslated },
    };

    g_test_init(&argc, &argv, NULL);
    if (!on_arm()) {
        g_test_skip("virtio-mmio endpoints are arm virt's");
        return g_test_run();
    }
    add_device_cases("virtio-iommu-rs-mmio", C_DEVICE, c_cases,
                     G_N_ELEMENTS(c_cases), 60 * G_USEC_PER_SEC);
    add_device_cases("virtio-iommu-rs-mmio", RUST_DEVICE, rust_cases,
                     G_N_ELEMENTS(rust_cases), 60 * G_USEC_PER_SEC);
    qtest_add_data_func("virtio-iommu-rs-mmio/" RUST_DEVICE "/refused", NULL,
                        test_refused);
    return g_test_run();
}
