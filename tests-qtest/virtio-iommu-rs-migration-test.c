/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest for live migration of virtio-iommu-rs and QEMU's C
 * virtio-iommu-pci, in all four directions: each device to itself, and
 * each to the other (both save and load the C device's stream).
 *
 * The source sets up state through the request queue as a driver would
 * (two domains, one of them a bypass domain, read-only and read-write
 * mappings, three endpoints, the config's bypass written by the driver),
 * then migrates to a file; a new QEMU with -incoming loads it.  On the
 * destination the test goes on with the same driver, rings and guest
 * memory: DMA by edu lands where the mappings say, faults still fault,
 * PROBE answers the same, and the next requests on the same ring are
 * answered as the state says.
 *
 * A byte-level case saves the same state from both devices and compares
 * their "virtio-iommu" sections; corrupted-stream cases make a valid
 * stream invalid in one way each and check that the load is refused with
 * the message naming what is wrong.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "standard-headers/linux/virtio_ring.h"
#include "virtio-iommu-rs-edu.h"
#include "virtio-iommu-rs-stream.h"

#define EP_B       QPCI_DEVFN(6, 0)     /* pci-testdev */
#define EP_C       QPCI_DEVFN(7, 0)     /* pci-testdev */

/* The endpoints, on the command line of both sides */
static char *other_args(const char *more)
{
    return g_strdup_printf("-device %s,addr=05.0 "
                           "-device pci-testdev,addr=06.0 "
                           "-device pci-testdev,addr=07.0 %s",
                           edu_args(), more);
}

#define PROBE_SIZE   512    /* the config space's probe_size, both devices */
#define PROBE_ANSWER (PROBE_SIZE + TAIL_SIZE)

#define REQUIRED_FEATURES                             \
    (BIT_ULL(VIRTIO_F_VERSION_1) |                    \
     BIT_ULL(VIRTIO_IOMMU_F_MAP_UNMAP) |              \
     BIT_ULL(VIRTIO_IOMMU_F_PROBE) |                  \
     BIT_ULL(VIRTIO_IOMMU_F_BYPASS_CONFIG))

#define CASE_TIMEOUT_US     (90 * G_USEC_PER_SEC)

/* The two mappings of domain 1: read-write, then read-only */
#define RW_IOVA    IOVA_BASE
#define RO_IOVA    (IOVA_BASE + 0x1000)

/* Both devices get the machine's MSI reserved region: PROBE compares */
#define DEVICE_PROPS ",\"boot-bypass\":false"

static uint8_t send_raw(Iommu *m, const void *req, size_t len)
{
    return send_polled(m, req, len, REQ_MAX);
}

/* PROBE @ep with a full-size answer buffer: its property bytes */
static void probe(Iommu *m, uint32_t ep, uint8_t props[PROBE_SIZE])
{
    gint64 deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
    QVirtQueue *vq = m->reqq;
    uint8_t req[PROBE_LEN], tail[TAIL_SIZE];
    uint32_t head, id, used_len;

    vq->free_head = 0;
    vq->num_free = vq->size;
    qtest_memwrite(m->qts, m->out_area, req, enc_probe(req, ep));
    qtest_memset(m->qts, m->in_area, 0xff, PROBE_ANSWER);
    head = qvirtqueue_add(m->qts, vq, m->out_area, PROBE_LEN, false, true);
    qvirtqueue_add(m->qts, vq, m->in_area, PROBE_ANSWER, true, false);
    qvirtqueue_kick(m->qts, &m->dev->vdev, vq, head);
    while (!qvirtqueue_get_buf(m->qts, vq, &id, &used_len)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
    }
    g_assert_cmpuint(id, ==, head);
    g_assert_cmpuint(used_len, ==, PROBE_ANSWER);
    qtest_memread(m->qts, m->in_area, props, PROBE_SIZE);
    qtest_memread(m->qts, m->in_area + PROBE_SIZE, tail, TAIL_SIZE);
    assert_status(tail[0], S_OK);
}

/* ---- the source ---------------------------------------------------------- */

static void rig_start(Rig *r, const char *device)
{
    g_autofree char *args = other_args("");

    memset(r, 0, sizeof(*r));
    iommu_boot(&r->iommu, device, DEVICE_PROPS, args, REQUIRED_FEATURES,
               PROBE_LEN, PROBE_ANSWER);
    r->evt_area = guest_alloc(&r->iommu.alloc, EVT_BUFS * EVT_BUF_SIZE);
    r->ram = guest_alloc(&r->iommu.alloc, RAM_SIZE);
    g_assert_cmphex(r->ram & 0xfff, ==, 0);
    qtest_memset(r->iommu.qts, r->ram, GUARD_FILL, RAM_SIZE);
    edu_init(r, EDU_DEVFN);
    evt_post(r, EVT_BUFS);
}

/*
 * The state every case migrates: domain 1 holds edu and EP_B (attached in
 * that order, so the lists' order shows) with a read-write and a
 * read-only mapping; bypass domain 2 holds EP_C; the driver has turned
 * the config's bypass on.
 */
static void set_up_state(Rig *r)
{
    Iommu *m = &r->iommu;

    assert_status(attach(m, 1, EDU_EP), S_OK);
    assert_status(attach(m, 1, EP_B), S_OK);
    assert_status(attach_flags(m, 2, EP_C, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_OK);
    assert_status(map(m, 1, RW_IOVA, RW_IOVA + 0xfff, r->ram, RW), S_OK);
    assert_status(map(m, 1, RO_IOVA, RO_IOVA + 0xfff, r->ram + 0x1000, R),
                  S_OK);
    iommu_write_bypass(m->dev, 1);
    g_assert_cmpuint(iommu_read_bypass(m->dev), ==, 1);
}

/* ---- migration ----------------------------------------------------------- */

/*
 * Start a destination with @device and load @path into it: the new QEMU
 * and whether the load completed.
 */
static QTestState *load_from(const char *device, const char *path,
                             bool *loaded)
{
    g_autofree char *args = other_args("-incoming defer");
    g_autofree char *cmdline = iommu_cmdline(device, DEVICE_PROPS, args);
    QTestState *qts = qtest_init(cmdline);

    *loaded = load_into(qts, path);
    return qts;
}

/*
 * Migrate the rig to a new QEMU with @device: the driver, its rings and
 * the guest memory it allocated go on there.
 */
static void migrate(Rig *r, const char *device)
{
    g_autofree char *path = stream_path();
    QTestState *dst;
    bool loaded;

    save_to(r->iommu.qts, path);
    dst = load_from(device, path, &loaded);
    unlink(path);
    g_assert_true(loaded);
    qtest_quit(r->iommu.qts);
    r->iommu.qts = dst;
    r->iommu.bus->qts = dst;
    r->iommu.device = device;
    /*
     * edu has no migration state (not even its PCI config): map its BAR
     * and enable it again, as its driver would after a reset.  Its
     * endpoint's IOMMU state is what was migrated.
     */
    qpci_iounmap(r->edu, r->edu_bar);
    g_free(r->edu);
    edu_init(r, EDU_DEVFN);
}

/* ---- cases -------------------------------------------------------------- */

typedef struct Direction {
    const char *name;
    const char *src, *dst;
} Direction;

static const Direction directions[] = {
    { "c-to-c", C_DEVICE, C_DEVICE },
    { "c-to-rust", C_DEVICE, RUST_DEVICE },
    { "rust-to-c", RUST_DEVICE, C_DEVICE },
    { "rust-to-rust", RUST_DEVICE, RUST_DEVICE },
};

static const Direction *direction(const TestCase *tc)
{
    return &directions[tc->seed];
}

/*
 * Set the state up on the source, migrate, and check on the destination
 * that it is all there and that the device goes on working.
 */
static void test_round_trip(const TestCase *tc)
{
    const Direction *d = direction(tc);
    uint8_t before[PROBE_SIZE], after[PROBE_SIZE];
    Rig r;

    rig_start(&r, d->src);
    set_up_state(&r);
    round_trip(&r, RO_IOVA + 0x100, r.ram + 0x1100, RW_IOVA + 0x200,
               r.ram + 0x200, 0x100, 1);
    expect_no_fault(&r);
    probe(&r.iommu, EP_B, before);

    migrate(&r, d->dst);

    /* The config, the mappings and their rights */
    g_assert_cmpuint(iommu_read_bypass(r.iommu.dev), ==, 1);
    round_trip(&r, RO_IOVA + 0x300, r.ram + 0x1300, RW_IOVA + 0x543,
               r.ram + 0x543, 0x80, 2);
    expect_no_fault(&r);
    dma_write(&r, RO_IOVA + 0x800, 0, 4);
    expect_fault(&r, VIRTIO_IOMMU_FAULT_R_MAPPING, F_WRITE | F_ADDRESS,
                 RO_IOVA + 0x800);
    ram_expect_fill(&r, r.ram + 0x1800, 4, GUARD_FILL);
    dma_write(&r, IOVA_BASE + 0x3000, 0, 4);
    expect_fault(&r, VIRTIO_IOMMU_FAULT_R_MAPPING, F_ADDRESS,
                 IOVA_BASE + 0x3000);

    /* PROBE, and the next requests on the same ring */
    probe(&r.iommu, EP_B, after);
    g_assert_cmpmem(after, PROBE_SIZE, before, PROBE_SIZE);
    assert_status(map(&r.iommu, 1, RW_IOVA, RW_IOVA + 0xfff, r.ram, RW),
                  S_INVAL);
    assert_status(map(&r.iommu, 2, RW_IOVA, RW_IOVA + 0xfff, r.ram, RW),
                  S_INVAL);
    assert_status(detach(&r.iommu, 2, EP_C), S_OK);
    assert_status(detach(&r.iommu, 2, EP_C), S_NOENT);
    assert_status(map(&r.iommu, 1, IOVA_BASE + 0x2000, IOVA_BASE + 0x2fff,
                      r.ram + 0x2000, RW), S_OK);
    round_trip(&r, IOVA_BASE + 0x2010, r.ram + 0x2010, IOVA_BASE + 0x2800,
               r.ram + 0x2800, 0x40, 3);
    assert_status(unmap(&r.iommu, 1, RW_IOVA, RO_IOVA + 0xfff), S_OK);
    dma_write(&r, RW_IOVA + 0x10, 0, 4);
    expect_fault(&r, VIRTIO_IOMMU_FAULT_R_MAPPING, F_ADDRESS, RW_IOVA + 0x10);
    assert_status(detach(&r.iommu, 1, EP_B), S_OK);
    assert_status(detach(&r.iommu, 1, EDU_EP), S_OK);
    expect_no_fault(&r);
    rig_stop(&r);
}

/* ---- the stream itself -------------------------------------------------- */

/* Set up the state on @device and save it: the stream's bytes */
static uint8_t *save_state(const char *device, size_t *len)
{
    g_autofree char *path = stream_path();
    g_autoptr(GError) err = NULL;
    uint8_t *buf;
    Rig r;

    rig_start(&r, device);
    set_up_state(&r);
    save_to(r.iommu.qts, path);
    g_file_get_contents(path, (char **)&buf, len, &err);
    g_assert_no_error(err);
    unlink(path);
    rig_stop(&r);
    return buf;
}

/* The same state gives the same section, byte for byte, on both devices */
static void test_same_bytes(const TestCase *tc)
{
    size_t c_len, rust_len, c_start, c_size, rust_start, rust_size;
    g_autofree uint8_t *c = save_state(C_DEVICE, &c_len);
    g_autofree uint8_t *rust = save_state(RUST_DEVICE, &rust_len);

    find_section(c, c_len, &c_start, &c_size);
    find_section(rust, rust_len, &rust_start, &rust_size);
    g_test_message("virtio-iommu section: %zu bytes (C), %zu bytes (Rust)",
                   c_size, rust_size);
    g_assert_cmpmem(rust + rust_start, rust_size, c + c_start, c_size);
}

/*
 * One way to make the stream of set_up_state() invalid.  Domain 1 is
 * saved as: u8 1 (a node of the domain tree), be64 key, be32 id, be32
 * mapping count, u8 1, be64 low, be64 high, be64 phys, be32 flags (the
 * read-write mapping), the read-only one likewise, u8 0, then its
 * endpoints (u8 1, be32 id: EP_B first, the last attached), u8 0, u8
 * bypass.
 */
typedef struct Corruption {
    const char *name;
    /* Change the stream; domain 1's node starts at @at */
    void (*corrupt)(uint8_t *buf, size_t at, size_t *len);
    /* What the load must say */
    const char *message;
} Corruption;

#define DOM1_KEY        (at + 1)
#define DOM1_ID         (at + 9)
#define DOM1_MAP(i)     (at + 17 + (i) * 29 + 1)   /* low of mapping i */
#define DOM1_EP(i)      (at + 17 + 2 * 29 + 1 + (i) * 5 + 1)

static void corrupt_endpoint(uint8_t *buf, size_t at, size_t *len)
{
    stl_be_p(buf + DOM1_EP(0), QPCI_DEVFN(0xa, 0));     /* an empty slot */
}

static void corrupt_overlap(uint8_t *buf, size_t at, size_t *len)
{
    stq_be_p(buf + DOM1_MAP(1), RO_IOVA - 0x800);
}

static void corrupt_reversed(uint8_t *buf, size_t at, size_t *len)
{
    stq_be_p(buf + DOM1_MAP(0) + 8, RW_IOVA - 1);
}

static void corrupt_flags(uint8_t *buf, size_t at, size_t *len)
{
    stl_be_p(buf + DOM1_MAP(0) + 24, RW | 0x100);
}

static void corrupt_key(uint8_t *buf, size_t at, size_t *len)
{
    stq_be_p(buf + DOM1_KEY, 7);
}

static void corrupt_domain_twice(uint8_t *buf, size_t at, size_t *len)
{
    /* Domain 2 follows domain 1's bypass byte: make it domain 1 again */
    size_t dom2 = DOM1_EP(2) + 1;

    stq_be_p(buf + dom2 + 1, 1);
    stl_be_p(buf + dom2 + 9, 1);
}

static void corrupt_truncate(uint8_t *buf, size_t at, size_t *len)
{
    *len = DOM1_MAP(1);
}

static const Corruption corruptions[] = {
    { "unknown-endpoint", corrupt_endpoint,
      "endpoint 0x50 (attached to domain 1) has no device behind this IOMMU" },
    { "overlapping-mappings", corrupt_overlap,
      "mappings [0xc000000, 0xc000fff] and [0xc000800, 0xc001fff] of domain 1 "
      "overlap" },
    { "reversed-mapping", corrupt_reversed,
      "mapping [0xc000000, 0xbffffff] of domain 1 ends before it starts" },
    { "unknown-flags", corrupt_flags,
      "mapping [0xc000000, 0xc000fff] of domain 1 has unknown flags 0x103" },
    { "key-mismatch", corrupt_key, "domain 1 is saved under the tree key 0x7" },
    { "domain-twice", corrupt_domain_twice, "domain 1 is saved twice" },
    { "truncated", corrupt_truncate, "the migration stream ends early" },
};

/* Where domain 1's node starts in the section of @buf */
static size_t find_domain1(const uint8_t *buf, size_t len)
{
    size_t start, size;
    uint8_t node[1 + 8 + 4 + 4 + 1 + 8];

    find_section(buf, len, &start, &size);
    node[0] = 1;
    stq_be_p(node + 1, 1);
    stl_be_p(node + 9, 1);
    stl_be_p(node + 13, 2);
    node[17] = 1;
    stq_be_p(node + 18, RW_IOVA);
    for (size_t i = start; i + sizeof(node) <= start + size; i++) {
        if (memcmp(buf + i, node, sizeof(node)) == 0) {
            return i;
        }
    }
    g_error("domain 1 not found in the virtio-iommu section");
}

/* Runs in a subprocess whose stderr the parent checks (QEMU's too) */
static void corrupted_load(const Corruption *c)
{
    g_autofree char *path = stream_path();
    g_autoptr(GError) err = NULL;
    size_t len, at;
    g_autofree uint8_t *buf = save_state(RUST_DEVICE, &len);
    QTestState *qts;
    bool loaded;

    at = find_domain1(buf, len);
    c->corrupt(buf, at, &len);
    g_file_set_contents(path, (char *)buf, len, &err);
    g_assert_no_error(err);
    qts = load_from(RUST_DEVICE, path, &loaded);
    unlink(path);
    g_assert_false(loaded);
    qtest_quit(qts);
}

static void test_corrupted(const void *data)
{
    const Corruption *c = data;
    g_autofree char *pattern = g_strdup_printf("*virtio-iommu-rs: %s*",
                                               c->message);

    if (g_test_subprocess()) {
        corrupted_load(c);
        return;
    }
    g_test_trap_subprocess(NULL, CASE_TIMEOUT_US, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr(pattern);
}

/* ---- compat properties --------------------------------------------------- */

/*
 * A machine type's compat properties reach both devices (patches 0004 to
 * 0006 key them on the interface both implement): on the 8.2 machine
 * types, hw_compat_8_2 sets aw-bits=64 and granule=4k, where the current
 * q35 gives 39 bits and virt 48.  A migration between the devices on one
 * machine type then cannot change the config space the guest sees.
 */
static void test_compat(const TestCase *tc)
{
    static const char *const devices[] = { C_DEVICE, RUST_DEVICE };

    for (size_t i = 0; i < G_N_ELEMENTS(devices); i++) {
        /* No aw-bits on the command line: the machine type's decides */
        QTestState *qts = qtest_initf("%s -nodefaults -device %s,addr=04.0",
                                      on_arm() ? "-M virt-8.2 -cpu max" :
                                      "-M pc-q35-8.2", devices[i]);
        QGuestAllocator alloc;
        QPCIBus *bus;
        QVirtioPCIDevice *dev;

        machine_alloc_init(&alloc, qts, ALLOC_NO_FLAGS);
        bus = machine_pci_new(qts, &alloc);
        dev = iommu_find(bus);
        qvirtio_reset(&dev->vdev);
        qvirtio_set_acknowledge(&dev->vdev);
        qvirtio_set_driver(&dev->vdev);
        qvirtio_set_features(&dev->vdev, BIT_ULL(VIRTIO_F_VERSION_1));
        g_assert_cmphex(qvirtio_config_readq(&dev->vdev,
                            offsetof(struct virtio_iommu_config,
                                     input_range.end)), ==, UINT64_MAX);
        g_assert_cmphex(qvirtio_config_readq(&dev->vdev,
                            offsetof(struct virtio_iommu_config,
                                     page_size_mask)), ==,
                        ~(uint64_t)0xfff);
        iommu_release(dev);
        machine_pci_free(bus);
        alloc_destroy(&alloc);
        qtest_quit(qts);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(directions); i++) {
        g_autofree char *path =
            g_strdup_printf("/virtio-iommu-rs/migration/%s",
                            directions[i].name);

        add_case(path, NULL, i, CASE_TIMEOUT_US, test_round_trip);
    }
    add_case("/virtio-iommu-rs/migration/same-bytes", NULL, 0,
             CASE_TIMEOUT_US, test_same_bytes);
    add_case("/virtio-iommu-rs/migration/compat-8.2", NULL, 0,
             CASE_TIMEOUT_US, test_compat);
    for (size_t i = 0; i < G_N_ELEMENTS(corruptions); i++) {
        g_autofree char *path =
            g_strdup_printf("/virtio-iommu-rs/migration/corrupted/%s",
                            corruptions[i].name);

        qtest_add_data_func(path, &corruptions[i], test_corrupted);
    }
    return g_test_run();
}
