/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest for the request virtqueue of the Rust virtio-iommu device
 * ("virtio-iommu-rs"), with QEMU's C device ("virtio-iommu-pci") as the
 * reference.
 *
 * Every case is registered once per device and asserts the same statuses
 * and answer bytes for both, except for the documented differences
 * (docs/differences.md, docs/requests.md) which are listed in
 * DeviceDifferences below and asserted explicitly per device.  The test
 * behaves like a guest driver: it negotiates features, sets up the queues
 * in guest memory and sends each request as a descriptor chain (device-
 * readable request, device-writable answer), then waits for the used
 * buffer.
 *
 * The differential cases send the same pseudo-random request sequence to
 * both devices side by side and compare the answers request by request.
 *
 * Every case runs in a subprocess: an assertion aborts the process, and a
 * device that never answers must fail its own case only, not every case
 * after it.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "standard-headers/linux/virtio_ring.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "virtio-iommu-rs-queue.h"

/*
 * Endpoints.  An endpoint id is the PCI requester id (bus << 8 | devfn) of a
 * device on the IOMMU's root bus (bus 0 on q35).  The machine puts the IOMMU
 * and three pci-testdev functions at fixed slots so that the ids are known.
 */
#define EP_A             QPCI_DEVFN(5, 0)
#define EP_B             QPCI_DEVFN(6, 0)
#define EP_C             QPCI_DEVFN(7, 0)
/* q35's MCH, virt's gpex-root */
#define EP_HOST_BRIDGE   QPCI_DEVFN(0, 0)
#define EP_LPC           QPCI_DEVFN(0x1f, 0)    /* q35's ICH9 LPC bridge */
/* Ids that name no device: an empty slot, and a bus that does not exist */
#define EP_EMPTY_SLOT    QPCI_DEVFN(0xa, 0)
#define EP_NO_BUS        ((1 << 8) | EP_A)
/* EP_A with bits above the 16-bit requester id (difference 7) */
#define EP_A_ALIAS       ((1 << 16) | EP_A)

#define INPUT_END  ((1ULL << AW_BITS) - 1)

#define PROBE_SIZE         512  /* the config space's probe_size */
#define PROBE_ANSWER_SIZE  (PROBE_SIZE + TAIL_SIZE)

/* Backstop for a whole case, should QEMU itself hang */
#define CASE_TIMEOUT_US    (60 * G_USEC_PER_SEC)

/* What a request case needs at least */
#define REQUIRED_FEATURES                             \
    (BIT_ULL(VIRTIO_F_VERSION_1) |                    \
     BIT_ULL(VIRTIO_IOMMU_F_MAP_UNMAP) |              \
     BIT_ULL(VIRTIO_IOMMU_F_PROBE))

/*
 * The deliberate differences between the two devices on the request queue
 * (docs/requests.md, "Deliberate differences"; numbers as there).  Number 6
 * concerns translation and is not visible on the request queue.
 */
typedef struct DeviceDifferences {
    /*
     * 1. UNMAP that would split a mapping: RANGE for both, but C first
     * removes the covered mappings its tree search met before the one in
     * the way; ours removes nothing.
     */
    bool unmap_range_removes_covered;
    /* 2. ATTACH with non-zero reserved bytes: C ignores them */
    uint8_t attach_reserved_status;
    /* 3. MAP with virt_start > virt_end, or outside input_range */
    uint8_t map_bad_range_status;
    /*
     * 4. ATTACH refused for a bypass-flag mismatch: C has already detached
     * the endpoint (freeing its emptied domain) and keeps a record of it;
     * ours changes nothing.
     */
    bool failed_attach_keeps_endpoint;
    /* 5. UNMAP with virt_start > virt_end that no mapping spans */
    uint8_t unmap_reversed_status;
    /* 7. endpoint ids with bits above 15: C aliases them to the low 16 */
    uint8_t high_endpoint_status;
} DeviceDifferences;

static const DeviceDifferences c_device = {
    .unmap_range_removes_covered = true,
    .attach_reserved_status = S_OK,
    .map_bad_range_status = S_OK,
    .failed_attach_keeps_endpoint = false,
    .unmap_reversed_status = S_OK,
    .high_endpoint_status = S_OK,
};

static const DeviceDifferences rust_device = {
    .unmap_range_removes_covered = false,
    .attach_reserved_status = S_INVAL,
    .map_bad_range_status = S_RANGE,
    .failed_attach_keeps_endpoint = true,
    .unmap_reversed_status = S_RANGE,
    .high_endpoint_status = S_NOENT,
};

static const DeviceDifferences *differences(const char *device)
{
    return strcmp(device, C_DEVICE) == 0 ? &c_device : &rust_device;
}

/* ---- machine, driver and guest memory ----------------------------------- */

/* Guest memory for the two halves of a request, with room for gaps */
#define AREA_SIZE   8192
/* Gap left between descriptors, to see a device read or write past one */
#define SEG_GAP     16
#define OUT_FILL    0xee    /* what a device reading too far would see */
#define IN_FILL     0xa5    /* what the device has not written */
#define ANSWER_MAX  4096

/* The device-writable part of a request once the device is done with it */
typedef struct Answer {
    uint32_t used_len;
    size_t writable_len;
    uint8_t buf[ANSWER_MAX];    /* the writable buffers, concatenated */
} Answer;

/*
 * Boot q35 with @device at IOMMU_DEVFN and three endpoints, and bring the
 * device up as a driver would.
 */
static void iommu_start(Iommu *m, const char *device)
{
    iommu_boot(m, device, "",
               "-device pci-testdev,addr=05.0 "
               "-device pci-testdev,addr=06.0 "
               "-device pci-testdev,addr=07.0",
               REQUIRED_FEATURES, AREA_SIZE, AREA_SIZE);
}

static uint16_t used_idx(Iommu *m)
{
    return qtest_readw(m->qts, m->reqq->used +
                       offsetof(struct vring_used, idx));
}

/* ---- sending requests --------------------------------------------------- */

/*
 * Post one request as a descriptor chain: @req split into device-readable
 * descriptors of @out_segs bytes, then device-writable descriptors of
 * @in_segs bytes (zero-length entries are skipped), and notify the device.
 * Returns the head descriptor.
 */
static uint32_t iommu_post(Iommu *m, const void *req,
                           const size_t *out_segs, size_t n_out,
                           const size_t *in_segs, size_t n_in)
{
    QVirtQueue *vq = m->reqq;
    const uint8_t *bytes = req;
    uint64_t out = m->out_area, in = m->in_area;
    uint32_t head = UINT32_MAX;
    size_t last = n_out + n_in;

    /* The chain ends at the last non-empty segment */
    while (last > n_out && in_segs[last - 1 - n_out] == 0) {
        last--;
    }
    while (last > 0 && last <= n_out && out_segs[last - 1] == 0) {
        last--;
    }
    g_assert_cmpuint(last, >, 0);

    /*
     * libqos hands out descriptors from a counter that is never rewound.
     * Every earlier request has completed (or the device was reset), so
     * the whole table is free again, as it is for a driver that recycles
     * descriptors.
     */
    vq->free_head = 0;
    vq->num_free = vq->size;

    qtest_memset(m->qts, m->out_area, OUT_FILL, AREA_SIZE);
    qtest_memset(m->qts, m->in_area, IN_FILL, AREA_SIZE);

    for (size_t i = 0; i < n_out + n_in; i++) {
        bool write = i >= n_out;
        size_t len = write ? in_segs[i - n_out] : out_segs[i];
        uint64_t *addr = write ? &in : &out;
        uint32_t idx;

        if (!len) {
            continue;
        }
        g_assert_cmpuint(*addr + len + SEG_GAP, <=,
                         (write ? m->in_area : m->out_area) + AREA_SIZE);
        if (!write) {
            qtest_memwrite(m->qts, *addr, bytes, len);
            bytes += len;
        }
        idx = qvirtqueue_add(m->qts, vq, *addr, len, write, i + 1 < last);
        if (head == UINT32_MAX) {
            head = idx;
        }
        *addr += len + SEG_GAP;
    }

    qvirtqueue_kick(m->qts, &m->dev->vdev, vq, head);
    return head;
}

/* Wait for the used buffer of @head, as qvirtio_wait_used_elem() does */
static bool iommu_wait_used(Iommu *m, uint32_t head, uint32_t *used_len)
{
    QVirtioDevice *vdev = &m->dev->vdev;
    gint64 deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
    uint32_t id;

    do {
        if (vdev->bus->get_queue_isr_status(vdev, m->reqq) &&
            qvirtqueue_get_buf(m->qts, m->reqq, &id, used_len)) {
            g_assert_cmpuint(id, ==, head);
            return true;
        }
    } while (g_get_monotonic_time() < deadline);
    return false;
}

/*
 * Send a request and collect the answer.  Also checks that the device
 * wrote nothing outside the writable descriptors.
 */
static void iommu_send(Iommu *m, const void *req,
                       const size_t *out_segs, size_t n_out,
                       const size_t *in_segs, size_t n_in, Answer *ans)
{
    g_autofree uint8_t *area = g_malloc(AREA_SIZE);
    uint32_t head = iommu_post(m, req, out_segs, n_out, in_segs, n_in);
    size_t pos = 0, end = 0;

    if (!iommu_wait_used(m, head, &ans->used_len)) {
        g_error("%s did not return the buffer of a request of type %u "
                "within %d ms", m->device, ((const uint8_t *)req)[0],
                (int)(REQUEST_TIMEOUT_US / 1000));
    }

    qtest_memread(m->qts, m->in_area, area, AREA_SIZE);
    ans->writable_len = 0;
    for (size_t i = 0; i < n_in; i++) {
        if (!in_segs[i]) {
            continue;
        }
        g_assert_cmpuint(ans->writable_len + in_segs[i], <=, ANSWER_MAX);
        memcpy(ans->buf + ans->writable_len, area + pos, in_segs[i]);
        ans->writable_len += in_segs[i];
        pos += in_segs[i];
        for (end = pos + SEG_GAP; pos < end; pos++) {
            g_assert_cmphex(area[pos], ==, IN_FILL);
        }
    }
    for (; pos < AREA_SIZE; pos++) {
        g_assert_cmphex(area[pos], ==, IN_FILL);
    }
    g_assert_cmpuint(ans->used_len, <=, ans->writable_len);
}

/* The common shape: one readable and one writable descriptor */
static void iommu_send1(Iommu *m, const void *req, size_t req_len,
                        size_t writable_len, Answer *ans)
{
    iommu_send(m, req, &req_len, 1, &writable_len, 1, ans);
}

/*
 * The status of an answer whose tail ends at @expected_used_len, the used
 * length: 4 for every request but PROBE.  The tail's reserved bytes must be
 * zero.
 */
static uint8_t answer_status(const Answer *ans, uint32_t expected_used_len)
{
    const uint8_t *tail;

    g_assert_cmpuint(ans->used_len, ==, expected_used_len);
    tail = ans->buf + ans->used_len - TAIL_SIZE;
    for (int i = 1; i < TAIL_SIZE; i++) {
        g_assert_cmphex(tail[i], ==, 0);
    }
    return tail[0];
}

/* The writable bytes from @from on were left alone */
static void assert_untouched(const Answer *ans, size_t from)
{
    for (size_t i = from; i < ans->writable_len; i++) {
        g_assert_cmphex(ans->buf[i], ==, IN_FILL);
    }
}

/* Send @req_len bytes with a bare tail as the writable part */
static uint8_t send_raw(Iommu *m, const void *req, size_t req_len)
{
    Answer ans;

    iommu_send1(m, req, req_len, TAIL_SIZE, &ans);
    return answer_status(&ans, TAIL_SIZE);
}

/*
 * Whether [start, end] of @domain holds a mapping, found the way a driver
 * can see it: a MAP of exactly that range is INVAL (overlap) when it does;
 * when it does not, the probe mapping is taken away again.
 */
static bool is_mapped(Iommu *m, uint32_t domain, uint64_t start, uint64_t end)
{
    uint8_t status = map(m, domain, start, end, 0, R);

    if (status == S_OK) {
        assert_status(unmap(m, domain, start, end), S_OK);
        return false;
    }
    assert_status(status, S_INVAL);
    return true;
}

/* PROBE with a full-size answer buffer; @props gets the property bytes */
static uint8_t probe(Iommu *m, uint32_t ep, uint8_t props[PROBE_SIZE])
{
    uint8_t buf[PROBE_LEN];
    Answer ans;
    uint8_t status;

    iommu_send1(m, buf, enc_probe(buf, ep), PROBE_ANSWER_SIZE, &ans);
    status = answer_status(&ans, PROBE_ANSWER_SIZE);
    memcpy(props, ans.buf, PROBE_SIZE);
    return status;
}

/*
 * The properties the C device writes for an endpoint whose only reserved
 * region is q35's MSI window: one VIRTIO_IOMMU_PROBE_T_RESV_MEM property
 * (length 20, excluding its 4-byte header), then zeroes.
 */
static void expected_probe_props(uint8_t props[PROBE_SIZE])
{
    struct virtio_iommu_probe_resv_mem prop = {
        .head.type = cpu_to_le16(VIRTIO_IOMMU_PROBE_T_RESV_MEM),
        .head.length = cpu_to_le16(sizeof(prop) - sizeof(prop.head)),
        .subtype = VIRTIO_IOMMU_RESV_MEM_T_MSI,
        .start = cpu_to_le64(msi_start()),
        .end = cpu_to_le64(msi_end()),
    };

    QEMU_BUILD_BUG_ON(sizeof(prop) != 24);
    memset(props, 0, PROBE_SIZE);
    memcpy(props, &prop, sizeof(prop));
}

static void assert_zeroes(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        g_assert_cmphex(buf[i], ==, 0);
    }
}

/* ---- cases for each device ---------------------------------------------- */

static void test_attach_detach(const TestCase *tc)
{
    uint8_t buf[ATTACH_LEN];
    Iommu m;

    iommu_start(&m, tc->device);

    assert_status(attach(&m, 1, EP_A), S_OK);
    /* No device behind these ids */
    assert_status(attach(&m, 1, EP_EMPTY_SLOT), S_NOENT);
    assert_status(attach(&m, 1, EP_NO_BUS), S_NOENT);
    assert_status(detach(&m, 1, EP_EMPTY_SLOT), S_NOENT);
    /*
     * A device that exists but was never attached: NOENT, since C keeps
     * no record of unattached endpoints (the spec would allow INVAL).
     */
    assert_status(detach(&m, 1, EP_B), S_NOENT);

    /* ATTACH moves the endpoint: it is in domain 2 and no longer in 1 */
    assert_status(attach(&m, 2, EP_A), S_OK);
    assert_status(detach(&m, 1, EP_A), S_INVAL);
    assert_status(detach(&m, 3, EP_A), S_INVAL);
    assert_status(detach(&m, 2, EP_A), S_OK);
    assert_status(detach(&m, 2, EP_A), S_NOENT);

    /* Domain ids span all of u32 (domain_range is [0, UINT32_MAX]) */
    assert_status(attach(&m, 0, EP_A), S_OK);
    assert_status(attach(&m, UINT32_MAX, EP_B), S_OK);
    assert_status(map(&m, UINT32_MAX, 0, 0xfff, 0x5000, RW), S_OK);
    assert_status(map(&m, 0, 0, 0xfff, 0x5000, RW), S_OK);
    assert_status(detach(&m, UINT32_MAX, EP_B), S_OK);
    assert_status(detach(&m, 0, EP_A), S_OK);

    /* The head's reserved bytes are ignored (spec: MUST ignore) */
    enc_attach(buf, 5, EP_C, 0);
    buf[1] = 1;
    buf[2] = 2;
    buf[3] = 3;
    assert_status(send_raw(&m, buf, ATTACH_LEN), S_OK);
    /* So are DETACH's */
    enc_detach(buf, 5, EP_C);
    memset(buf + offsetof(struct virtio_iommu_req_detach, reserved), 0xff,
           sizeof_field(struct virtio_iommu_req_detach, reserved));
    assert_status(send_raw(&m, buf, DETACH_LEN), S_OK);
    assert_status(detach(&m, 5, EP_C), S_NOENT);

    iommu_stop(&m);
}

/* Domains live as long as an endpoint is attached to them */
static void test_domain_lifetime(const TestCase *tc)
{
    Iommu m;

    iommu_start(&m, tc->device);

    /* DETACH of the last endpoint frees the domain with its mappings */
    assert_status(attach(&m, 3, EP_A), S_OK);
    assert_status(attach(&m, 3, EP_B), S_OK);
    assert_status(map(&m, 3, 0x1000, 0x1fff, 0xa000, RW), S_OK);
    assert_status(detach(&m, 3, EP_A), S_OK);
    g_assert_true(is_mapped(&m, 3, 0x1000, 0x1fff));    /* EP_B keeps it */
    assert_status(detach(&m, 3, EP_B), S_OK);
    assert_status(map(&m, 3, 0x1000, 0x1fff, 0xa000, RW), S_NOENT);
    assert_status(unmap(&m, 3, 0x1000, 0x1fff), S_NOENT);
    /* Attaching again creates it anew, empty */
    assert_status(attach(&m, 3, EP_A), S_OK);
    g_assert_false(is_mapped(&m, 3, 0x1000, 0x1fff));
    assert_status(detach(&m, 3, EP_A), S_OK);

    /* ATTACH moving the last endpoint away frees the domain too */
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, RW), S_OK);
    assert_status(attach(&m, 2, EP_B), S_OK);
    assert_status(map(&m, 2, 0x4000, 0x4fff, 0xe000, RW), S_OK);
    assert_status(attach(&m, 2, EP_A), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, RW), S_NOENT);
    g_assert_true(is_mapped(&m, 2, 0x4000, 0x4fff));
    /* Domain 1 comes back empty */
    assert_status(attach(&m, 1, EP_C), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, RW), S_OK);

    /* Leaving a domain another endpoint is in keeps it and its mappings */
    assert_status(attach(&m, 1, EP_A), S_OK);           /* 2 -> 1 */
    g_assert_true(is_mapped(&m, 2, 0x4000, 0x4fff));    /* EP_B is in 2 */

    /*
     * Re-attaching an endpoint alone in its domain to that same domain: C
     * detaches first, frees the emptied domain and creates it anew, so the
     * mappings are gone (docs/requests.md: kept as in C).
     */
    assert_status(attach(&m, 2, EP_B), S_OK);
    g_assert_false(is_mapped(&m, 2, 0x4000, 0x4fff));
    /* With another endpoint in it, the domain survives the re-attach */
    assert_status(attach(&m, 1, EP_A), S_OK);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1fff));

    iommu_stop(&m);
}

static void test_attach_flags(const TestCase *tc)
{
    static const uint32_t bad_flags[] = { 2, 3, 0x100, 0x80000000 };
    Iommu m;

    iommu_start(&m, tc->device);

    for (size_t i = 0; i < ARRAY_SIZE(bad_flags); i++) {
        note("flags 0x%x", bad_flags[i]);
        assert_status(attach_flags(&m, 1, EP_A, bad_flags[i]), S_INVAL);
        /* Checked before the endpoint */
        assert_status(attach_flags(&m, 1, EP_EMPTY_SLOT, bad_flags[i]),
                      S_INVAL);
    }
    note_clear();
    /* Nothing happened: no domain, no record of the endpoint */
    assert_status(map(&m, 1, 0, 0xfff, 0, R), S_NOENT);
    assert_status(detach(&m, 1, EP_A), S_NOENT);

    iommu_stop(&m);
}

/*
 * Which ids are endpoints: every PCI function on the IOMMU's root bus,
 * including the machine's own devices and the IOMMU itself, and nothing
 * else.
 */
static void test_endpoint_ids(const TestCase *tc)
{
    /* q35's LPC bridge is the last: virt has no device there */
    static const uint32_t known[] = {
        EP_HOST_BRIDGE, IOMMU_DEVFN, EP_A, EP_B, EP_C, EP_LPC,
    };
    static const uint32_t unknown[] = {
        EP_EMPTY_SLOT, EP_NO_BUS, QPCI_DEVFN(0x1e, 7), 0xffff,
    };
    const size_t n_known = ARRAY_SIZE(known) - (on_arm() ? 1 : 0);
    uint8_t props[PROBE_SIZE];
    Iommu m;

    iommu_start(&m, tc->device);

    for (size_t i = 0; i < n_known; i++) {
        note("endpoint 0x%x", known[i]);
        assert_status(attach(&m, 1, known[i]), S_OK);
        assert_status(probe(&m, known[i], props), S_OK);
    }
    for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
        note("endpoint 0x%x", unknown[i]);
        assert_status(attach(&m, 1, unknown[i]), S_NOENT);
        assert_status(probe(&m, unknown[i], props), S_NOENT);
    }
    note_clear();
    for (size_t i = 0; i < n_known; i++) {
        note("endpoint 0x%x", known[i]);
        assert_status(detach(&m, 1, known[i]), S_OK);
    }
    note_clear();

    iommu_stop(&m);
}

static void test_map(const TestCase *tc)
{
    static const uint64_t overlaps[][2] = {
        { 0x1000, 0x1fff },     /* the same */
        { 0x0, 0x1000 },        /* its first byte */
        { 0x1fff, 0x2fff },     /* its last byte */
        { 0x1400, 0x14ff },     /* inside */
        { 0x0, INPUT_END },     /* around */
    };
    static const uint32_t bad_flags[] = { 8, 0x10 | R, 0x80000000 };
    Iommu m;

    iommu_start(&m, tc->device);

    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, R), S_NOENT);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 9, 0x1000, 0x1fff, 0xa000, R), S_NOENT);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, R), S_OK);

    for (size_t i = 0; i < ARRAY_SIZE(overlaps); i++) {
        note("[0x%" PRIx64 ", 0x%" PRIx64 "]", overlaps[i][0], overlaps[i][1]);
        assert_status(map(&m, 1, overlaps[i][0], overlaps[i][1], 0, RW),
                      S_INVAL);
    }
    note_clear();
    /* Touching is not overlapping */
    assert_status(map(&m, 1, 0x0, 0xfff, 0, W), S_OK);
    assert_status(map(&m, 1, 0x2000, 0x2fff, 0, RW), S_OK);

    /* Unknown flags, checked before the domain */
    for (size_t i = 0; i < ARRAY_SIZE(bad_flags); i++) {
        note("flags 0x%x", bad_flags[i]);
        assert_status(map(&m, 1, 0x8000, 0x8fff, 0, bad_flags[i]), S_INVAL);
        assert_status(map(&m, 9, 0x8000, 0x8fff, 0, bad_flags[i]), S_INVAL);
    }
    note_clear();
    g_assert_false(is_mapped(&m, 1, 0x8000, 0x8fff));
    /* Every combination of the known flags, including none */
    for (uint32_t flags = 0; flags <= (R | W | MMIO); flags++) {
        uint64_t start = 0x10000 + flags * 0x1000;

        note("flags 0x%x", flags);
        assert_status(map(&m, 1, start, start + 0xfff, 0xc0000000, flags),
                      S_OK);
    }
    note_clear();

    /* Domains are separate address spaces */
    assert_status(attach(&m, 2, EP_B), S_OK);
    assert_status(map(&m, 2, 0x1000, 0x1fff, 0xb000, RW), S_OK);

    /* The top of the input range, and a phys range that wraps (unchecked) */
    assert_status(map(&m, 1, INPUT_END - 0xfff, INPUT_END, UINT64_MAX, RW),
                  S_OK);
    assert_status(map(&m, 1, INPUT_END, INPUT_END, 0, R), S_INVAL);
    /* All of the input range in one mapping */
    assert_status(attach(&m, 3, EP_C), S_OK);
    assert_status(map(&m, 3, 0, INPUT_END, 0, RW), S_OK);
    assert_status(map(&m, 3, 0x1234, 0x1234, 0, RW), S_INVAL);

    iommu_stop(&m);
}

/*
 * Any byte granularity is accepted (as in C; the spec would let the device
 * refuse ranges not aligned to the page size with RANGE).
 */
static void test_map_unaligned(const TestCase *tc)
{
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);

    assert_status(map(&m, 1, 0x1001, 0x1001, 0x7, R), S_OK);
    assert_status(map(&m, 1, 0x1002, 0x2ffe, 0x3, W), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1000, 0x0, R), S_OK);
    assert_status(map(&m, 1, 0x2fff, 0x2fff, 0x0, R), S_OK);
    assert_status(map(&m, 1, 0x1001, 0x1001, 0x0, R), S_INVAL);
    assert_status(map(&m, 1, 0x2ffe, 0x2fff, 0x0, R), S_INVAL);
    /* Unmap them with unaligned ranges too */
    assert_status(unmap(&m, 1, 0x1001, 0x1001), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1001, 0x1001));
    assert_status(unmap(&m, 1, 0x1002, 0x2ffe), S_OK);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1000));
    g_assert_true(is_mapped(&m, 1, 0x2fff, 0x2fff));

    iommu_stop(&m);
}

static void test_unmap(const TestCase *tc)
{
    uint8_t buf[UNMAP_LEN];
    Iommu m;

    iommu_start(&m, tc->device);

    assert_status(unmap(&m, 1, 0, 0xfff), S_NOENT);
    assert_status(attach(&m, 1, EP_A), S_OK);
    /* Nothing to remove is fine, even beyond the input range */
    assert_status(unmap(&m, 1, 0, INPUT_END), S_OK);
    assert_status(unmap(&m, 1, 0, UINT64_MAX), S_OK);

    /* Exact range */
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0, R), S_OK);
    assert_status(unmap(&m, 1, 0x1000, 0x1fff), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));

    /* A range that would split a mapping: RANGE, the mapping stays */
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0, R), S_OK);
    assert_status(unmap(&m, 1, 0x1000, 0x17ff), S_RANGE);
    assert_status(unmap(&m, 1, 0x1800, 0x1fff), S_RANGE);
    assert_status(unmap(&m, 1, 0x1800, 0x1800), S_RANGE);
    assert_status(unmap(&m, 1, 0x0800, 0x1800), S_RANGE);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1fff));

    /* Reserved bytes are ignored (as in C) */
    enc_unmap(buf, 1, 0, 0x1fff);
    memset(buf + offsetof(struct virtio_iommu_req_unmap, reserved), 0xff,
           sizeof_field(struct virtio_iommu_req_unmap, reserved));
    assert_status(send_raw(&m, buf, UNMAP_LEN), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));

    /* A range covering several mappings removes all of them, only them */
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0, R), S_OK);
    assert_status(map(&m, 1, 0x3000, 0x3fff, 0, MMIO), S_OK);
    assert_status(map(&m, 1, 0x4000, 0x43ff, 0, 0), S_OK);
    assert_status(map(&m, 1, 0x9000, 0x9fff, 0, R), S_OK);
    assert_status(unmap(&m, 1, 0x800, 0x4800), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));
    g_assert_false(is_mapped(&m, 1, 0x3000, 0x3fff));
    g_assert_false(is_mapped(&m, 1, 0x4000, 0x43ff));
    g_assert_true(is_mapped(&m, 1, 0x9000, 0x9fff));

    /* The spec's examples (5.13.6.6) that do not split anything */
    assert_status(map(&m, 1, 0, 4, 0xb1000, R), S_OK);
    assert_status(map(&m, 1, 5, 9, 0xb2000, R), S_OK);
    assert_status(unmap(&m, 1, 0, 9), S_OK);                  /* both */
    assert_status(map(&m, 1, 0, 4, 0xd1000, R), S_OK);
    assert_status(map(&m, 1, 5, 9, 0xd2000, R), S_OK);
    assert_status(unmap(&m, 1, 0, 4), S_OK);                  /* [0,4] */
    g_assert_true(is_mapped(&m, 1, 5, 9));
    assert_status(unmap(&m, 1, 0, 14), S_OK);                 /* [5,9] */
    assert_status(map(&m, 1, 0, 9, 0xc1000, R), S_OK);
    assert_status(unmap(&m, 1, 0, 4), S_RANGE);               /* nothing */
    assert_status(unmap(&m, 1, 0, 10), S_OK);

    /* Everything at once */
    assert_status(map(&m, 1, INPUT_END - 0xfff, INPUT_END, 0, R), S_OK);
    assert_status(unmap(&m, 1, 0, UINT64_MAX), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x9000, 0x9fff));
    g_assert_false(is_mapped(&m, 1, INPUT_END - 0xfff, INPUT_END));

    iommu_stop(&m);
}

static void test_bypass_domain(const TestCase *tc)
{
    Iommu m;

    iommu_start(&m, tc->device);

    assert_status(attach_flags(&m, 5, EP_A, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_OK);
    assert_status(attach_flags(&m, 5, EP_B, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_OK);
    /* A bypass domain has no mappings to change */
    assert_status(map(&m, 5, 0, 0xfff, 0, RW), S_INVAL);
    assert_status(unmap(&m, 5, 0, 0xfff), S_INVAL);
    assert_status(unmap(&m, 5, 0, UINT64_MAX), S_INVAL);

    /*
     * An endpoint that is attached nowhere asking for the other kind: INVAL
     * on both (what happens to an attached one is difference 4).
     */
    assert_status(attach(&m, 5, EP_C), S_INVAL);
    /* ...and the same the other way round */
    assert_status(attach(&m, 6, EP_C), S_OK);
    assert_status(attach_flags(&m, 6, EP_A, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_INVAL);

    assert_status(detach(&m, 5, EP_B), S_OK);
    /*
     * EP_A is now alone in 5: asking for the other kind detaches it first,
     * which frees the domain, so it is created again as a normal domain
     * (as in C).
     */
    assert_status(attach(&m, 5, EP_A), S_OK);
    assert_status(map(&m, 5, 0, 0xfff, 0, RW), S_OK);

    iommu_stop(&m);
}

static void test_probe(const TestCase *tc)
{
    static const uint32_t eps[] = { EP_A, EP_B, IOMMU_DEVFN };
    uint8_t expected[PROBE_SIZE], props[PROBE_SIZE];
    uint8_t buf[PROBE_LEN];
    Answer ans;
    Iommu m;

    iommu_start(&m, tc->device);
    expected_probe_props(expected);

    for (size_t i = 0; i < ARRAY_SIZE(eps); i++) {
        note("endpoint 0x%x", eps[i]);
        assert_status(probe(&m, eps[i], props), S_OK);
        g_assert_cmpmem(props, PROBE_SIZE, expected, PROBE_SIZE);
    }
    note_clear();

    /* PROBE changes nothing, and the answer does not depend on the state */
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, msi_start(), msi_end(), msi_start(), RW), S_OK);
    assert_status(probe(&m, EP_A, props), S_OK);
    g_assert_cmpmem(props, PROBE_SIZE, expected, PROBE_SIZE);
    assert_status(detach(&m, 1, EP_A), S_OK);

    /* Unknown endpoint: a full-size answer, properties all zero */
    assert_status(probe(&m, EP_EMPTY_SLOT, props), S_NOENT);
    assert_zeroes(props, PROBE_SIZE);

    /* A larger buffer gets the same answer; the rest is left alone */
    iommu_send1(&m, buf, enc_probe(buf, EP_B), 1024, &ans);
    assert_status(answer_status(&ans, PROBE_ANSWER_SIZE), S_OK);
    g_assert_cmpmem(ans.buf, PROBE_SIZE, expected, PROBE_SIZE);
    assert_untouched(&ans, PROBE_ANSWER_SIZE);

    /* The request's reserved bytes are ignored (spec: MUST ignore) */
    enc_probe(buf, EP_B);
    memset(buf + offsetof(struct virtio_iommu_req_probe, reserved), 0xaa,
           sizeof_field(struct virtio_iommu_req_probe, reserved));
    buf[1] = 0x55;
    iommu_send1(&m, buf, PROBE_LEN, PROBE_ANSWER_SIZE, &ans);
    assert_status(answer_status(&ans, PROBE_ANSWER_SIZE), S_OK);
    g_assert_cmpmem(ans.buf, PROBE_SIZE, expected, PROBE_SIZE);

    iommu_stop(&m);
}

static void test_probe_bad_buffers(const TestCase *tc)
{
    static const size_t small[] = { TAIL_SIZE, 5, 100, PROBE_SIZE,
                                    PROBE_ANSWER_SIZE - 1 };
    static const size_t truncated[] = { 4, 8, PROBE_LEN - 1 };
    uint8_t buf[PROBE_LEN];
    Answer ans;
    Iommu m;

    iommu_start(&m, tc->device);

    /*
     * No room for probe_size bytes and the tail: a lone DEVERR tail at
     * offset 0, whatever the request (as in C; the spec would say INVAL).
     * C writes as much of the properties as fits before overwriting the
     * start with that tail, so the bytes after the used length are not
     * compared.
     */
    for (size_t i = 0; i < ARRAY_SIZE(small); i++) {
        note("writable %zu", small[i]);
        iommu_send1(&m, buf, enc_probe(buf, EP_A), small[i], &ans);
        assert_status(answer_status(&ans, TAIL_SIZE), S_DEVERR);
        iommu_send1(&m, buf, enc_probe(buf, EP_EMPTY_SLOT), small[i], &ans);
        assert_status(answer_status(&ans, TAIL_SIZE), S_DEVERR);
        iommu_send1(&m, buf, 8, small[i], &ans);
        assert_status(answer_status(&ans, TAIL_SIZE), S_DEVERR);
    }
    note_clear();

    /* Truncated request with room to answer: INVAL in a full answer */
    for (size_t i = 0; i < ARRAY_SIZE(truncated); i++) {
        note("readable %zu", truncated[i]);
        iommu_send1(&m, buf, truncated[i], PROBE_ANSWER_SIZE, &ans);
        assert_status(answer_status(&ans, PROBE_ANSWER_SIZE), S_INVAL);
        assert_zeroes(ans.buf, PROBE_SIZE);
    }
    note_clear();

    iommu_stop(&m);
}

/*
 * Unknown request types: UNSUPP (as in C; the spec says SHOULD NOT write
 * the buffer and return used length 0), a tail alone whatever the room.
 */
static void test_unknown_type(const TestCase *tc)
{
    static const uint8_t types[] = { 0, 6, 0x7f, 0x80, 0xff };
    uint8_t buf[ATTACH_LEN];
    Answer ans;
    Iommu m;

    iommu_start(&m, tc->device);

    for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
        note("type 0x%x", types[i]);
        enc_attach(buf, 1, EP_A, 0);
        buf[0] = types[i];
        assert_status(send_raw(&m, buf, ATTACH_LEN), S_UNSUPP);
        /* A bare head */
        assert_status(send_raw(&m, buf, TAIL_SIZE), S_UNSUPP);
        iommu_send1(&m, buf, ATTACH_LEN, PROBE_ANSWER_SIZE, &ans);
        assert_status(answer_status(&ans, TAIL_SIZE), S_UNSUPP);
        assert_untouched(&ans, TAIL_SIZE);
    }
    note_clear();
    /* Nothing was attached */
    assert_status(detach(&m, 1, EP_A), S_NOENT);

    iommu_stop(&m);
}

/*
 * A request shorter than its type's structure: INVAL (as in C; the spec
 * would have the buffer returned unwritten), and nothing is done.
 */
static void test_truncated(const TestCase *tc)
{
    uint8_t reqs[4][MAP_LEN];
    size_t lens[4];
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, 0, 0xfff, 0, RW), S_OK);

    lens[0] = enc_attach(reqs[0], 2, EP_B, 0);
    lens[1] = enc_detach(reqs[1], 1, EP_A);
    lens[2] = enc_map(reqs[2], 1, 0x1000, 0x1fff, 0, RW);
    lens[3] = enc_unmap(reqs[3], 1, 0, 0xfff);
    for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
        size_t cut[] = { TAIL_SIZE, TAIL_SIZE + 1, 8, lens[i] - 1 };

        for (size_t j = 0; j < ARRAY_SIZE(cut); j++) {
            note("type %u, %zu of %zu bytes", reqs[i][0], cut[j], lens[i]);
            assert_status(send_raw(&m, reqs[i], cut[j]), S_INVAL);
        }
    }
    note_clear();

    /* None of them happened */
    assert_status(detach(&m, 2, EP_B), S_NOENT);
    g_assert_true(is_mapped(&m, 1, 0, 0xfff));
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));
    assert_status(detach(&m, 1, EP_A), S_OK);

    iommu_stop(&m);
}

/* Bytes after a type's structure are ignored, and the answer is a tail */
static void test_trailing_bytes(const TestCase *tc)
{
    uint8_t expected[PROBE_SIZE];
    uint8_t buf[256];
    size_t len;
    Answer ans;
    Iommu m;

    iommu_start(&m, tc->device);
    expected_probe_props(expected);

    memset(buf, 0xff, sizeof(buf));
    len = enc_attach(buf, 1, EP_A, 0);
    assert_status(send_raw(&m, buf, len + 100), S_OK);

    memset(buf, 0xff, sizeof(buf));
    len = enc_map(buf, 1, 0x1000, 0x1fff, 0, RW);
    iommu_send1(&m, buf, len + 1, 4096, &ans);
    assert_status(answer_status(&ans, TAIL_SIZE), S_OK);
    assert_untouched(&ans, TAIL_SIZE);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1fff));

    memset(buf, 0xff, sizeof(buf));
    len = enc_unmap(buf, 1, 0x1000, 0x1fff);
    assert_status(send_raw(&m, buf, len + 8), S_OK);
    g_assert_false(is_mapped(&m, 1, 0x1000, 0x1fff));

    memset(buf, 0xff, sizeof(buf));
    len = enc_probe(buf, EP_A);
    iommu_send1(&m, buf, len + 16, PROBE_ANSWER_SIZE, &ans);
    assert_status(answer_status(&ans, PROBE_ANSWER_SIZE), S_OK);
    g_assert_cmpmem(ans.buf, PROBE_SIZE, expected, PROBE_SIZE);

    memset(buf, 0xff, sizeof(buf));
    len = enc_detach(buf, 1, EP_A);
    assert_status(send_raw(&m, buf, len + 3), S_OK);
    assert_status(detach(&m, 1, EP_A), S_NOENT);

    iommu_stop(&m);
}

/*
 * A driver may scatter a request and its answer over any number of
 * descriptors; the device sees their concatenation.
 */
static void test_split_descriptors(const TestCase *tc)
{
    static const size_t attach_out[] = { 1, 3, 7, 9 };
    static const size_t map_out[] = { 2, 0, 20, 14 };
    static const size_t tail_in[] = { 1, 1, 2 };
    static const size_t probe_out[] = { 4, 4, 64 };
    static const size_t probe_in[] = { 100, 412, 3, 1 };
    uint8_t expected[PROBE_SIZE];
    uint8_t buf[PROBE_LEN];
    Answer ans;
    Iommu m;

    iommu_start(&m, tc->device);
    expected_probe_props(expected);

    enc_attach(buf, 1, EP_A, 0);
    iommu_send(&m, buf, attach_out, ARRAY_SIZE(attach_out),
               tail_in, ARRAY_SIZE(tail_in), &ans);
    assert_status(answer_status(&ans, TAIL_SIZE), S_OK);

    enc_map(buf, 1, 0x1000, 0x1fff, 0, RW);
    iommu_send(&m, buf, map_out, ARRAY_SIZE(map_out),
               tail_in, ARRAY_SIZE(tail_in), &ans);
    assert_status(answer_status(&ans, TAIL_SIZE), S_OK);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1fff));

    enc_probe(buf, EP_A);
    iommu_send(&m, buf, probe_out, ARRAY_SIZE(probe_out),
               probe_in, ARRAY_SIZE(probe_in), &ans);
    assert_status(answer_status(&ans, PROBE_ANSWER_SIZE), S_OK);
    g_assert_cmpmem(ans.buf, PROBE_SIZE, expected, PROBE_SIZE);

    iommu_stop(&m);
}

/*
 * No head to read or no room for a tail: the device cannot answer at all.
 * It flags a virtio error (NEEDS_RESET, VERSION_1 being negotiated) and
 * keeps the buffer, and the driver has to reset it.
 */
static void test_bad_head_tail(const TestCase *tc)
{
    static const struct {
        size_t readable, writable;
    } shapes[] = {
        { 0, TAIL_SIZE },
        { 3, TAIL_SIZE },
        { ATTACH_LEN, 0 },
        { ATTACH_LEN, 3 },
    };
    uint8_t buf[ATTACH_LEN];
    Iommu m;

    iommu_start(&m, tc->device);
    enc_attach(buf, 1, EP_A, 0);

    for (size_t i = 0; i < ARRAY_SIZE(shapes); i++) {
        const uint8_t expected = VIRTIO_CONFIG_S_ACKNOWLEDGE |
            VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
            VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET;
        uint16_t before = used_idx(&m);
        gint64 deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
        uint8_t status;

        note("readable %zu, writable %zu", shapes[i].readable,
             shapes[i].writable);
        iommu_post(&m, buf, &shapes[i].readable, 1, &shapes[i].writable, 1);
        do {
            status = iommu_status(m.dev);
        } while (!(status & VIRTIO_CONFIG_S_NEEDS_RESET) &&
                 g_get_monotonic_time() < deadline);
        if (status != expected) {
            g_error("device status 0x%x instead of 0x%x after a request of "
                    "%s", status, expected, case_note);
        }
        g_assert_cmpuint(used_idx(&m), ==, before);

        /* What a driver does next: reset and start over */
        iommu_driver_fini(&m);
        iommu_driver_init(&m, REQUIRED_FEATURES);
        assert_status(attach(&m, 1, EP_A), S_OK);
    }
    note_clear();

    iommu_stop(&m);
}

/*
 * A batch whose second chain breaks the device (issue 14): one kick makes
 * a valid MAP and a bad chain available, either with only 2 readable
 * bytes (the device's check) or with a readable buffer outside guest
 * memory (the virtio core cannot map it, @unmappable).  The MAP is carried
 * out, so it must be answered (used index + 1, status OK) before the bad
 * chain marks the device NEEDS_RESET; after the driver's reset the mapping
 * is still there (a virtio reset keeps domains), so the same MAP is INVAL.
 */
static void answer_before_break(const TestCase *tc, bool unmappable)
{
    const uint8_t expected = VIRTIO_CONFIG_S_ACKNOWLEDGE |
        VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
        VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET;
    uint8_t req[MAP_LEN], tail[TAIL_SIZE];
    gint64 deadline;
    QVirtQueue *vq;
    uint64_t map_out, map_in, bad_out, bad_in, elem;
    uint32_t map_head, bad_head;
    uint16_t before, avail;
    uint8_t status;
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);

    vq = m.reqq;
    vq->free_head = 0;
    vq->num_free = vq->size;
    map_out = m.out_area;
    map_in = m.in_area;
    bad_out = m.out_area + 0x100;
    bad_in = m.in_area + 0x100;
    qtest_memwrite(m.qts, map_out, req, enc_map(req, 1, 0x10000, 0x10fff,
                                                0x200000, RW));
    qtest_memset(m.qts, map_in, IN_FILL, TAIL_SIZE);
    qtest_memset(m.qts, bad_out, VIRTIO_IOMMU_T_MAP, 2);
    qtest_memset(m.qts, bad_in, IN_FILL, TAIL_SIZE);
    map_head = qvirtqueue_add(m.qts, vq, map_out, MAP_LEN, false, true);
    qvirtqueue_add(m.qts, vq, map_in, TAIL_SIZE, true, false);
    /*
     * Unmappable: 1 TiB, far above RAM, where nothing is; the core maps
     * such a buffer through a bounce buffer of 4 KiB, which 12 KiB
     * overflow.
     */
    bad_head = qvirtqueue_add(m.qts, vq, unmappable ? 1ULL << 40 : bad_out,
                              unmappable ? 0x3000 : 2, false, true);
    qvirtqueue_add(m.qts, vq, bad_in, TAIL_SIZE, true, false);

    /*
     * The MAP goes into the available ring without a notification; the
     * kick of the bad chain then makes the device see both at once.
     */
    before = used_idx(&m);
    avail = qtest_readw(m.qts, vq->avail + 2);
    qtest_writew(m.qts, vq->avail + 4 + 2 * (avail % vq->size), map_head);
    qvirtqueue_set_avail_idx(m.qts, &m.dev->vdev, vq, avail + 1);
    qvirtqueue_kick(m.qts, &m.dev->vdev, vq, bad_head);

    deadline = g_get_monotonic_time() + REQUEST_TIMEOUT_US;
    do {
        status = iommu_status(m.dev);
    } while (!(status & VIRTIO_CONFIG_S_NEEDS_RESET) &&
             g_get_monotonic_time() < deadline);
    g_assert_cmphex(status, ==, expected);

    /* The MAP was answered, the bad chain was not */
    g_assert_cmpuint(used_idx(&m), ==, (uint16_t)(before + 1));
    elem = m.reqq->used + 4 + sizeof(struct vring_used_elem) *
           (before % vq->size);
    g_assert_cmpuint(qtest_readl(m.qts, elem), ==, map_head);
    g_assert_cmpuint(qtest_readl(m.qts, elem + 4), ==, TAIL_SIZE);
    qtest_memread(m.qts, map_in, tail, TAIL_SIZE);
    assert_status(tail[0], S_OK);
    qtest_memread(m.qts, bad_in, tail, TAIL_SIZE);
    g_assert_cmphex(tail[0], ==, IN_FILL);

    iommu_driver_fini(&m);
    iommu_driver_init(&m, REQUIRED_FEATURES);
    assert_status(map(&m, 1, 0x10000, 0x10fff, 0x200000, RW), S_INVAL);
    iommu_stop(&m);
}

static void test_answer_before_break(const TestCase *tc)
{
    answer_before_break(tc, false);
}

static void test_answer_before_unmappable(const TestCase *tc)
{
    answer_before_break(tc, true);
}

/* ---- the documented differences, per device ----------------------------- */

/*
 * Difference 1: UNMAP of [0, 0x27ff] over [0x1000, 0x1fff] and
 * [0x2000, 0x2fff], inserted in that order.  C's GTree then has the first
 * mapping at its root, so its interval lookup meets it first, removes it,
 * and only then finds the second in the way and answers RANGE.  Ours
 * answers RANGE and removes nothing (spec 5.13.6.6.2: SHOULD NOT remove).
 */
static void test_diff_unmap_atomic(const TestCase *tc)
{
    const DeviceDifferences *diff = differences(tc->device);
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, R), S_OK);
    assert_status(map(&m, 1, 0x2000, 0x2fff, 0xb000, R), S_OK);

    assert_status(unmap(&m, 1, 0, 0x27ff), S_RANGE);
    /* The mapping in the way stays on both */
    g_assert_true(is_mapped(&m, 1, 0x2000, 0x2fff));
    g_assert_cmpint(is_mapped(&m, 1, 0x1000, 0x1fff), ==,
                    !diff->unmap_range_removes_covered);

    iommu_stop(&m);
}

/*
 * Difference 2: ATTACH's reserved bytes.  C ignores them; ours rejects the
 * request (spec 5.13.6.3.2: MUST reject with INVAL).  Unknown flags are no
 * difference: INVAL on both.
 */
static void test_diff_attach_reserved(const TestCase *tc)
{
    const DeviceDifferences *diff = differences(tc->device);
    const size_t reserved = offsetof(struct virtio_iommu_req_attach, reserved);
    uint8_t buf[ATTACH_LEN];
    Iommu m;

    iommu_start(&m, tc->device);

    enc_attach(buf, 1, EP_A, 0);
    buf[reserved] = 1;
    assert_status(send_raw(&m, buf, ATTACH_LEN), diff->attach_reserved_status);
    enc_attach(buf, 1, EP_A, 0);
    buf[reserved + 3] = 0x80;
    assert_status(send_raw(&m, buf, ATTACH_LEN), diff->attach_reserved_status);
    /* Whether the endpoint got attached follows the status */
    assert_status(detach(&m, 1, EP_A),
                  diff->attach_reserved_status == S_OK ? S_OK : S_NOENT);

    assert_status(attach_flags(&m, 1, EP_A, 2), S_INVAL);
    assert_status(detach(&m, 1, EP_A), S_NOENT);

    iommu_stop(&m);
}

/*
 * Difference 3: MAP of a reversed range or of one not inside input_range
 * ([0, 2^39 - 1] here).  C accepts them; ours answers RANGE (spec 5.13.6:
 * mappings outside the input range fail).  One domain per shape, as C's
 * tree compares reversed intervals oddly.
 */
static void test_diff_map_range(const TestCase *tc)
{
    uint8_t expected = differences(tc->device)->map_bad_range_status;
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(attach(&m, 2, EP_B), S_OK);
    assert_status(attach(&m, 3, EP_C), S_OK);

    /* Reversed */
    assert_status(map(&m, 1, 0x2000, 0x1fff, 0, R), expected);
    assert_status(map(&m, 1, UINT64_MAX, 0, 0, R), expected);
    /* Beyond the input range, next to a valid mapping at its top */
    assert_status(map(&m, 2, INPUT_END - 0xfff, INPUT_END, 0, R), S_OK);
    assert_status(map(&m, 2, INPUT_END + 1, INPUT_END + 0x1000, 0, R),
                  expected);
    assert_status(map(&m, 2, UINT64_MAX - 0xfff, UINT64_MAX, 0, R), expected);
    /* Straddling its end */
    assert_status(map(&m, 3, INPUT_END - 0xfff, INPUT_END + 0x1000, 0, R),
                  expected);
    /* Whether it was added follows the status */
    g_assert_cmpint(is_mapped(&m, 3, INPUT_END - 0xfff, INPUT_END), ==,
                    expected == S_OK);

    iommu_stop(&m);
}

/*
 * Difference 4: ATTACH refused because the domain's kind (bypass or not)
 * differs from the flag.  C detaches the endpoint before it finds out, so
 * the endpoint ends up attached nowhere and its old domain, emptied, is
 * freed with its mappings.  Ours refuses before changing anything.
 */
static void test_diff_failed_attach(const TestCase *tc)
{
    bool keeps = differences(tc->device)->failed_attach_keeps_endpoint;
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, RW), S_OK);
    assert_status(attach_flags(&m, 2, EP_B, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_OK);

    assert_status(attach(&m, 2, EP_A), S_INVAL);
    /* Domain 1: still there with its mapping (ours), or freed (C) */
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0xa000, RW),
                  keeps ? S_INVAL : S_NOENT);
    /* EP_A: still in domain 1 (ours), or attached nowhere (C) */
    assert_status(detach(&m, 1, EP_A), keeps ? S_OK : S_INVAL);

    /*
     * An endpoint whose first ATTACH fails this way: C has created its
     * record before failing, so DETACH is INVAL; ours never knew it as
     * attached: NOENT.
     */
    assert_status(attach(&m, 2, EP_C), S_INVAL);
    assert_status(detach(&m, 2, EP_C), keeps ? S_NOENT : S_INVAL);

    iommu_stop(&m);
}

/*
 * Difference 5: UNMAP with virt_start > virt_end.  C's interval search
 * answers RANGE when a mapping spans [virt_end, virt_start] and OK
 * otherwise; ours always answers RANGE.  Neither removes anything.
 */
static void test_diff_unmap_reversed(const TestCase *tc)
{
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A), S_OK);
    assert_status(map(&m, 1, 0x1000, 0x1fff, 0, R), S_OK);

    assert_status(unmap(&m, 1, 0x1200, 0x1100), S_RANGE);
    assert_status(unmap(&m, 1, 0x5000, 0x4000),
                  differences(tc->device)->unmap_reversed_status);
    g_assert_true(is_mapped(&m, 1, 0x1000, 0x1fff));

    iommu_stop(&m);
}

/*
 * Difference 7: endpoint ids are 32 bits, requester ids 16.  C masks the
 * id down to bus and devfn, so EP_A + 0x10000 is an alias of EP_A; ours
 * knows only the ids it registered.
 */
static void test_diff_endpoint_alias(const TestCase *tc)
{
    uint8_t expected = differences(tc->device)->high_endpoint_status;
    uint8_t props[PROBE_SIZE];
    Iommu m;

    iommu_start(&m, tc->device);
    assert_status(attach(&m, 1, EP_A_ALIAS), expected);
    assert_status(probe(&m, EP_A_ALIAS, props), expected);
    assert_status(probe(&m, 0xffff0000 | EP_A, props), expected);
    iommu_stop(&m);
}

/* ---- differential: the same random requests to both devices ------------- */

#define DIFF_SEEDS    8
#define DIFF_REQUESTS 60

/*
 * Address window for MAP/UNMAP: at the bottom of the input range, or at
 * its top.  Ranges are naturally aligned power-of-two blocks of the
 * window: two such blocks are either disjoint or nested, so an UNMAP never
 * partially overlaps a mapping.  It can still fall inside a larger mapping
 * (RANGE on both, nothing removed) or cover several (all removed), but
 * never produce difference 1's partial removal.
 */
#define WINDOW_SHIFT  16
#define WINDOW_SIZE   (1ULL << WINDOW_SHIFT)
static const unsigned block_shifts[] = {
    0, 4, 8, 12, 12, 12, 13, 14, WINDOW_SHIFT,
};

/*
 * Pools small enough for hits and collisions.  A domain's kind is fixed
 * by its id (BYPASS_DOMAIN is always attached with the flag, the others
 * never), so no ATTACH is refused for a kind mismatch (difference 4).
 * Endpoint ids stay within 16 bits (difference 7); reserved bytes stay
 * zero (difference 2); ranges are never reversed nor outside the input
 * range (differences 3 and 5).
 */
#define BYPASS_DOMAIN 7
static const uint32_t diff_domains[] = { 0, 1, 2, UINT32_MAX, BYPASS_DOMAIN };
static const uint32_t diff_endpoints[] = {
    EP_A, EP_B, EP_C, IOMMU_DEVFN, EP_EMPTY_SLOT,
};
static const uint32_t map_flag_choices[] = { R, W, RW, RW, RW | MMIO, MMIO, 0 };

/* splitmix64: tiny, deterministic, good enough to pick from pools */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *state, uint32_t n)
{
    return rng_next(state) % n;
}

#define PICK(state, array) ((array)[rng_below(state, ARRAY_SIZE(array))])

/*
 * What the answers so far tell about the state.  It only steers the
 * choices towards requests that hit (existing domains, mapped blocks):
 * nothing is asserted from it, so it need not be exact.
 */
#define RECENT_MAPS 8
typedef struct DiffHints {
    uint64_t rng;
    /* The domain diff_endpoints[i] is attached to, or -1 */
    int64_t attached[ARRAY_SIZE(diff_endpoints)];
    /* Where the last successful MAPs started */
    struct {
        uint32_t domain;
        uint64_t start;
    } maps[RECENT_MAPS];
    unsigned n_maps;
} DiffHints;

typedef struct DiffRequest {
    uint8_t buf[PROBE_LEN + 16];
    size_t len;
    size_t writable_len;
    char desc[128];
} DiffRequest;

/* Mostly a domain some endpoint is attached to; else any (NOENT, or new) */
static uint32_t pick_domain(DiffHints *h)
{
    uint32_t alive[ARRAY_SIZE(diff_endpoints)];
    size_t n = 0;

    for (size_t i = 0; i < ARRAY_SIZE(diff_endpoints); i++) {
        if (h->attached[i] >= 0) {
            alive[n++] = h->attached[i];
        }
    }
    if (n && rng_below(&h->rng, 4)) {
        return alive[rng_below(&h->rng, n)];
    }
    return PICK(&h->rng, diff_domains);
}

/*
 * A block of the window and its domain: half of the time around a recent
 * mapping (the aligned block of a random size that holds its start: inside
 * it, the same, or around it), else anywhere in a domain from pick_domain().
 */
static void pick_block(DiffHints *h, uint32_t *domain, uint64_t *start,
                       uint64_t *end)
{
    unsigned shift;

    if (h->n_maps && rng_below(&h->rng, 2)) {
        unsigned i = rng_below(&h->rng, MIN(h->n_maps, RECENT_MAPS));

        shift = rng_below(&h->rng, WINDOW_SHIFT + 1);
        *domain = h->maps[i].domain;
        *start = h->maps[i].start & ~((1ULL << shift) - 1);
    } else {
        uint64_t base = rng_below(&h->rng, 8) ? 0
                                              : INPUT_END + 1 - WINDOW_SIZE;

        shift = PICK(&h->rng, block_shifts);
        *domain = pick_domain(h);
        *start = base + ((uint64_t)rng_below(&h->rng, WINDOW_SIZE >> shift)
                         << shift);
    }
    *end = *start + (1ULL << shift) - 1;
}

static uint32_t attach_flags_for(uint32_t domain)
{
    return domain == BYPASS_DOMAIN ? VIRTIO_IOMMU_ATTACH_F_BYPASS : 0;
}

static void random_request(DiffHints *h, DiffRequest *r)
{
    static const size_t probe_writable[] = {
        PROBE_ANSWER_SIZE, PROBE_ANSWER_SIZE, PROBE_ANSWER_SIZE,
        PROBE_ANSWER_SIZE, PROBE_ANSWER_SIZE, 1024, TAIL_SIZE,
    };
    static const size_t full_len[] = {
        0, ATTACH_LEN, DETACH_LEN, MAP_LEN, UNMAP_LEN, PROBE_LEN,
    };
    uint64_t *rng = &h->rng;
    unsigned ep_index = rng_below(rng, ARRAY_SIZE(diff_endpoints));
    uint32_t ep = diff_endpoints[ep_index];
    unsigned kind = rng_below(rng, 100);
    uint64_t start, end, phys;
    uint32_t domain, flags;
    uint8_t type;

    r->writable_len = TAIL_SIZE;
    if (kind < 20) {
        domain = PICK(rng, diff_domains);
        flags = attach_flags_for(domain);
        r->len = enc_attach(r->buf, domain, ep, flags);
        snprintf(r->desc, sizeof(r->desc), "ATTACH domain %u ep 0x%x flags %u",
                 domain, ep, flags);
    } else if (kind < 32) {
        domain = pick_domain(h);
        if (h->attached[ep_index] >= 0 && rng_below(rng, 3)) {
            domain = h->attached[ep_index];
        }
        r->len = enc_detach(r->buf, domain, ep);
        snprintf(r->desc, sizeof(r->desc), "DETACH domain %u ep 0x%x",
                 domain, ep);
    } else if (kind < 64) {
        pick_block(h, &domain, &start, &end);
        phys = (uint64_t)rng_below(rng, 1 << 20) << 12;
        flags = PICK(rng, map_flag_choices);
        r->len = enc_map(r->buf, domain, start, end, phys, flags);
        snprintf(r->desc, sizeof(r->desc),
                 "MAP domain %u [0x%" PRIx64 ", 0x%" PRIx64 "] -> 0x%" PRIx64
                 " flags %u", domain, start, end, phys, flags);
    } else if (kind < 86) {
        pick_block(h, &domain, &start, &end);
        switch (rng_below(rng, 20)) {
        case 0:
            start = 0;
            end = UINT64_MAX;
            break;
        case 1:
            start = 0;
            end = INPUT_END;
            break;
        }
        r->len = enc_unmap(r->buf, domain, start, end);
        snprintf(r->desc, sizeof(r->desc),
                 "UNMAP domain %u [0x%" PRIx64 ", 0x%" PRIx64 "]",
                 domain, start, end);
    } else if (kind < 94) {
        r->len = enc_probe(r->buf, ep);
        r->writable_len = PICK(rng, probe_writable);
        snprintf(r->desc, sizeof(r->desc), "PROBE ep 0x%x (writable %zu)",
                 ep, r->writable_len);
    } else if (kind < 96) {
        /* Unknown flags: INVAL before anything else, on both */
        domain = pick_domain(h);
        if (rng_below(rng, 2)) {
            r->len = enc_attach(r->buf, domain, ep, 2);
        } else {
            r->len = enc_map(r->buf, domain, 0, 0xfff, 0, 8);
        }
        snprintf(r->desc, sizeof(r->desc), "%s domain %u with unknown flags",
                 r->buf[0] == VIRTIO_IOMMU_T_ATTACH ? "ATTACH" : "MAP",
                 domain);
    } else if (kind < 98) {
        /* A valid request of any type, truncated */
        type = 1 + rng_below(rng, 5);
        switch (type) {
        case VIRTIO_IOMMU_T_ATTACH:
            enc_attach(r->buf, pick_domain(h), ep, 0);
            break;
        case VIRTIO_IOMMU_T_DETACH:
            enc_detach(r->buf, pick_domain(h), ep);
            break;
        case VIRTIO_IOMMU_T_MAP:
            pick_block(h, &domain, &start, &end);
            enc_map(r->buf, domain, start, end, 0, R);
            break;
        case VIRTIO_IOMMU_T_UNMAP:
            pick_block(h, &domain, &start, &end);
            enc_unmap(r->buf, domain, start, end);
            break;
        default:
            enc_probe(r->buf, ep);
            r->writable_len = PROBE_ANSWER_SIZE;
        }
        r->len = TAIL_SIZE + rng_below(rng, full_len[type] - TAIL_SIZE);
        snprintf(r->desc, sizeof(r->desc), "type %u truncated to %zu bytes",
                 type, r->len);
    } else {
        r->len = enc_attach(r->buf, pick_domain(h), ep, 0);
        r->buf[0] = 6 + rng_below(rng, 250);
        snprintf(r->desc, sizeof(r->desc), "unknown type %u", r->buf[0]);
    }
}

/* Learn from an answer both devices agreed on */
static void update_hints(DiffHints *h, const DiffRequest *r, uint8_t status)
{
    uint32_t domain = ldl_le_p(r->buf + 4);
    uint32_t ep = ldl_le_p(r->buf + 8);

    if (status != S_OK || r->len < ATTACH_LEN) {
        return;
    }
    switch (r->buf[0]) {
    case VIRTIO_IOMMU_T_ATTACH:
    case VIRTIO_IOMMU_T_DETACH:
        for (size_t i = 0; i < ARRAY_SIZE(diff_endpoints); i++) {
            if (diff_endpoints[i] == ep) {
                h->attached[i] = r->buf[0] == VIRTIO_IOMMU_T_ATTACH ?
                                 (int64_t)domain : -1;
            }
        }
        break;
    case VIRTIO_IOMMU_T_MAP:
        h->maps[h->n_maps % RECENT_MAPS].domain = domain;
        h->maps[h->n_maps % RECENT_MAPS].start = ldq_le_p(r->buf + 8);
        h->n_maps++;
        break;
    }
}

/*
 * Send @r to both devices and compare the answers: used length and every
 * byte the device reported as written.  Returns the status.
 */
static uint8_t diff_compare(Iommu *ref, Iommu *dut, const DiffRequest *r,
                            GString *log)
{
    Answer a, b;
    uint8_t status;

    iommu_send1(ref, r->buf, r->len, r->writable_len, &a);
    iommu_send1(dut, r->buf, r->len, r->writable_len, &b);
    g_assert_cmpuint(a.used_len, >=, TAIL_SIZE);
    status = a.buf[a.used_len - TAIL_SIZE];
    g_string_append_printf(log, "\n#   %s: %s", r->desc, status_name(status));

    if (a.used_len != b.used_len || memcmp(a.buf, b.buf, a.used_len) != 0) {
        fprintf(stderr, "# differential: the sequence so far:%s\n"
                "# %s answered %s (used length %u), %s %s (used length %u)\n",
                log->str, C_DEVICE, status_name(status), a.used_len,
                RUST_DEVICE, b.used_len >= TAIL_SIZE ?
                status_name(b.buf[b.used_len - TAIL_SIZE]) : "-",
                b.used_len);
        g_assert_cmpuint(b.used_len, ==, a.used_len);
        g_assert_cmpmem(b.buf, b.used_len, a.buf, a.used_len);
    }
    return status;
}

static void test_differential(const TestCase *tc)
{
    g_autoptr(GString) log = g_string_new(NULL);
    DiffHints h = { .rng = tc->seed };
    Iommu ref, dut;
    DiffRequest r;

    for (size_t i = 0; i < ARRAY_SIZE(h.attached); i++) {
        h.attached[i] = -1;
    }
    iommu_start(&ref, C_DEVICE);
    iommu_start(&dut, RUST_DEVICE);

    for (int n = 0; n < DIFF_REQUESTS; n++) {
        random_request(&h, &r);
        update_hints(&h, &r, diff_compare(&ref, &dut, &r, log));
    }

    /*
     * Final sweep, so that state the statuses above did not reveal is
     * compared too: whether each domain exists and whether each window
     * holds any mapping (a MAP over the whole window is OK only if it is
     * empty; then it is taken away again), and where each endpoint is
     * attached (DETACH from the domain the answers say).
     */
    r.writable_len = TAIL_SIZE;
    for (size_t d = 0; d < ARRAY_SIZE(diff_domains); d++) {
        for (int top = 0; top < 2; top++) {
            uint64_t base = top ? INPUT_END + 1 - WINDOW_SIZE : 0;

            r.len = enc_map(r.buf, diff_domains[d], base,
                            base + WINDOW_SIZE - 1, 0, R);
            snprintf(r.desc, sizeof(r.desc), "sweep: MAP domain %u window %d",
                     diff_domains[d], top);
            if (diff_compare(&ref, &dut, &r, log) == S_OK) {
                r.len = enc_unmap(r.buf, diff_domains[d], base,
                                  base + WINDOW_SIZE - 1);
                snprintf(r.desc, sizeof(r.desc),
                         "sweep: UNMAP domain %u window %d",
                         diff_domains[d], top);
                diff_compare(&ref, &dut, &r, log);
            }
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(diff_endpoints); i++) {
        uint32_t domain = h.attached[i] >= 0 ? h.attached[i] : 0;

        r.len = enc_detach(r.buf, domain, diff_endpoints[i]);
        snprintf(r.desc, sizeof(r.desc), "sweep: DETACH domain %u ep 0x%x",
                 domain, diff_endpoints[i]);
        diff_compare(&ref, &dut, &r, log);
    }

    iommu_stop(&dut);
    iommu_stop(&ref);
}

/*
 * virtio-iommu-rs only (the C device has no such property): EP_A, named by
 * its address in bypass-devices, is a device the IOMMU does not manage.
 * Every request about it is answered byte for byte as about an empty slot
 * (NOENT, as both devices answer for an id with no device), and the other
 * endpoints are unaffected.
 */
static void test_bypass_devices(const TestCase *tc)
{
    const char *props = ",\"bypass-devices\":[\"00:05.0\"]";
    uint8_t props_a[PROBE_SIZE], props_empty[PROBE_SIZE];
    Iommu m;

    iommu_boot(&m, tc->device, props,
               "-device pci-testdev,addr=05.0 "
               "-device pci-testdev,addr=06.0",
               REQUIRED_FEATURES, AREA_SIZE, AREA_SIZE);

    assert_status(probe(&m, EP_A, props_a), S_NOENT);
    assert_status(probe(&m, EP_EMPTY_SLOT, props_empty), S_NOENT);
    g_assert_cmpmem(props_a, PROBE_SIZE, props_empty, PROBE_SIZE);
    assert_status(attach(&m, 1, EP_A), S_NOENT);
    assert_status(attach_flags(&m, 1, EP_A, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                  S_NOENT);
    assert_status(detach(&m, 1, EP_A), S_NOENT);

    assert_status(probe(&m, EP_B, props_a), S_OK);
    assert_status(attach(&m, 1, EP_B), S_OK);
    assert_status(attach(&m, 1, EP_A), S_NOENT);
    assert_status(detach(&m, 1, EP_A), S_NOENT);
    assert_status(detach(&m, 1, EP_B), S_OK);

    iommu_stop(&m);
}

/*
 * Both devices emit QEMU's virtio_iommu_* trace events at the same points
 * with the same arguments: the requests as they start, and the endpoint's
 * switch from the bypass alias to the IOMMU region when attached.
 */
static void test_trace_events(const TestCase *tc)
{
    static const char *const expected[] = {
        "virtio_iommu_attach domain=3 endpoint=40",
        "virtio_iommu_switch_address_space Device 00:05.0 switching address "
        "space (iommu enabled=1)",
        "virtio_iommu_map domain=3 virt_start=0x10000 virt_end=0x1ffff "
        "phys_start=0x40000 flags=3",
        "virtio_iommu_unmap domain=3 virt_start=0x10000 virt_end=0x1ffff",
        "virtio_iommu_detach domain=3 endpoint=40",
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL;
    g_autofree char *args = NULL;
    g_autofree char *text = NULL;
    Iommu m;
    int fd = g_file_open_tmp("virtio-iommu-rs-trace-XXXXXX", &log, &err);

    g_assert_no_error(err);
    close(fd);
    args = g_strdup_printf("-device pci-testdev,addr=05.0 "
                           "-trace enable=virtio_iommu_attach "
                           "-trace enable=virtio_iommu_detach "
                           "-trace enable=virtio_iommu_map "
                           "-trace enable=virtio_iommu_unmap "
                           "-trace enable=virtio_iommu_switch_address_space "
                           "-D %s", log);
    iommu_boot(&m, tc->device, "", args, REQUIRED_FEATURES, AREA_SIZE,
               AREA_SIZE);
    assert_status(attach(&m, 3, EP_A), S_OK);
    assert_status(map(&m, 3, 0x10000, 0x1ffff, 0x40000, RW), S_OK);
    assert_status(unmap(&m, 3, 0x10000, 0x1ffff), S_OK);
    assert_status(detach(&m, 3, EP_A), S_OK);
    /* QEMU has written and closed its log once it has quit */
    iommu_stop(&m);

    g_file_get_contents(log, &text, NULL, &err);
    unlink(log);
    g_assert_no_error(err);
    assert_log_in_order(tc->device, text, expected, ARRAY_SIZE(expected));
}

/* qom-get @property of the IOMMU (qdev id "iommu"); the caller unrefs */
static QDict *qom_get(Iommu *m, const char *property, QObject **value)
{
    QDict *rsp = qtest_qmp(m->qts, "{'execute':'qom-get','arguments':"
                           "{'path':'/machine/peripheral/iommu',"
                           "'property':%s}}", property);

    *value = qdict_get(rsp, "return");
    g_assert_nonnull(*value);
    return rsp;
}

/*
 * virtio-iommu-rs only: its read-only QOM properties describe the state
 * the requests built and count the requests, by type and status.
 */
static void test_introspection(const TestCase *tc)
{
    uint8_t buf[ATTACH_LEN];
    QObject *value;
    QDict *rsp, *d, *c, *req;
    QList *list, *eps;
    Iommu m;

    iommu_boot(&m, tc->device, ",\"id\":\"iommu\"",
               "-device pci-testdev,addr=05.0 "
               "-device pci-testdev,addr=06.0",
               REQUIRED_FEATURES, AREA_SIZE, AREA_SIZE);
    assert_status(attach(&m, 3, EP_A), S_OK);
    assert_status(attach(&m, 3, EP_B), S_OK);
    assert_status(map(&m, 3, 0x10000, 0x1ffff, 0x40000, RW), S_OK);
    assert_status(map(&m, 3, 0x30000, 0x30fff, 0x50000, R | MMIO), S_OK);
    assert_status(map(&m, 3, 0x30000, 0x30fff, 0x50000, R), S_INVAL);
    assert_status(map(&m, 9, 0x30000, 0x30fff, 0x50000, R), S_NOENT);
    enc_attach(buf, 1, EP_A, 0);
    buf[0] = 0x7f;
    assert_status(send_raw(&m, buf, ATTACH_LEN), S_UNSUPP);

    rsp = qom_get(&m, "domains", &value);
    list = qobject_to(QList, value);
    g_assert_cmpuint(qlist_size(list), ==, 1);
    d = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpint(qdict_get_int(d, "id"), ==, 3);
    g_assert_false(qdict_get_bool(d, "bypass"));
    eps = qdict_get_qlist(d, "endpoints");
    g_assert_cmpuint(qlist_size(eps), ==, 2);
    /* Most recently attached first */
    g_assert_cmpint(qnum_get_int(qobject_to(QNum, qlist_peek(eps))), ==, EP_B);
    g_assert_cmpint(qdict_get_int(d, "mapping-count"), ==, 2);
    list = qdict_get_qlist(d, "mappings");
    d = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpint(qdict_get_int(d, "iova"), ==, 0x10000);
    g_assert_cmpint(qdict_get_int(d, "end"), ==, 0x1ffff);
    g_assert_cmpint(qdict_get_int(d, "phys"), ==, 0x40000);
    g_assert_cmpuint(qlist_size(qdict_get_qlist(d, "flags")), ==, 2);
    qobject_unref(rsp);

    rsp = qom_get(&m, "counters", &value);
    c = qobject_to(QDict, value);
    req = qdict_get_qdict(c, "requests");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(req, "attach"), "ok"), ==, 2);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(req, "map"), "ok"), ==, 2);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(req, "map"), "inval"), ==, 1);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(req, "map"), "noent"), ==, 1);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(req, "other"), "unsupp"),
                    ==, 1);
    g_assert_false(qdict_haskey(req, "detach"));
    g_assert_cmpint(qdict_get_int(c, "malformed-chains"), ==, 0);
    g_assert_cmpint(qdict_get_int(c, "faults-raised"), ==, 0);
    /* Both endpoints left the bypass alias when attached */
    g_assert_cmpint(qdict_get_int(c, "address-space-switches"), ==, 2);
    qobject_unref(rsp);

    rsp = qom_get(&m, "endpoints", &value);
    list = qobject_to(QList, value);
    for (const QListEntry *e = qlist_first(list); e; e = qlist_next(e)) {
        d = qobject_to(QDict, qlist_entry_obj(e));
        if (qdict_get_int(d, "id") == EP_A) {
            g_assert_cmpint(qdict_get_int(d, "domain"), ==, 3);
            g_assert_cmpstr(qdict_get_str(d, "address-space"), ==, "iommu");
            g_assert_cmpstr(qdict_get_str(d, "bus"), ==, "pci");
            g_assert_cmpstr(qdict_get_str(d, "address"), ==, "00:05.0");
        }
    }
    qobject_unref(rsp);

    iommu_stop(&m);
}

/* ---- registration ------------------------------------------------------- */

static const DeviceCase device_cases[] = {
    { "attach-detach", test_attach_detach },
    { "domain-lifetime", test_domain_lifetime },
    { "attach-flags", test_attach_flags },
    { "endpoint-ids", test_endpoint_ids },
    { "map", test_map },
    { "map-unaligned", test_map_unaligned },
    { "unmap", test_unmap },
    { "bypass-domain", test_bypass_domain },
    { "probe", test_probe },
    { "probe-bad-buffers", test_probe_bad_buffers },
    { "unknown-type", test_unknown_type },
    { "truncated", test_truncated },
    { "trailing-bytes", test_trailing_bytes },
    { "split-descriptors", test_split_descriptors },
    { "bad-head-tail", test_bad_head_tail },
    { "answer-before-break", test_answer_before_break },
    { "answer-before-unmappable", test_answer_before_unmappable },
    { "difference-unmap-atomic", test_diff_unmap_atomic },
    { "difference-attach-reserved", test_diff_attach_reserved },
    { "difference-map-range", test_diff_map_range },
    { "difference-failed-attach", test_diff_failed_attach },
    { "difference-unmap-reversed", test_diff_unmap_reversed },
    { "difference-endpoint-alias", test_diff_endpoint_alias },
    { "trace-events", test_trace_events },
};

/* Cases of what only virtio-iommu-rs has */
static const DeviceCase rust_cases[] = {
    { "bypass-devices", test_bypass_devices },
    { "introspection", test_introspection },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    /* Both devices, always: a Rust device that does not answer must fail */
    add_device_cases("virtio-iommu-rs-requests", C_DEVICE, device_cases,
                     ARRAY_SIZE(device_cases), CASE_TIMEOUT_US);
    add_device_cases("virtio-iommu-rs-requests", RUST_DEVICE, device_cases,
                     ARRAY_SIZE(device_cases), CASE_TIMEOUT_US);
    add_device_cases("virtio-iommu-rs-requests", RUST_DEVICE, rust_cases,
                     ARRAY_SIZE(rust_cases), CASE_TIMEOUT_US);
    for (unsigned seed = 1; seed <= DIFF_SEEDS; seed++) {
        g_autofree char *path =
            g_strdup_printf("virtio-iommu-rs-requests/differential/seed-%u",
                            seed);

        add_case(path, NULL, seed, CASE_TIMEOUT_US, test_differential);
    }

    return g_test_run();
}
