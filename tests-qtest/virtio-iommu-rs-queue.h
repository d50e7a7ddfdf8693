/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What the virtio-iommu-rs qtests that drive the queues share (the
 * requests and translate tests): the machine with one IOMMU brought up
 * by a guest driver, request encoding, status assertions and running each
 * case in a subprocess.
 *
 * A test including this header defines
 *     static uint8_t send_raw(Iommu *m, const void *req, size_t len);
 * which sends @len bytes of request with a bare tail as the writable part
 * and returns the status: the request helpers below go through it.
 */

#ifndef VIRTIO_IOMMU_RS_QUEUE_H
#define VIRTIO_IOMMU_RS_QUEUE_H

#include "qemu/bitops.h"
#include "qemu/bswap.h"
#include "libqtest.h"
#include "libqos/libqos-malloc.h"
#include "libqos/malloc-pc.h"
#include "libqos/pci.h"
#include "libqos/pci-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_iommu.h"
#include "virtio-iommu-rs-qtest.h"

/* The tests put the IOMMU at 04.0 on the machine's root bus (bus 0) */
#define IOMMU_DEVFN QPCI_DEVFN(4, 0)

/*
 * Both devices get aw-bits=39 explicitly.  On q35 the C device gets 39 from
 * a machine compat property and ours 64 (a documented configuration
 * difference, covered by virtio-iommu-rs-test); with the same input range
 * on both the request statuses can be compared, and "beyond input_range"
 * (difference 3) is reachable.
 */
#define AW_BITS    39

#define TAIL_SIZE  sizeof(struct virtio_iommu_req_tail)

/* Request lengths without the tail: what the driver makes device-readable */
#define ATTACH_LEN (sizeof(struct virtio_iommu_req_attach) - TAIL_SIZE)
#define DETACH_LEN (sizeof(struct virtio_iommu_req_detach) - TAIL_SIZE)
#define MAP_LEN    (sizeof(struct virtio_iommu_req_map) - TAIL_SIZE)
#define UNMAP_LEN  (sizeof(struct virtio_iommu_req_unmap) - TAIL_SIZE)
#define PROBE_LEN  sizeof(struct virtio_iommu_req_probe)

#define R    VIRTIO_IOMMU_MAP_F_READ
#define W    VIRTIO_IOMMU_MAP_F_WRITE
#define MMIO VIRTIO_IOMMU_MAP_F_MMIO
#define RW   (R | W)

#define S_OK     VIRTIO_IOMMU_S_OK
#define S_UNSUPP VIRTIO_IOMMU_S_UNSUPP
#define S_DEVERR VIRTIO_IOMMU_S_DEVERR
#define S_INVAL  VIRTIO_IOMMU_S_INVAL
#define S_RANGE  VIRTIO_IOMMU_S_RANGE
#define S_NOENT  VIRTIO_IOMMU_S_NOENT

/*
 * Both devices answer from the main loop in well under a millisecond; a
 * device that has not answered after this long never will.  Kept short so
 * that a device without request processing fails each case quickly.
 */
#define REQUEST_TIMEOUT_US (2 * G_USEC_PER_SEC)

/*
 * Features our driver accepts.  EVENT_IDX is left out on purpose: the
 * requests test waits for an interrupt for every used buffer, which
 * EVENT_IDX would suppress unless the driver kept moving used_event; the
 * translate test never moves used_event either (it polls the used rings).
 */
#define DRIVER_FEATURES                               \
    (BIT_ULL(VIRTIO_F_VERSION_1) |                    \
     BIT_ULL(VIRTIO_IOMMU_F_INPUT_RANGE) |            \
     BIT_ULL(VIRTIO_IOMMU_F_DOMAIN_RANGE) |           \
     BIT_ULL(VIRTIO_IOMMU_F_MAP_UNMAP) |              \
     BIT_ULL(VIRTIO_IOMMU_F_PROBE) |                  \
     BIT_ULL(VIRTIO_IOMMU_F_MMIO) |                   \
     BIT_ULL(VIRTIO_IOMMU_F_BYPASS_CONFIG))

/* ---- statuses ----------------------------------------------------------- */

static inline const char *status_name(unsigned status)
{
    static const char *const names[] = {
        [VIRTIO_IOMMU_S_OK] = "OK",
        [VIRTIO_IOMMU_S_IOERR] = "IOERR",
        [VIRTIO_IOMMU_S_UNSUPP] = "UNSUPP",
        [VIRTIO_IOMMU_S_DEVERR] = "DEVERR",
        [VIRTIO_IOMMU_S_INVAL] = "INVAL",
        [VIRTIO_IOMMU_S_RANGE] = "RANGE",
        [VIRTIO_IOMMU_S_NOENT] = "NOENT",
        [VIRTIO_IOMMU_S_FAULT] = "FAULT",
        [VIRTIO_IOMMU_S_NOMEM] = "NOMEM",
    };

    return status < ARRAY_SIZE(names) && names[status] ? names[status]
                                                       : "(not a status)";
}

/*
 * What a loop in the case is at, for the failure messages of
 * assert_status().  (A case runs in a GTest subprocess, started with -q:
 * its g_test_message() output is not shown.)
 */
static char *case_note;

static inline void G_GNUC_PRINTF(1, 2) note(const char *fmt, ...)
{
    va_list ap;

    g_free(case_note);
    va_start(ap, fmt);
    case_note = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

static inline void note_clear(void)
{
    g_free(case_note);
    case_note = NULL;
}

static inline char *status_text(const char *expr, unsigned status)
{
    if (!case_note) {
        return g_strdup_printf("%s: %s", expr, status_name(status));
    }
    return g_strdup_printf("%s for %s: %s", expr, case_note,
                           status_name(status));
}

/*
 * Compare by name, with the request and the loop context, so that a
 * failure reads e.g.
 * ("attach(&m, 1, EP_A): INVAL" == "attach(&m, 1, EP_A): OK")
 */
#define assert_status(actual, expected)                                 \
    do {                                                                \
        g_autofree char *got_ = status_text(#actual, (actual));         \
        g_autofree char *want_ = status_text(#actual, (expected));      \
        g_assert_cmpstr(got_, ==, want_);                               \
    } while (0)

/* ---- machine and driver ------------------------------------------------- */

typedef struct Iommu {
    const char *device;
    QTestState *qts;
    QPCIBus *bus;
    QVirtioPCIDevice *dev;
    QGuestAllocator alloc;
    uint64_t features;      /* negotiated */
    QVirtQueue *reqq;       /* queue 0: requests */
    QVirtQueue *evtq;       /* queue 1: events */
    uint64_t out_area;      /* device-readable request buffers */
    uint64_t in_area;       /* device-writable answer buffers */
} Iommu;

/*
 * Driver initialisation (virtio 1.x, 3.1.1): reset, ACKNOWLEDGE, DRIVER,
 * features, FEATURES_OK, queues, DRIVER_OK.
 */
static inline void iommu_driver_init(Iommu *m, uint64_t required_features)
{
    QVirtioDevice *vdev = &m->dev->vdev;

    qvirtio_reset(vdev);
    qvirtio_set_acknowledge(vdev);
    qvirtio_set_driver(vdev);

    m->features = qvirtio_get_features(vdev) & DRIVER_FEATURES;
    g_assert_cmphex(m->features & required_features, ==, required_features);
    qvirtio_set_features(vdev, m->features);

    m->reqq = qvirtqueue_setup(vdev, &m->alloc, 0);
    m->evtq = qvirtqueue_setup(vdev, &m->alloc, 1);
    qvirtio_set_driver_ok(vdev);
}

static inline void iommu_driver_fini(Iommu *m)
{
    QVirtioDevice *vdev = &m->dev->vdev;

    /* Stop the device before its rings go back to the allocator */
    qvirtio_reset(vdev);
    qvirtqueue_cleanup(vdev->bus, m->reqq, &m->alloc);
    qvirtqueue_cleanup(vdev->bus, m->evtq, &m->alloc);
    m->reqq = m->evtq = NULL;
}

/*
 * The command line of the machine (q35, or virt on aarch64) with @device
 * at IOMMU_DEVFN, its -device JSON
 * members @props (each with a leading comma) added to the common ones,
 * and the rest of the command line in @args.
 */
static inline char *iommu_cmdline(const char *device, const char *props,
                                  const char *args)
{
    /* JSON -device: reserved-regions is a list; quoted for libqtest's sh */
    return g_strdup_printf("%s -nodefaults "
                           "-device '{\"driver\":\"%s\",\"addr\":\"04.0\","
                           "\"aw-bits\":%d%s}' %s",
                           machine_args(), device, AW_BITS, props, args);
}

/*
 * Boot iommu_cmdline(@device, @props, @args), bring the device up as a
 * driver would, and allocate the request areas.
 */
static inline void iommu_boot(Iommu *m, const char *device, const char *props,
                              const char *args, uint64_t required_features,
                              size_t out_size, size_t in_size)
{
    g_autofree char *cmdline = iommu_cmdline(device, props, args);

    memset(m, 0, sizeof(*m));
    m->device = device;
    m->qts = qtest_init(cmdline);
    /* Every guest allocation must be given back by the end of the case */
    machine_alloc_init(&m->alloc, m->qts, ALLOC_LEAK_ASSERT);
    m->bus = machine_pci_new(m->qts, &m->alloc);
    m->dev = iommu_find(m->bus);
    g_assert_cmphex(m->dev->pdev->devfn, ==, IOMMU_DEVFN);
    iommu_driver_init(m, required_features);
    m->out_area = guest_alloc(&m->alloc, out_size);
    m->in_area = guest_alloc(&m->alloc, in_size);
}

static inline void iommu_stop(Iommu *m)
{
    guest_free(&m->alloc, m->out_area);
    guest_free(&m->alloc, m->in_area);
    iommu_driver_fini(m);
    iommu_release(m->dev);
    machine_pci_free(m->bus);
    alloc_destroy(&m->alloc);
    qtest_quit(m->qts);
    memset(m, 0, sizeof(*m));
}

/* ---- request encoding --------------------------------------------------- */

static inline size_t enc_attach(void *buf, uint32_t domain, uint32_t ep,
                                uint32_t flags)
{
    struct virtio_iommu_req_attach req = {
        .head.type = VIRTIO_IOMMU_T_ATTACH,
        .domain = cpu_to_le32(domain),
        .endpoint = cpu_to_le32(ep),
        .flags = cpu_to_le32(flags),
    };

    memcpy(buf, &req, ATTACH_LEN);
    return ATTACH_LEN;
}

static inline size_t enc_detach(void *buf, uint32_t domain, uint32_t ep)
{
    struct virtio_iommu_req_detach req = {
        .head.type = VIRTIO_IOMMU_T_DETACH,
        .domain = cpu_to_le32(domain),
        .endpoint = cpu_to_le32(ep),
    };

    memcpy(buf, &req, DETACH_LEN);
    return DETACH_LEN;
}

static inline size_t enc_map(void *buf, uint32_t domain, uint64_t start,
                             uint64_t end, uint64_t phys, uint32_t flags)
{
    struct virtio_iommu_req_map req = {
        .head.type = VIRTIO_IOMMU_T_MAP,
        .domain = cpu_to_le32(domain),
        .virt_start = cpu_to_le64(start),
        .virt_end = cpu_to_le64(end),
        .phys_start = cpu_to_le64(phys),
        .flags = cpu_to_le32(flags),
    };

    memcpy(buf, &req, MAP_LEN);
    return MAP_LEN;
}

static inline size_t enc_unmap(void *buf, uint32_t domain, uint64_t start,
                               uint64_t end)
{
    struct virtio_iommu_req_unmap req = {
        .head.type = VIRTIO_IOMMU_T_UNMAP,
        .domain = cpu_to_le32(domain),
        .virt_start = cpu_to_le64(start),
        .virt_end = cpu_to_le64(end),
    };

    memcpy(buf, &req, UNMAP_LEN);
    return UNMAP_LEN;
}

static inline size_t enc_probe(void *buf, uint32_t ep)
{
    struct virtio_iommu_req_probe req = {
        .head.type = VIRTIO_IOMMU_T_PROBE,
        .endpoint = cpu_to_le32(ep),
    };

    memcpy(buf, &req, PROBE_LEN);
    return PROBE_LEN;
}

/*
 * Send one request (readable part @req, at most @max bytes, and a 4-byte
 * writable tail) and return its status.  The driver polls the used ring
 * rather than the ISR: reading the ISR would clear the event queue's
 * interrupt too.  A test whose send_raw() needs nothing more uses this.
 */
static inline uint8_t send_polled(Iommu *m, const void *req, size_t len,
                                  size_t max)
{
    QVirtQueue *vq = m->reqq;
    gint64 deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
    uint8_t tail[TAIL_SIZE];
    uint32_t head, id, used_len;

    g_assert_cmpuint(len, <=, max);
    /*
     * libqos hands out descriptors from a counter it never rewinds; every
     * earlier request has completed, so the whole table is free again.
     */
    vq->free_head = 0;
    vq->num_free = vq->size;

    qtest_memwrite(m->qts, m->out_area, req, len);
    qtest_memset(m->qts, m->in_area, 0xff, TAIL_SIZE);
    head = qvirtqueue_add(m->qts, vq, m->out_area, len, false, true);
    qvirtqueue_add(m->qts, vq, m->in_area, TAIL_SIZE, true, false);
    qvirtqueue_kick(m->qts, &m->dev->vdev, vq, head);

    while (!qvirtqueue_get_buf(m->qts, vq, &id, &used_len)) {
        if (g_get_monotonic_time() > deadline) {
            g_error("%s did not answer a request of type %u within %d ms",
                    m->device, ((const uint8_t *)req)[0],
                    (int)(REQUEST_TIMEOUT_US / 1000));
        }
    }
    g_assert_cmpuint(id, ==, head);
    g_assert_cmpuint(used_len, ==, TAIL_SIZE);
    qtest_memread(m->qts, m->in_area, tail, TAIL_SIZE);
    return tail[0];
}

/* Defined by each test, see the top of this file */
static uint8_t send_raw(Iommu *m, const void *req, size_t req_len);

static inline uint8_t attach_flags(Iommu *m, uint32_t domain, uint32_t ep,
                                   uint32_t flags)
{
    uint8_t buf[ATTACH_LEN];

    return send_raw(m, buf, enc_attach(buf, domain, ep, flags));
}

static inline uint8_t attach(Iommu *m, uint32_t domain, uint32_t ep)
{
    return attach_flags(m, domain, ep, 0);
}

static inline uint8_t detach(Iommu *m, uint32_t domain, uint32_t ep)
{
    uint8_t buf[DETACH_LEN];

    return send_raw(m, buf, enc_detach(buf, domain, ep));
}

/* Map the inclusive range [start, end] to @phys */
static inline uint8_t map(Iommu *m, uint32_t domain, uint64_t start,
                          uint64_t end, uint64_t phys, uint32_t flags)
{
    uint8_t buf[MAP_LEN];

    return send_raw(m, buf, enc_map(buf, domain, start, end, phys, flags));
}

static inline uint8_t unmap(Iommu *m, uint32_t domain, uint64_t start,
                            uint64_t end)
{
    uint8_t buf[UNMAP_LEN];

    return send_raw(m, buf, enc_unmap(buf, domain, start, end));
}

/* ---- cases -------------------------------------------------------------- */

typedef struct TestCase TestCase;
struct TestCase {
    const char *device;     /* NULL for the differential cases */
    unsigned seed;          /* differential cases only */
    gint64 timeout_us;      /* backstop for the case, should QEMU hang */
    void (*fn)(const TestCase *tc);
};

/*
 * Run the case in a child process: its assertions abort only the child,
 * and this process reports the case as failed and goes on with the next.
 */
static inline void run_isolated(const void *data)
{
    const TestCase *tc = data;

    if (g_test_subprocess()) {
        tc->fn(tc);
        return;
    }
    g_test_trap_subprocess(NULL, tc->timeout_us,
                           G_TEST_SUBPROCESS_INHERIT_STDOUT |
                           G_TEST_SUBPROCESS_INHERIT_STDERR);
    if (!g_test_trap_has_passed()) {
        g_test_message("the case failed in its subprocess (see its stderr)");
        g_test_fail();
    }
}

static inline void add_case(const char *path, const char *device,
                            unsigned seed, gint64 timeout_us,
                            void (*fn)(const TestCase *tc))
{
    /* Lives until the process exits, as GTest keeps the pointer */
    TestCase *tc = g_new0(TestCase, 1);

    tc->device = device;
    tc->seed = seed;
    tc->timeout_us = timeout_us;
    tc->fn = fn;
    qtest_add_data_func(path, tc, run_isolated);
}

/* A named case run once per device */
typedef struct DeviceCase {
    const char *name;
    void (*fn)(const TestCase *tc);
} DeviceCase;

/* Register @cases for @device as /@suite/@device/<name> */
static inline void add_device_cases(const char *suite, const char *device,
                                    const DeviceCase *cases, size_t n,
                                    gint64 timeout_us)
{
    for (size_t i = 0; i < n; i++) {
        g_autofree char *path = g_strdup_printf("%s/%s/%s", suite, device,
                                                cases[i].name);

        add_case(path, device, 0, timeout_us, cases[i].fn);
    }
}

#endif
