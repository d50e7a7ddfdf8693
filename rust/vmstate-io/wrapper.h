/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Input to bindgen for the vmstate-io crate: the QEMUFile accessors. */

#include "qemu/osdep.h"
#include "migration/qemu-file-types.h"
