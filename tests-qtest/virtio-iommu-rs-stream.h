/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What the virtio-iommu-rs qtests that migrate share (the migration test
 * and the benchmark): saving a QEMU's state to a file, loading it into a
 * QEMU started with -incoming defer, and finding the virtio-iommu
 * section in the stream.
 */

#ifndef VIRTIO_IOMMU_RS_STREAM_H
#define VIRTIO_IOMMU_RS_STREAM_H

#include "libqtest.h"
#include "qobject/qdict.h"

#define MIGRATE_TIMEOUT_US  (60 * G_USEC_PER_SEC)

/* A new empty file for a stream; the caller unlinks and frees it */
static inline char *stream_path(void)
{
    g_autoptr(GError) err = NULL;
    char *path;
    int fd = g_file_open_tmp("virtio-iommu-rs-migration-XXXXXX", &path, &err);

    g_assert_no_error(err);
    close(fd);
    return path;
}

/* Wait for @qts's migration (outgoing or incoming) to end: its status */
static inline char *wait_migration(QTestState *qts)
{
    gint64 deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_US;

    for (;;) {
        QDict *rsp =
            qtest_qmp_assert_success_ref(qts, "{'execute':'query-migrate'}");
        const char *status = qdict_get_try_str(rsp, "status");
        char *result = NULL;

        if (status && (strcmp(status, "completed") == 0 ||
                       strcmp(status, "failed") == 0)) {
            result = g_strdup(status);
        }
        qobject_unref(rsp);
        if (result) {
            return result;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/* Save @qts's whole state to the file @path */
static inline void save_to(QTestState *qts, const char *path)
{
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree char *status = NULL;

    qtest_qmp_assert_success(qts, "{'execute':'migrate',"
                             "'arguments':{'uri':%s}}", uri);
    status = wait_migration(qts);
    g_assert_cmpstr(status, ==, "completed");
}

/*
 * Load the file @path into @qts, started with -incoming defer: whether the
 * load completed.  A refused stream leaves QEMU running, to be asked why.
 */
static inline bool load_into(QTestState *qts, const char *path)
{
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree char *status = NULL;

    qtest_qmp_assert_success(qts, "{'execute':'migrate-incoming',"
                             "'arguments':{'uri':%s,'exit-on-error':false}}",
                             uri);
    status = wait_migration(qts);
    return strcmp(status, "completed") == 0;
}

/*
 * The payload of the "virtio-iommu" section (QEMU_VM_SECTION_FULL header,
 * then the payload, then QEMU_VM_SECTION_FOOTER and the section id) in
 * the stream @buf: its offset and length.
 */
static inline void find_section(const uint8_t *buf, size_t len,
                                size_t *start, size_t *size)
{
    static const char idstr[] = "0000:00:04.0/virtio-iommu";
    const size_t idlen = strlen(idstr);

    for (size_t i = 6; i + idlen + 8 < len; i++) {
        uint8_t footer[5] = { 0x7e };

        if (buf[i - 6] != 0x04 || buf[i - 1] != idlen ||
            memcmp(buf + i, idstr, idlen) != 0) {
            continue;
        }
        /* The footer repeats the section id of the header */
        memcpy(footer + 1, buf + i - 5, 4);
        *start = i + idlen + 8;
        for (size_t j = *start; j + sizeof(footer) < len; j++) {
            /* ...and is followed by the next section or the end */
            if (memcmp(buf + j, footer, sizeof(footer)) == 0 &&
                buf[j + sizeof(footer)] <= 0x08) {
                *size = j - *start;
                return;
            }
        }
    }
    g_error("no virtio-iommu section in the stream");
}

#endif
