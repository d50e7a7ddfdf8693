/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Input to bindgen for the qom-props crate: JSON parsing, QObjects, the
 * "any" visitor and class properties. */

#include "qemu/osdep.h"
#include "qobject/qjson.h"
#include "qobject/qobject.h"
#include "qapi/visitor.h"
#include "qom/object.h"
